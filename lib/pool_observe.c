/*
 * pool_observe.c - a pool's board as anyone may see it: what the supervisor
 * writes there for observers, and shoal_pool_observe(), which reads it.
 *
 * The supervisor's books (pool.h, struct shoal_pool) are in its own
 * memory; shoal_pool_stats() answers only its owner. So that `shoal top`
 * and any other process can see a pool, the supervisor copies a few
 * figures of each seat into words of the seat that were reserved: the
 * tasks its worker finished, the position it serves, and that position's
 * replacements by reason. It writes them with relaxed stores under its own
 * lock (one store per collection of results; the rest when a worker starts
 * or ends) and never reads them back, so a stray write there changes what
 * an observer sees, nothing else.
 *
 *   supervisor --books--> seat.obs_* (relaxed) --> observer (pread copy)
 *   worker     --ready, worker_key-----------------^
 *
 * The observer does not map the board: it reads its headers, then each
 * seat and the state word of each of its cells, with pread into private
 * memory (shoal__segment_snapshot), so a board truncated or rewritten
 * meanwhile cannot stop it with SIGBUS: a file that ends too soon is
 * -EBADMSG. It checks the geometry as a worker does (pool_board_check())
 * before it computes any offset; every other word it reads may hold any
 * value. A supervisor or
 * worker that dies leaves figures that are simply the last ones written;
 * liveness comes from the process keys, judged as the reaper judges them.
 */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void pool_seat_publish(struct shoal_pool *p, uint32_t i)
{
	struct pool_seat *seat = sup_seat(p, i);
	struct wseat *w = &p->seats[i];
	bool used = w->state != SEAT_FREE;

	atomic_store_explicit(&seat->obs_pos, used ? (uint32_t)w->pos + 1 : 0,
			      memory_order_relaxed);
	pool_seat_publish_tasks(p, i, used ? w->tasks : 0);
	for (int r = 0; r < SHOAL_POOL_NREASONS; r++) {
		uint64_t n = used ? p->pos[w->pos].st.recycles[r] : 0;

		atomic_store_explicit(&seat->obs_recycles[r], n > UINT32_MAX ? UINT32_MAX : (uint32_t)n,
				      memory_order_relaxed);
	}
}

/* One seat, read word by word: whether it holds a worker, and if so its
 * figures in @v. */
static bool seat_view(struct pool_seat *seat, bool published, uint32_t i,
		      struct shoal_pool_worker_view *v)
{
	uint64_t gen = atomic_load_explicit(&seat->gen, memory_order_acquire);
	uint64_t key = atomic_load_explicit(&seat->worker_key, memory_order_relaxed);
	uint32_t pos = atomic_load_explicit(&seat->obs_pos, memory_order_relaxed);
	uint32_t cmd = atomic_load_explicit(&seat->cmd, memory_order_relaxed);
	struct shoal_proc pr;

	memset(v, 0, sizeof(*v));
	/* A seat never used has generation 0. On a board that publishes,
	 * position 0 says the seat is free; on an older one, a dead worker
	 * key says its worker is gone. */
	if (gen == 0 || (published && pos == 0))
		return false;
	if (!published && key && shoal__key_dead(key))
		return false;
	v->seat = i;
	v->generation = gen;
	v->position = published ? (int)(pos - 1) : -1;
	if (published && pos - 1 > INT32_MAX)
		v->position = -1;
	if (key) {
		shoal__proc_unkey(key, &pr);
		v->pid = pr.pid;
		v->alive = !shoal__key_dead(key);
	} else {
		v->alive = true; /* starting: the supervisor watches it */
	}
	if (!atomic_load_explicit(&seat->ready, memory_order_relaxed) || !key)
		v->state = SHOAL_POOL_SEAT_STARTING;
	else if (cmd & CMD_RETIRE)
		v->state = SHOAL_POOL_SEAT_RETIRING;
	else
		v->state = SHOAL_POOL_SEAT_READY;
	if (published) {
		v->tasks = atomic_load_explicit(&seat->obs_tasks, memory_order_relaxed);
		for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
			v->recycles[r] = atomic_load_explicit(&seat->obs_recycles[r],
							      memory_order_relaxed);
	}
	if (v->pid > 0 && v->alive) {
		struct shoal_memstat m;

		if (shoal_memstat(v->pid, 0, &m) == 0)
			v->private_bytes = m.private_bytes;
	}
	return true;
}

SHOAL_API int shoal_pool_observe(const char *board, struct shoal_pool_view *out,
				 struct shoal_pool_worker_view *workers, size_t cap)
{
	struct shoal_segment *seg;
	struct pool_hdr l;
	/* Each position's replacements, once: two seats of one position (a
	 * replacement started early) show its counts, the newer the higher. */
	uint32_t (*rec)[SHOAL_POOL_NREASONS];
	uint32_t n = 0;
	int rc;

	shoal__detail_clear();
	if (!out || (!workers && cap))
		return shoal__fail(-EINVAL, "pool observe: NULL out or workers");
	rc = shoal__segment_snapshot(board, SHOAL__KIND_POOL, sizeof(struct pool_hdr), &seg);
	if (rc)
		return rc;
	memcpy(&l, seg->kind_hdr, sizeof(l));
	if (pool_board_check(&l, seg->hdr.data_size)) {
		shoal_segment_close(seg);
		return shoal__fail(-EBADMSG, "pool board '%s' is corrupt: its geometry fails a check",
				   board);
	}
	rec = calloc(POOL_MAX_WORKERS, sizeof(*rec));
	if (!rec) {
		shoal_segment_close(seg);
		return -ENOMEM;
	}
	memset(out, 0, sizeof(*out));
	out->supervisor.pid = seg->hdr.creator_pid;
	out->supervisor.start_time = seg->hdr.creator_start;
	out->supervisor_alive = !shoal__key_dead(shoal__proc_key(&out->supervisor));
	out->seats = l.nseats;
	out->prefetch = l.prefetch;
	out->inline_bytes = l.inline_bytes;
	out->published = l.observed == POOL_OBSERVED;
	for (uint32_t i = 0; i < l.nseats && rc == 0; i++) {
		/* Offsets from the checked copy @l: inside the data. */
		uint64_t at = seg->hdr.data_off + (uint64_t)i * l.seat_size;
		struct pool_seat seat;
		struct shoal_pool_worker_view v;

		rc = shoal__segment_pread(seg, &seat, sizeof(seat), at);
		if (rc || !seat_view(&seat, out->published, i, &v))
			continue;
		for (uint32_t c = 0; c < l.prefetch && rc == 0; c++) {
			uint32_t st;

			rc = shoal__segment_pread(seg, &st, sizeof(st),
						  at + sizeof(seat) + (uint64_t)c * l.cell_size +
							  offsetof(struct pool_cell, state));
			out->tasks_running += rc == 0 && (st == CELL_ASSIGNED || st == CELL_RUNNING);
		}
		out->tasks_done += v.tasks;
		if (v.position >= 0 && v.position < (int)POOL_MAX_WORKERS)
			for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
				if (v.recycles[r] > rec[v.position][r])
					rec[v.position][r] = (uint32_t)v.recycles[r];
		if (n < cap)
			workers[n] = v;
		n++;
	}
	if (rc) {
		free(rec);
		shoal_segment_close(seg);
		return rc;
	}
	for (uint32_t k = 0; k < POOL_MAX_WORKERS; k++)
		for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
			out->recycles[r] += rec[k][r];
	free(rec);
	out->workers = n;
	shoal_segment_close(seg);
	return (int)n;
}
