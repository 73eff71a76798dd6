/*
 * pool_worker.c - the worker side of the pool: a process that joins a
 * board at its seat and runs the tasks the supervisor puts in its cells.
 *
 *     open: check the board's layout, say ready (R4)
 *     next: claim the oldest ASSIGNED cell (CAS -> RUNNING), or sleep on
 *           the seat's bell; a command (trim, retire) or a dead supervisor
 *           ends the wait
 *     done: write the result (inline, or a segment), the cell DONE (R3);
 *           ring the supervisor only when running low or a waiter sleeps
 *     run:  next/done in a loop around a C function (C pools); the Python
 *           binding drives step() itself
 *
 * Addresses come from the worker's validated private copy of the layout,
 * never from the shared header. The worker runs its cells in order: once
 * one is claimed, the older ones are too, which is what lets the
 * supervisor take back the unstarted ones by CAS (pool_supervise.c).
 *
 * Deaths: a worker killed anywhere here leaves at most one RUNNING cell
 * (the task runs again) and DONE cells whose results are whole (the result
 * is written before the state says DONE). If the supervisor's process
 * dies, the worker sees it between tasks (at most every 0.5 s) or when its
 * wait times out (each second), and leaves (-EPIPE).
 */
#include "pool.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

struct shoal_pool_worker {
	struct shoal_segment *seg;
	struct pool_hdr hdr; /* validated copy */
	struct pool_seat *seat;
	uint32_t idx;
	uint64_t gen;
	uint64_t head;       /* next cell sequence */
	uint32_t trim_seen;
	uint64_t check_at;   /* when to look at the supervisor next */
	struct pool_cell *cur;
	void *arg_copy;      /* a spilled task's bytes */
	char name[POOL_NAME_MAX + 1];
};

SHOAL_API int shoal_pool_worker_open(const char *board, uint32_t seat, uint64_t gen,
				     struct shoal_pool_worker **out)
{
	struct shoal_pool_worker *w;
	struct pool_hdr *h;
	int rc;

	if (!board || !out || strlen(board) > POOL_NAME_MAX)
		return -EINVAL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	rc = shoal__segment_open(board, SHOAL__KIND_POOL, sizeof(struct pool_hdr), 0, &w->seg);
	if (rc) {
		free(w);
		return rc;
	}
	/* The geometry is read once and checked against the object. */
	h = w->seg->kind_hdr;
	memcpy(&w->hdr, h, sizeof(w->hdr));
	rc = pool_board_check(&w->hdr, w->seg->hdr.data_size);
	if (rc)
		goto fail;
	if (seat >= w->hdr.nseats) {
		rc = -EINVAL;
		goto fail;
	}
	w->seat = seat_at(w->seg->data, &w->hdr, seat);
	w->idx = seat;
	w->gen = gen;
	/* A0: pairs with R0 in pool_start_worker(). */
	if (atomic_load_explicit(&w->seat->gen, memory_order_acquire) != gen) {
		rc = -ESTALE;
		goto fail;
	}
	strcpy(w->name, board);
	atomic_store_explicit(&w->seat->worker_key, shoal__self_key(), memory_order_relaxed);
	/* R4: pairs with A4 in admit_ready(). */
	atomic_store_explicit(&w->seat->ready, 1, memory_order_release);
	pool_ring_supervisor(h);
	*out = w;
	return 0;
fail:
	shoal_segment_close(w->seg);
	free(w);
	return rc;
}

#define SUPERVISOR_CHECK_NS 500000000u

static bool supervisor_alive(struct shoal_pool_worker *w)
{
	return !shoal__key_dead(w->hdr.sup_key);
}

SHOAL_API int shoal_pool_worker_next(struct shoal_pool_worker *w, int64_t timeout_ns,
				     struct shoal_pool_task *t)
{
	uint64_t deadline = shoal__deadline(timeout_ns), now;
	bool yielded;

	if (!w || !t || w->cur)
		return -EINVAL;
	yielded = !w->hdr.yield_first;
	/* Between tasks too, not only when a wait times out: prefetched tasks
	 * would keep an orphan busy for as long as they last. A clock read
	 * (vDSO) per task; /proc at most twice a second. */
	now = shoal__now_ns();
	if (now >= w->check_at) {
		if (!supervisor_alive(w))
			return -EPIPE;
		w->check_at = now + SUPERVISOR_CHECK_NS;
	}
	for (;;) {
		struct pool_cell *c = cell_in(w->seat, &w->hdr, w->head);
		uint32_t bell = atomic_load_explicit(&w->seat->bell, memory_order_seq_cst);
		uint32_t cmd, tag, expect = CELL_ASSIGNED;
		uint64_t wake;
		int rc;

		/* A1: pairs with R1 in fill(); R2: the supervisor's walk
		 * of a dead worker's cells sees this claim. */
		if (atomic_compare_exchange_strong_explicit(&c->state, &expect, CELL_RUNNING,
							    memory_order_acq_rel, memory_order_acquire)) {
			uint64_t len = c->arg_len;

			w->cur = c;
			w->head++;
			t->id = c->task_id;
			t->attempt = c->attempt;
			t->len = len;
			if (c->arg_spill) {
				char n[SHOAL_NAME_MAX + 1];

				pool_spill_name(n, sizeof(n), w->name, 'a', t->id, 0);
				rc = pool_spill_get(n, len, &w->arg_copy);
				if (rc) {
					shoal_pool_worker_done(w, rc, NULL, 0);
					continue;
				}
				t->data = w->arg_copy;
			} else {
				if (len > w->hdr.inline_bytes) {
					shoal_pool_worker_done(w, -EBADMSG, NULL, 0);
					continue;
				}
				t->data = cell_args(c);
			}
			return SHOAL_POOL_TASK;
		}
		cmd = atomic_load_explicit(&w->seat->cmd, memory_order_acquire);
		if ((cmd & CMD_TRIM_MASK) && (cmd & CMD_TRIM_MASK) != w->trim_seen) {
			w->trim_seen = cmd & CMD_TRIM_MASK;
			return SHOAL_POOL_TRIM;
		}
		if (cmd & CMD_RETIRE)
			return SHOAL_POOL_EXIT;
		if (shoal__now_ns() >= deadline)
			return -ETIMEDOUT;
		/* Yield once: with more C workers than CPUs, one that runs out
		 * of cells has most often just rung the supervisor (a quarter
		 * left), which has not run yet: the CPU goes to another thread,
		 * the supervisor among them, and the refill is mostly there
		 * when this worker runs again. A sleep instead costs the
		 * supervisor a futex wake (a cross-CPU interrupt on a VM) and
		 * this worker a wake-up. Once only, then sleep: nothing spins
		 * on an idle pool. */
		if (!yielded) {
			yielded = true;
			sched_yield();
			continue;
		}
		/* Sleep at most a second at a time, to notice a dead supervisor. */
		wake = shoal__deadline(1000000000);
		if (deadline < wake)
			wake = deadline;
		tag = pool_sleep_tag(bell);
		atomic_store_explicit(&w->seat->worker_waiting, tag, memory_order_seq_cst);
		expect = atomic_load_explicit(&c->state, memory_order_seq_cst);
		cmd = atomic_load_explicit(&w->seat->cmd, memory_order_seq_cst);
		if (expect != CELL_ASSIGNED && !(cmd & CMD_RETIRE) &&
		    (!(cmd & CMD_TRIM_MASK) || (cmd & CMD_TRIM_MASK) == w->trim_seen)) {
			rc = shoal__futex_wait(&w->seat->bell, bell, wake);
			if (rc == -ETIMEDOUT && !supervisor_alive(w)) {
				pool_sleep_over(&w->seat->worker_waiting, tag);
				return -EPIPE;
			}
		}
		pool_sleep_over(&w->seat->worker_waiting, tag);
	}
}

SHOAL_API int shoal_pool_worker_done(struct shoal_pool_worker *w, int err, const void *data,
				     size_t len)
{
	struct pool_hdr *h;
	struct pool_cell *c, *ahead;
	int rc = 0;

	if (!w || !w->cur || (!data && len))
		return -EINVAL;
	h = w->seg->kind_hdr;
	c = w->cur;
	if (len > w->hdr.inline_bytes) {
		char n[SHOAL_NAME_MAX + 1];

		pool_spill_name(n, sizeof(n), w->name, 'r', c->task_id, c->attempt);
		rc = pool_spill_put(n, data, len);
		if (rc) {
			err = rc;
			len = 0;
		} else {
			c->res_spill = 1;
		}
	} else if (len) {
		/* Over the task's bytes: @data may be among them. */
		memmove(cell_res(c), data, len);
	}
	c->res_len = len;
	c->err = err;
	/* R3: the result is whole before the cell says DONE; pairs with A3
	 * in collect(). */
	atomic_store_explicit(&c->state, CELL_DONE, memory_order_release);
	w->cur = NULL;
	free(w->arg_copy);
	w->arg_copy = NULL;
	/* The supervisor is needed only when this worker runs low (a quarter
	 * of its cells or fewer still assigned: it refills them) or a thread
	 * sleeps in shoal_pool_wait() (it delivers). A waiter that finds
	 * nothing delivered collects DONE cells itself. The fence pairs with
	 * the one in shoal_pool_wait(): a waiter that announced itself after
	 * our DONE sees the cell, one before it is rung. */
	atomic_thread_fence(memory_order_seq_cst);
	ahead = cell_in(w->seat, &w->hdr, w->head + (w->hdr.prefetch - 1) / 4);
	if (atomic_load_explicit(&ahead->state, memory_order_relaxed) != CELL_ASSIGNED ||
	    atomic_load_explicit(&h->res_waiting, memory_order_relaxed))
		pool_ring_supervisor(h);
	return rc;
}

SHOAL_API int shoal_pool_worker_step(struct shoal_pool_worker *w, int err, const void *data,
				     size_t len, int64_t timeout_ns, struct shoal_pool_task *t)
{
	if (!w || !t)
		return -EINVAL;
	if (w->cur) {
		int rc = shoal_pool_worker_done(w, err, data, len);

		if (rc == -EINVAL)
			return rc;
	}
	return shoal_pool_worker_next(w, timeout_ns, t);
}

SHOAL_API int shoal_pool_worker_trimmed(struct shoal_pool_worker *w)
{
	if (!w)
		return -EINVAL;
	malloc_trim(0);
	/* R5: pairs with the A5 in apply_policy(). */
	atomic_store_explicit(&w->seat->trim_ack, w->trim_seen, memory_order_release);
	pool_ring_supervisor(w->seg->kind_hdr);
	return 0;
}

SHOAL_API int shoal_pool_worker_run(struct shoal_pool_worker *w, shoal_pool_fn fn, void *arg)
{
	void *out = NULL;
	size_t out_len = 0;
	int err = 0;

	for (;;) {
		struct shoal_pool_task t;
		int rc = shoal_pool_worker_step(w, err, out, out ? out_len : 0, -1, &t);

		free(out);
		out = NULL;
		out_len = 0;
		if (rc == SHOAL_POOL_EXIT)
			return 0;
		if (rc == SHOAL_POOL_TRIM) {
			shoal_pool_worker_trimmed(w);
			continue;
		}
		if (rc < 0)
			return rc;
		err = fn(arg, t.data, t.len, &out, &out_len);
	}
}

SHOAL_API void shoal_pool_worker_close(struct shoal_pool_worker *w)
{
	if (!w)
		return;
	free(w->arg_copy);
	shoal_segment_close(w->seg);
	free(w);
}

