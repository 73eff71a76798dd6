/*
 * pool.c - the public supervisor-side API of the pool: create, submit,
 * wait, cancel, look, destroy.
 *
 * How a task travels, and who moves it (files lib/pool*.c):
 *
 *     shoal_pool_submit() --> books: the backlog         (this file)
 *       --dispatch--> a cell of the board, ASSIGNED      (pool_supervise.c)
 *       --claim--> worker runs it --> cell DONE           (pool_worker.c)
 *       --collect--> books: the done list                (pool_supervise.c,
 *                                                          or a waiter here)
 *       --> shoal_pool_wait() --> the caller
 *
 *     a worker dies --> its pidfd --> exit watcher: join (pool_spawn.c)
 *       --> ring --> supervisor: settle its cells, start a replacement
 *
 * The board's layout and the books are in pool.h, the bells and the large
 * tasks' segments in pool_board.c. Every call here takes the pool's lock
 * (p->mu) and rings the supervisor when it has something for it; none
 * waits for a worker except shoal_pool_wait() (on the done list) and
 * shoal_pool_destroy().
 *
 * A waiter does part of the supervisor's job: a worker that ends a task
 * rings the supervisor only when it runs low or a thread sleeps in
 * shoal_pool_wait(), so a waiter that finds nothing delivered copies DONE
 * cells out itself (see wait_results()).
 *
 * Deaths: the caller's process dying ends the pool (its threads with it);
 * the fork server then kills the workers, and the board and its spills
 * are reaped by shoal_reap() or the next shoal_pool_create().
 */
#include "pool.h"

#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/*
 * The CPUs this process may run on. With no more C workers than that, a
 * worker that runs out of cells leaves its core idle until the supervisor
 * (woken, scheduled, its pass, the worker woken) refills them, and the 8
 * tasks left when it calls take less than that round trip: 2 workers on 2
 * cores ran tiny tasks at 0.53-0.67 of 8 workers' rate with 32 cells, on
 * a par with 64 (bench/run pool_scale). With more workers than CPUs
 * another worker runs meanwhile, and the board stays at 32 cells a seat.
 */
static unsigned pool_cores(void)
{
	cpu_set_t set;
	long n;

	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

SHOAL_API int shoal_pool_create(const struct shoal_pool_config *cfg, struct shoal_pool **out)
{
	struct shoal_pool *p;
	struct pool_hdr *h;
	uint64_t rnd;
	uint32_t nseats;
	int rc;

	shoal__detail_clear();
	if (!cfg || !out)
		return shoal__fail(-EINVAL, "pool: %s is NULL", !cfg ? "the config" : "out");
	if (cfg->workers < 1 || cfg->workers > POOL_MAX_WORKERS)
		return shoal__fail(-EINVAL, "pool: workers %u must be in 1..%u", cfg->workers,
				   POOL_MAX_WORKERS);
	if (cfg->max_tasks_jitter > 100)
		return shoal__fail(-EINVAL, "pool: max_tasks_jitter %u must be a percentage, 0..100",
				   cfg->max_tasks_jitter);
	if (cfg->prefetch > POOL_MAX_PREFETCH)
		return shoal__fail(-EINVAL, "pool: prefetch %u must be at most %u", cfg->prefetch,
				   POOL_MAX_PREFETCH);
	if (!cfg->fn && !cfg->spawn)
		return shoal__fail(-EINVAL, "pool: neither fn nor a spawn hook: workers would run nothing");
	if (cfg->spawn && !cfg->join)
		return shoal__fail(-EINVAL, "pool: a spawn hook needs a join hook");
	if (cfg->inline_bytes > SHOAL_POOL_INLINE_BYTES_MAX)
		return shoal__fail(-EINVAL, "pool: inline_bytes %zu must be at most %u",
				   cfg->inline_bytes, SHOAL_POOL_INLINE_BYTES_MAX);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	if (!p->cfg.max_attempts)
		p->cfg.max_attempts = SHOAL_POOL_MAX_ATTEMPTS_DEFAULT;
	if (!p->cfg.grace_ns)
		p->cfg.grace_ns = SHOAL_POOL_GRACE_NS_DEFAULT;
	if (!p->cfg.check_ns)
		p->cfg.check_ns = SHOAL_POOL_CHECK_NS_DEFAULT;
	if (!p->cfg.inline_bytes)
		p->cfg.inline_bytes = cfg->spawn ? SHOAL_POOL_HOSTED_INLINE_BYTES_DEFAULT
						 : SHOAL_POOL_INLINE_BYTES_DEFAULT;
	p->cfg.inline_bytes = (p->cfg.inline_bytes + 63) & ~(size_t)63;
	if (!p->cfg.prefetch)
		p->cfg.prefetch = cfg->spawn ? SHOAL_POOL_HOSTED_PREFETCH_DEFAULT
			: cfg->workers <= pool_cores() ? SHOAL_POOL_PREFETCH_FEW_DEFAULT
						       : SHOAL_POOL_PREFETCH_DEFAULT;
	if (cfg->name) {
		if (strlen(cfg->name) > POOL_NAME_MAX || (rc = shoal__name_check(cfg->name)) != 0) {
			free(p);
			return -EINVAL;
		}
		strcpy(p->name, cfg->name);
	} else {
		shoal__random(&rnd, sizeof(rnd));
		snprintf(p->name, sizeof(p->name), "pool.%d.%08x", (int)getpid(), (unsigned)rnd);
	}
	p->cfg.name = p->name;
	/* What pools of dead processes left (a SIGKILLed caller destroys
	 * nothing): the next pool takes it back, not only `shoal gc`. */
	shoal__reap_pools();
	nseats = 2 * cfg->workers + 2;
	pool_board_layout(&p->layout, nseats, p->cfg.prefetch, p->cfg.inline_bytes);
	p->nseats = nseats;
	p->next_id = 1;
	p->info.config_reason = -1;
	p->watcher_efd = -1;
	p->fs.pid = -1;
	pthread_mutex_init(&p->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->done_cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	p->seats = calloc(nseats, sizeof(*p->seats));
	p->pos = calloc(cfg->workers, sizeof(*p->pos));
	/* Allocated here, not in the exit watcher: its loop never allocates,
	 * so it is never inside malloc when the supervisor forks. */
	p->watcher_fds = calloc(nseats + 1, sizeof(*p->watcher_fds));
	p->watcher_idx = calloc(nseats + 1, sizeof(*p->watcher_idx));
	p->ring = calloc(nseats, sizeof(*p->ring));
	p->staff = calloc(2 * (size_t)cfg->workers, sizeof(*p->staff));
	if (!p->seats || !p->pos || !p->watcher_fds || !p->watcher_idx || !p->ring || !p->staff) {
		rc = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < nseats; i++) {
		p->seats[i].pidfd = -1;
		p->seats[i].reason = -1;
		p->seats[i].cells = calloc(p->cfg.prefetch, sizeof(struct task *));
		if (!p->seats[i].cells) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned i = 0; i < cfg->workers; i++) {
		p->pos[i].seat = -1;
		p->pos[i].st.last_reason = -1;
	}
	rc = shoal__segment_create(p->name, SHOAL__KIND_POOL, sizeof(struct pool_hdr),
				   nseats * p->layout.seat_size, NULL, &p->seg);
	if (rc)
		goto fail;
	h = p->seg->kind_hdr;
	h->nseats = p->layout.nseats;
	h->prefetch = p->layout.prefetch;
	h->inline_bytes = p->layout.inline_bytes;
	h->cell_size = p->layout.cell_size;
	h->seat_size = p->layout.seat_size;
	h->sup_key = shoal__self_key();
	h->observed = POOL_OBSERVED;
	h->layout = POOL_LAYOUT;
	h->yield_first = !cfg->spawn && cfg->workers > pool_cores();
	p->hdr = h;
	rc = shoal__segment_publish(p->seg);
	if (rc) {
		p->seg = NULL;
		goto fail;
	}
	p->watcher_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->watcher_efd < 0) {
		rc = -errno;
		goto fail_unlink;
	}
	/* Before the pool's threads: the server is a copy of this process
	 * with this thread alone (invariant 10). */
	if (!p->cfg.spawn) {
		rc = pool_start_forkserver(p);
		if (rc)
			goto fail_unlink;
	}
	/* The threads wait for the lock until both exist: no fork while this
	 * thread is still inside pthread_create (and its allocations). */
	pthread_mutex_lock(&p->mu);
	rc = -pthread_create(&p->watcher_thread, NULL, pool_exit_watcher_main, p);
	if (rc) {
		pthread_mutex_unlock(&p->mu);
		goto fail_unlink;
	}
	rc = -pthread_create(&p->sup_thread, NULL, pool_supervisor_main, p);
	if (rc) {
		p->closing = true;
		pthread_mutex_unlock(&p->mu);
		pool_poke_watcher(p);
		pthread_join(p->watcher_thread, NULL);
		goto fail_unlink;
	}
	p->threads_started = true;
	pthread_mutex_unlock(&p->mu);
	*out = p;
	return 0;

fail_unlink:
	shoal__forkserver_stop(&p->fs);
	shoal_unlink(p->name);
fail:
	if (p->watcher_efd >= 0)
		close(p->watcher_efd);
	if (p->seg)
		shoal_segment_close(p->seg);
	if (p->seats)
		for (uint32_t i = 0; i < nseats; i++)
			free(p->seats[i].cells);
	free(p->seats);
	free(p->pos);
	free(p->watcher_fds);
	free(p->watcher_idx);
	free(p->ring);
	free(p->staff);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return rc;
}

/* Make a task of @len bytes (its id set later): copied, or spilled to a
 * segment named after @id when larger than the inline space. */
static int task_make(struct shoal_pool *p, const void *data, size_t len, uint64_t id,
		     struct task **out)
{
	bool spill = len > p->cfg.inline_bytes;
	struct task *t = malloc(sizeof(*t) + (spill ? 0 : len));
	int rc;

	if (!t)
		return -ENOMEM;
	memset(t, 0, sizeof(*t));
	t->len = len;
	t->id = id;
	if (spill) {
		char n[SHOAL_NAME_MAX + 1];

		pool_spill_name(n, sizeof(n), p->name, 'a', id, 0);
		rc = pool_spill_put(n, data, len);
		if (rc) {
			free(t);
			return rc;
		}
		t->spilled = true;
	} else if (len) {
		memcpy(t->data, data, len);
	}
	*out = t;
	return 0;
}

SHOAL_API int shoal_pool_submit_many(struct shoal_pool *p, const void *data, const size_t *lens,
				     size_t n, uint64_t *first_id)
{
	struct task *head = NULL, **tail = &head;
	const char *d = data;
	uint64_t first;
	size_t total = 0;
	int rc;

	if (!p || !first_id || (n && !lens))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if (lens[i] > SIZE_MAX - total)
			return -EINVAL;
		total += lens[i];
	}
	if (total && !data)
		return -EINVAL;
	/* Under the lock throughout: the supervisor forks C workers holding
	 * it, and this is where the caller's thread allocates. */
	pthread_mutex_lock(&p->mu);
	rc = p->closing ? -EPIPE : p->broken ? -ECHILD : 0;
	first = p->next_id;
	if (rc) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		struct task *t;

		rc = task_make(p, d, lens[i], first + i, &t);
		if (rc) {
			/* None of them is queued: all or nothing. */
			while (head) {
				t = head->next;
				pool_task_free(p, head);
				head = t;
			}
			pthread_mutex_unlock(&p->mu);
			return rc;
		}
		*tail = t;
		tail = &t->next;
		d += lens[i];
	}
	p->next_id += n;
	for (struct task *t = head, *next; t; t = next) {
		next = t->next;
		pool_pend_push_back(p, t);
	}
	pthread_mutex_unlock(&p->mu);
	*first_id = first;
	if (n)
		pool_ring_supervisor(p->hdr);
	return 0;
}

SHOAL_API int shoal_pool_submit(struct shoal_pool *p, const void *data, size_t len, uint64_t *id)
{
	if (!p || !id || (!data && len))
		return -EINVAL;
	return shoal_pool_submit_many(p, data, &len, 1, id);
}

/*
 * Both waits: with @buf, each result's data is copied there and freed;
 * without, it is handed over (the caller frees it).
 */
static int wait_results(struct shoal_pool *p, int64_t timeout_ns, struct shoal_pool_result *out,
			size_t cap, char *buf, size_t buf_len)
{
	uint64_t deadline;
	size_t n = 0, used = 0;
	int rc;

	if (!p || !out || cap == 0)
		return -EINVAL;
	deadline = shoal__deadline(timeout_ns);
	pthread_mutex_lock(&p->mu);
	p->waiting++;
	while (!p->done_head && !p->closing) {
		struct timespec ts;

		/* Workers ring the supervisor only when they run low: take
		 * what they finished straight from their cells, and have the
		 * supervisor refill the cells that freed. */
		if (pool_collect_all(p)) {
			pool_ring_supervisor(p->hdr);
			continue;
		}
		/* Announce the sleep, then look again: pairs with the fence in
		 * shoal_pool_worker_done(). */
		atomic_fetch_add_explicit(&p->hdr->res_waiting, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
		if (pool_collect_all(p)) {
			pool_ring_supervisor(p->hdr);
		} else if (deadline == UINT64_MAX) {
			pthread_cond_wait(&p->done_cv, &p->mu);
		} else if (shoal__now_ns() < deadline) {
			ts.tv_sec = (time_t)(deadline / 1000000000u);
			ts.tv_nsec = (long)(deadline % 1000000000u);
			pthread_cond_timedwait(&p->done_cv, &p->mu, &ts);
		}
		atomic_fetch_sub_explicit(&p->hdr->res_waiting, 1, memory_order_relaxed);
		if (!p->done_head && shoal__now_ns() >= deadline)
			break;
	}
	while (p->done_head && n < cap) {
		struct task *d = p->done_head;
		struct shoal_pool_result r = d->r;

		if (buf && r.len > buf_len - used) {
			if (!n)
				out[0].len = r.len;
			break;
		}
		p->done_head = d->next;
		if (!p->done_head)
			p->done_tail = NULL;
		if (buf) {
			if (r.len)
				memcpy(buf + used, r.data, r.len);
			r.data = buf + used;
			used += r.len;
			pool_done_free(d);
		} else if (r.data == d->data) {
			/* Handed over for free(): moved to the start of the
			 * allocation, which holds it (it fitted after the
			 * header). */
			memmove(d, d->data, r.len);
			r.data = d;
		} else {
			free(d);
		}
		out[n++] = r;
	}
	rc = n ? (int)n : p->done_head ? -ENOBUFS : p->closing ? -EPIPE : -ETIMEDOUT;
	/* The last waiter out lets a destroy that waits for it go on; @p may
	 * be freed as soon as the lock is released. */
	if (--p->waiting == 0 && p->closing)
		pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->mu);
	return rc;
}

SHOAL_API int shoal_pool_wait(struct shoal_pool *p, int64_t timeout_ns, struct shoal_pool_result *out,
			      size_t cap)
{
	return wait_results(p, timeout_ns, out, cap, NULL, 0);
}

SHOAL_API int shoal_pool_wait_into(struct shoal_pool *p, int64_t timeout_ns,
				   struct shoal_pool_result *out, size_t cap, void *buf, size_t buf_len)
{
	if (!buf)
		return -EINVAL;
	return wait_results(p, timeout_ns, out, cap, buf, buf_len);
}

SHOAL_API void shoal_pool_result_free(struct shoal_pool_result *r)
{
	if (!r)
		return;
	free(r->data);
	r->data = NULL;
	r->len = 0;
}

SHOAL_API int shoal_pool_cancel(struct shoal_pool *p, uint64_t id)
{
	struct task *t, *prev = NULL;
	uint64_t pos = 0;
	bool moved = false;
	int rc = -ENOENT;

	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	/* Past the tasks put back at the head, ids ascend: the walk ends at
	 * the first larger one, so cancelling a long backlog task by task
	 * (while workers take from it) is not quadratic. */
	for (t = p->pend_head; t; prev = t, t = t->next, pos++) {
		if (t->id != id) {
			if (pos >= p->pend_front && t->id > id)
				break;
			continue;
		}
		if (prev)
			prev->next = t->next;
		else
			p->pend_head = t->next;
		if (p->pend_tail == t)
			p->pend_tail = prev;
		p->npending--;
		if (pos < p->pend_front)
			p->pend_front--;
		pool_task_free(p, t);
		rc = 0;
		break;
	}
	/*
	 * Handed to a worker but maybe not started (prefetched): its cell and
	 * the newer ones after it are taken back (pool_reclaim_to(), the CAS that
	 * races the worker's claim), it is dropped and the others go back to
	 * the head of the backlog, in order, for the supervisor to hand out
	 * again. The worker's own path is untouched. Started: -EBUSY, and the
	 * newer ones taken back are simply handed out again.
	 */
	for (uint32_t i = 0; i < p->nseats && rc == -ENOENT; i++) {
		struct wseat *w = &p->seats[i];

		for (uint64_t s = w->collected; s < w->assigned; s++) {
			if (w->cells[s % p->layout.prefetch]->id != id)
				continue;
			pool_reclaim_to(p, (int)i, s);
			if (w->assigned == s) {
				/* Pushed to the front last: the backlog's head. */
				pool_task_free(p, pool_pend_pop(p));
				rc = 0;
			} else {
				rc = -EBUSY;
			}
			if (p->pend_head)
				moved = true;
			break;
		}
	}
	pthread_mutex_unlock(&p->mu);
	if (moved)
		pool_ring_supervisor(p->hdr);
	return rc;
}

/*
 * Many at once, under one hold of the lock: each seat's unstarted cells
 * from its oldest one in the range go back to the backlog's head (as one
 * cancel's do), then one walk of the backlog drops what is in the range.
 * Task by task, the Python pool took 4 to 14 s to cancel a map of a
 * million tasks (a call each); this way, under a second.
 */
SHOAL_API int64_t shoal_pool_cancel_range(struct shoal_pool *p, uint64_t first, uint64_t count,
					  uint8_t *cancelled)
{
	struct task *t, *prev = NULL, *next;
	uint64_t pos = 0, end, before, front;
	int64_t n = 0;
	bool moved;

	if (!p || count > UINT64_MAX - first || count > INT64_MAX)
		return -EINVAL;
	end = first + count;
	if (cancelled)
		memset(cancelled, 0, count);
	pthread_mutex_lock(&p->mu);
	before = p->npending;
	for (uint32_t i = 0; i < p->nseats; i++) {
		struct wseat *w = &p->seats[i];

		for (uint64_t s = w->collected; s < w->assigned; s++) {
			uint64_t id = w->cells[s % p->layout.prefetch]->id;

			if (id >= first && id < end) {
				pool_reclaim_to(p, (int)i, s);
				break;
			}
		}
	}
	moved = p->npending > before;
	front = p->pend_front;
	for (t = p->pend_head; t; t = next, pos++) {
		next = t->next;
		if (t->id < first || t->id >= end) {
			if (pos >= front && t->id >= end)
				break; /* past the front, ids ascend */
			prev = t;
			continue;
		}
		if (prev)
			prev->next = next;
		else
			p->pend_head = next;
		if (p->pend_tail == t)
			p->pend_tail = prev;
		p->npending--;
		if (pos < front) /* positions in the backlog as it was */
			p->pend_front--;
		if (cancelled)
			cancelled[t->id - first] = 1;
		pool_task_free(p, t);
		n++;
	}
	moved = moved && p->pend_head;
	pthread_mutex_unlock(&p->mu);
	if (moved)
		pool_ring_supervisor(p->hdr);
	return n;
}

SHOAL_API int shoal_pool_task_state(struct shoal_pool *p, uint64_t id)
{
	int rc = -ENOENT;

	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	for (struct task *t = p->pend_head; t; t = t->next)
		if (t->id == id) {
			rc = SHOAL_POOL_TASK_PENDING;
			goto out;
		}
	for (uint32_t i = 0; i < p->nseats; i++)
		for (uint64_t s = p->seats[i].collected; s < p->seats[i].assigned; s++) {
			uint32_t st;

			if (p->seats[i].cells[s % p->layout.prefetch]->id != id)
				continue;
			/* A6: pairs with R2 in the worker's claim; only a
			 * snapshot, so any later state is as good. */
			st = atomic_load_explicit(&sup_cell(p, i, s)->state, memory_order_acquire);
			rc = st == CELL_ASSIGNED ? SHOAL_POOL_TASK_ASSIGNED : SHOAL_POOL_TASK_RUNNING;
			goto out;
		}
	for (struct task *t = p->done_head; t; t = t->next)
		if (t->id == id) {
			rc = SHOAL_POOL_TASK_DONE;
			break;
		}
out:
	pthread_mutex_unlock(&p->mu);
	return rc;
}

SHOAL_API int shoal_pool_stats(struct shoal_pool *p, struct shoal_pool_stats *out, size_t cap)
{
	if (!p || (!out && cap))
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	for (size_t i = 0; i < cap && i < p->cfg.workers; i++)
		out[i] = p->pos[i].st;
	pthread_mutex_unlock(&p->mu);
	return (int)p->cfg.workers;
}

SHOAL_API int shoal_pool_info(struct shoal_pool *p, struct shoal_pool_info *out)
{
	if (!p || !out)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	*out = p->info;
	out->pending = p->npending;
	out->running = p->nrunning;
	out->completed = p->ncompleted;
	out->lost = p->nlost;
	{
		uint64_t v[64], n = p->nrecycle_ns < 64 ? p->nrecycle_ns : 64;

		memcpy(v, p->recycle_ns, sizeof(v));
		/* Insertion sort of at most 64: the median of the last ones. */
		for (uint64_t i = 1; i < n; i++)
			for (uint64_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
				uint64_t t = v[j];

				v[j] = v[j - 1];
				v[j - 1] = t;
			}
		out->recycle_ns_median = n ? v[n / 2] : 0;
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

SHOAL_API const char *shoal_pool_name(const struct shoal_pool *p)
{
	return p->name;
}

SHOAL_API int shoal_pool_destroy(struct shoal_pool *p)
{
	struct task *d;

	if (!p)
		return 0;
	/* From a hook (the pool's own supervisor or exit watcher thread) it would
	 * join itself and free the pool under its own feet. */
	if (pthread_equal(pthread_self(), p->sup_thread) ||
	    pthread_equal(pthread_self(), p->watcher_thread))
		return -EDEADLK;
	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_broadcast(&p->done_cv);
	pthread_mutex_unlock(&p->mu);
	pool_ring_supervisor(p->hdr);
	pthread_join(p->sup_thread, NULL);
	pool_poke_watcher(p);
	pthread_join(p->watcher_thread, NULL);
	close(p->watcher_efd);
	shoal__forkserver_stop(&p->fs);
	pthread_mutex_lock(&p->mu);
	/* Threads still inside shoal_pool_wait() leave with -EPIPE first. */
	while (p->waiting > 0)
		pthread_cond_wait(&p->done_cv, &p->mu);
	while ((d = p->done_head) != NULL) {
		p->done_head = d->next;
		pool_done_free(d);
	}
	pthread_mutex_unlock(&p->mu);
	for (uint32_t i = 0; i < p->nseats; i++)
		free(p->seats[i].cells);
	free(p->seats);
	free(p->pos);
	free(p->watcher_fds);
	free(p->watcher_idx);
	free(p->ring);
	free(p->staff);
	shoal_segment_close(p->seg);
	shoal_unlink(p->name);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return 0;
}

