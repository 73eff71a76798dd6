/*
 * pool_supervise.c - the supervisor thread: its books (the backlog, the
 * seats, the done list) and the recycling policy.
 *
 *     submit -> backlog (pend) --dispatch--> cells of the workers with
 *       room, fewest in flight first
 *     cells DONE --collect--> deliver -> done list -> shoal_pool_wait()
 *     exit watcher: wstatus --settle_exit--> DONE cells delivered,
 *       unstarted ones to the backlog's head, the running one again (or
 *       SHOAL_EWORKERLOST after max_attempts)
 *     limits reached --recycle--> DRAINING: its replacement starts,
 *       it retires once empty
 *
 * The supervisor is one thread in the parent; it alone hands out tasks and
 * makes every recycling decision, so the policy is in this file and
 * nowhere else (the Python pool drives it through ctypes and brings only a
 * way to start processes). Each pass (supervise_once(), under p->mu) walks
 * every seat, then every position, then the backlog, and returns the next
 * deadline; between passes it sleeps on the board's event word, which
 * workers, the exit watcher and the public API ring.
 *
 * Deaths: a dead worker's cells are walked by settle_exit(): DONE cells
 * are results like any other, ASSIGNED cells go back to the head of the
 * backlog, and the RUNNING cell (at most one) is the task the worker died
 * in: it runs again, or after max_attempts fails with SHOAL_EWORKERLOST
 * and the signal. Nothing a worker does can lose a task, because a task
 * leaves the books only when its DONE cell has been copied out. The
 * supervisor's own death ends its process: the fork server then kills the
 * workers, and what the board and its spills held is reaped (shoal_reap()
 * or the next shoal_pool_create()).
 */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* The supervisor's longest sleep (see pool_supervisor_main()). */
#define SUP_SLEEP_MAX_NS 1000000000ull

/* Remove the segment that holds a large task's bytes. */
static void task_unspill(struct shoal_pool *p, struct task *t)
{
	char n[SHOAL_NAME_MAX + 1];

	if (!t->spilled)
		return;
	pool_spill_name(n, sizeof(n), p->name, 'a', t->id, 0);
	shoal_unlink(n);
	t->spilled = false;
}

void pool_task_free(struct shoal_pool *p, struct task *t)
{
	if (!t)
		return;
	task_unspill(p, t);
	free(t);
}

/* Free a delivered task and its result's bytes, wherever they are. */
void pool_done_free(struct task *t)
{
	if (t->r.data != t->data)
		free(t->r.data);
	free(t);
}

static void pend_push_front(struct shoal_pool *p, struct task *t)
{
	t->next = p->pend_head;
	p->pend_head = t;
	if (!p->pend_tail)
		p->pend_tail = t;
	p->npending++;
	p->pend_front++;
}

void pool_pend_push_back(struct shoal_pool *p, struct task *t)
{
	t->next = NULL;
	if (p->pend_tail)
		p->pend_tail->next = t;
	else
		p->pend_head = t;
	p->pend_tail = t;
	p->npending++;
}

struct task *pool_pend_pop(struct shoal_pool *p)
{
	struct task *t = p->pend_head;

	if (!t)
		return NULL;
	p->pend_head = t->next;
	if (!p->pend_head)
		p->pend_tail = NULL;
	p->npending--;
	if (p->pend_front)
		p->pend_front--;
	return t;
}

/* Deliver @t's result (takes ownership of @data, which may be t->data):
 * the task itself joins the done list. */
static void deliver(struct shoal_pool *p, struct task *t, int err, int sig, uint64_t priv,
		    void *data, size_t len)
{
	task_unspill(p, t);
	t->next = NULL;
	t->r.id = t->id;
	t->r.err = err;
	t->r.signal = sig;
	t->r.attempts = t->attempts;
	t->r.last_private = priv;
	t->r.data = data;
	t->r.len = len;
	if (p->done_tail)
		p->done_tail->next = t;
	else
		p->done_head = t;
	p->done_tail = t;
	p->ncompleted++;
	if (err == -SHOAL_EWORKERLOST)
		p->nlost++;
	p->delivered = true; /* waiters are woken once per pass */
}

/* Read worker @w's private memory into the books and its position's stats. */
static void measure(struct shoal_pool *p, struct wseat *w, uint64_t now)
{
	struct shoal_memstat m;
	struct shoal_pool_stats *st = &p->pos[w->pos].st;

	if (w->pid <= 0 || shoal_memstat(w->pid, 0, &m) != 0)
		return;
	w->priv = m.private_bytes;
	w->last_check_ns = now;
	w->fresh = true;
	if (p->pos[w->pos].seat == w - p->seats)
		st->private_now = w->priv;
	if (w->priv > st->private_peak)
		st->private_peak = w->priv;
}

/*
 * Take back the tasks a worker has been handed but not started, newest
 * first, so it stops between tasks however many were prefetched. The
 * worker claims a cell by CAS ASSIGNED -> RUNNING; we take it back by CAS
 * ASSIGNED -> EMPTY: exactly one of the two wins. The worker runs its cells
 * in order, so once one is started all older ones are too; we stop there,
 * and the sequence numbers we give back are handed out again later.
 * pool_reclaim_to() stops at sequence @floor too (shoal_pool_cancel() takes back
 * one cell and those after it).
 */
void pool_reclaim_to(struct shoal_pool *p, int i, uint64_t floor)
{
	struct wseat *w = &p->seats[i];

	while (w->assigned > floor && w->assigned > w->collected) {
		struct pool_cell *c = sup_cell(p, (uint32_t)i, w->assigned - 1);
		uint32_t expect = CELL_ASSIGNED;
		struct task *t;

		if (!atomic_compare_exchange_strong_explicit(&c->state, &expect, CELL_EMPTY,
							    memory_order_acq_rel, memory_order_acquire))
			break;
		w->assigned--;
		t = w->cells[w->assigned % p->layout.prefetch];
		w->cells[w->assigned % p->layout.prefetch] = NULL;
		t->attempts--;
		p->nrunning--;
		pend_push_front(p, t);
	}
}

static void reclaim(struct shoal_pool *p, int i)
{
	pool_reclaim_to(p, i, 0);
}

static void recycle(struct shoal_pool *p, struct wseat *w, int reason)
{
	if (w->reason >= 0)
		return;
	if (!p->pos[w->pos].decided_ns)
		p->pos[w->pos].decided_ns = shoal__now_ns();
	w->reason = reason;
	if (w->state == SEAT_READY)
		w->state = SEAT_DRAINING;
	/* Its task limit counted the prefetched tasks: those it runs. */
	if (reason != SHOAL_POOL_TASKS)
		reclaim(p, (int)(w - p->seats));
}

static void send_retire(struct shoal_pool *p, int i)
{
	struct pool_seat *seat = sup_seat(p, (uint32_t)i);

	atomic_fetch_or_explicit(&seat->cmd, CMD_RETIRE, memory_order_release);
	pool_ring_worker(seat);
	p->seats[i].state = SEAT_RETIRED;
}

/* Copy out every DONE cell of seat @i, in order. */
static void collect(struct shoal_pool *p, int i)
{
	struct wseat *w = &p->seats[i];
	uint64_t before = w->tasks;

	while (w->collected < w->assigned) {
		struct pool_cell *c = sup_cell(p, (uint32_t)i, w->collected);
		struct task *t = w->cells[w->collected % p->layout.prefetch];
		void *data = NULL;
		uint64_t len;
		int err;

		/* A3: pairs with R3 in shoal_pool_worker_done(): the result is
		 * complete once the state says DONE. */
		if (atomic_load_explicit(&c->state, memory_order_acquire) != CELL_DONE)
			break;
		len = c->res_len;
		err = c->err;
		if (c->res_spill) {
			char n[SHOAL_NAME_MAX + 1];
			int rc;

			pool_spill_name(n, sizeof(n), p->name, 'r', t->id, c->attempt);
			rc = pool_spill_get(n, len, &data);
			shoal_unlink(n);
			if (rc) {
				err = rc;
				len = 0;
			}
		} else if (len > p->layout.inline_bytes) {
			err = -EBADMSG;
			len = 0;
		} else if (len) {
			/* Over the task's own bytes if it fits: done, the task
			 * will not run again. */
			data = !t->spilled && len <= t->len ? t->data : malloc(len);
			if (data)
				memcpy(data, cell_res(c), len);
			else
				err = -ENOMEM;
		}
		atomic_store_explicit(&c->state, CELL_EMPTY, memory_order_relaxed);
		w->cells[w->collected % p->layout.prefetch] = NULL;
		w->collected++;
		w->fresh = false;
		w->tasks++;
		p->nrunning--;
		p->pos[w->pos].st.tasks_total++;
		if (p->pos[w->pos].seat == i)
			p->pos[w->pos].st.tasks = w->tasks;
		deliver(p, t, err, 0, 0, data, data ? len : 0);
	}
	/* For observers, once per call: the seat's first line also holds
	 * the bell and the command word the worker reads before every task,
	 * and a store per task collected moved that line away from it each
	 * time. */
	if (w->tasks != before)
		pool_seat_publish_tasks(p, (uint32_t)i, w->tasks);
}

/* Collect every live seat's DONE cells; true if any was. */
bool pool_collect_all(struct shoal_pool *p)
{
	uint64_t before = p->ncompleted;

	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state != SEAT_FREE && !p->seats[i].exited)
			collect(p, (int)i);
	return p->ncompleted != before;
}

/* Seat @i's process is gone: settle its cells and free the seat. */
static void settle_exit(struct shoal_pool *p, int i)
{
	struct wseat *w = &p->seats[i];
	struct wpos *ps = &p->pos[w->pos];
	int sig = 0, code = 0;
	bool planned = w->state == SEAT_RETIRED;

	if (w->wstatus >= 0 && WIFSIGNALED(w->wstatus))
		sig = WTERMSIG(w->wstatus);
	else if (w->wstatus >= 0 && WIFEXITED(w->wstatus))
		code = WEXITSTATUS(w->wstatus);
	collect(p, i);
	/* Walk the rest backwards so requeued tasks keep their order at the
	 * head of the backlog. */
	for (uint64_t s = w->assigned; s-- > w->collected;) {
		struct pool_cell *c = sup_cell(p, (uint32_t)i, s);
		struct task *t = w->cells[s % p->layout.prefetch];
		uint32_t st = atomic_load_explicit(&c->state, memory_order_acquire);

		w->cells[s % p->layout.prefetch] = NULL;
		p->nrunning--;
		if (st == CELL_RUNNING) {
			char n[SHOAL_NAME_MAX + 1];

			/* It may have been writing a large result. */
			pool_spill_name(n, sizeof(n), p->name, 'r', t->id, c->attempt);
			shoal_unlink(n);
			if (t->attempts >= p->cfg.max_attempts || p->closing) {
				deliver(p, t, p->closing ? -ECANCELED : -SHOAL_EWORKERLOST, sig, w->priv,
					NULL, 0);
				if (!p->closing) {
					t->r.exit_code = (uint8_t)code;
					t->r.hard_limit = w->state == SEAT_KILLING;
				}
				continue;
			}
		} else {
			/* Never started: this run does not count. */
			t->attempts--;
		}
		if (p->closing)
			deliver(p, t, -ECANCELED, 0, 0, NULL, 0);
		else
			pend_push_front(p, t);
	}
	w->assigned = w->collected = 0;
	if (!planned) {
		int reason = w->state == SEAT_KILLING ? SHOAL_POOL_HARD : SHOAL_POOL_DIED;

		if (w->state == SEAT_STARTING || !atomic_load_explicit(&sup_seat(p, (uint32_t)i)->ready,
									 memory_order_relaxed)) {
			if (++p->early_deaths >= 5 && !p->closing)
				p->broken = true;
		}
		if (!p->closing) {
			if (!ps->decided_ns)
				ps->decided_ns = shoal__now_ns();
			ps->st.recycles[reason]++;
			ps->st.last_reason = reason;
		}
	} else if (w->reason >= 0) {
		ps->st.recycles[w->reason]++;
		ps->st.last_reason = w->reason;
	}
	if (ps->seat == i) {
		ps->seat = -1;
		ps->st.pid = 0;
		ps->st.private_now = 0;
		ps->st.tasks = 0;
	}
	w->state = SEAT_FREE;
	w->pid = 0;
	/* This seat is free now; the position's other seat (a replacement
	 * started early) shows the new replacement count. */
	for (uint32_t k = 0; k < p->nseats; k++)
		if ((int)k == i || (p->seats[k].state != SEAT_FREE && p->seats[k].pos == w->pos))
			pool_seat_publish(p, k);
}

/*
 * The recycling policy, for a worker that takes tasks. Limits are decided
 * as soon as they are reached: the worker gets no more tasks (DRAINING) and
 * its replacement starts at once; it retires when it has nothing in flight
 * and the replacement is ready (see the position loop). The soft memory
 * limit first asks the worker, once idle, to trim; only if it is still over
 * afterwards is it recycled.
 */
static void apply_policy(struct shoal_pool *p, int i, uint64_t now, uint64_t *next)
{
	struct wseat *w = &p->seats[i];
	struct pool_seat *seat = sup_seat(p, (uint32_t)i);
	bool idle = w->assigned == w->collected;

	if (w->state != SEAT_READY && w->state != SEAT_DRAINING)
		return;
	if (w->trimming) {
		/* A5: pairs with R5 in shoal_pool_worker_trimmed(). */
		if (atomic_load_explicit(&seat->trim_ack, memory_order_acquire) != w->trim_seq)
			return;
		w->trimming = false;
		w->want_trim = false;
		measure(p, w, now);
		if (w->priv > p->cfg.max_private)
			recycle(p, w, SHOAL_POOL_MEMORY);
		else if (w->reason < 0)
			w->state = SEAT_READY;
		return;
	}
	if (w->reason >= 0)
		return;
	if (w->task_limit && w->tasks + (w->assigned - w->collected) >= w->task_limit) {
		recycle(p, w, SHOAL_POOL_TASKS);
		return;
	}
	if (p->cfg.max_age_ns && now - w->started_ns >= p->cfg.max_age_ns) {
		recycle(p, w, SHOAL_POOL_AGE);
		return;
	}
	if (p->cfg.max_private && !w->soft_exempt) {
		uint64_t due = w->last_check_ns + p->cfg.check_ns / 4;

		/* Read at most every check_ns / 4; a reading skipped now is
		 * taken at that deadline, so an idle worker is not missed. */
		if (now >= due)
			measure(p, w, now);
		else if (due < *next)
			*next = due;
		if (w->priv > p->cfg.max_private) {
			w->want_trim = true;
			w->state = SEAT_DRAINING;
			reclaim(p, i);
		} else if (w->want_trim && now >= due) {
			/* Back under by itself (the task freed it): no trim. */
			w->want_trim = false;
			w->state = SEAT_READY;
		}
	}
	idle = w->assigned == w->collected;
	if (w->want_trim && idle && w->fresh) {
		/* Between tasks: trim first. */
		w->trim_seq = (w->trim_seq + 1) & CMD_TRIM_MASK;
		if (!w->trim_seq)
			w->trim_seq = 1;
		w->trimming = true;
		p->pos[w->pos].st.trims++;
		atomic_store_explicit(&seat->cmd, w->trim_seq, memory_order_release);
		pool_ring_worker(seat);
	}
}

/* Tasks handed to seat @i and not yet collected. */
static uint64_t inflight(const struct shoal_pool *p, uint32_t i)
{
	return p->seats[i].assigned - p->seats[i].collected;
}

/* Can seat @i take one more task? */
static bool can_take(struct shoal_pool *p, uint32_t i)
{
	struct wseat *w = &p->seats[i];

	return w->state == SEAT_READY && inflight(p, i) < p->layout.prefetch &&
	       !(w->task_limit && w->tasks + inflight(p, i) >= w->task_limit);
}

/* Put task @t in seat @i's next cell; the seat is rung once the pass ends. */
static void assign(struct shoal_pool *p, uint32_t i, struct task *t)
{
	struct wseat *w = &p->seats[i];
	struct pool_cell *c = sup_cell(p, i, w->assigned);

	c->task_id = t->id;
	c->attempt = ++t->attempts;
	c->arg_len = t->len;
	c->arg_spill = t->spilled;
	c->err = 0;
	c->res_len = 0;
	c->res_spill = 0;
	if (!t->spilled && t->len)
		memcpy(cell_args(c), t->data, t->len);
	/* R1: the task is in the cell before the state says so; pairs
	 * with A1 in shoal_pool_worker_next(). */
	atomic_store_explicit(&c->state, CELL_ASSIGNED, memory_order_release);
	w->cells[w->assigned % p->layout.prefetch] = t;
	w->assigned++;
	p->nrunning++;
	if (!w->ring_due) {
		w->ring_due = true;
		p->ring[p->nring++] = i;
	}
}

/*
 * Hand out the backlog, each task to a worker with the fewest in flight:
 * in rounds, one task to each seat that has the fewest, so one walk of the
 * seats hands out up to a task per seat (not one task per walk: with 128
 * workers, a walk of 258 seats per task was a tenth of the supervisor's
 * time).
 *
 * Each seat given tasks is rung once, after the pass (p->ring), not per
 * cell. Rung per cell, a sleeping worker woke for its first cell, ran it
 * before the supervisor had written the next, and slept again: a wake-up
 * per task. With 2 workers on 2 cores that is rare; with 32 the supervisor
 * hands out round the seats, and the woken ones run on the other core
 * while it does (0.8 wake-ups per task measured, for 0.005 with 2).
 */
static void fill(struct shoal_pool *p)
{
	while (p->pend_head) {
		uint64_t least = UINT64_MAX;

		for (uint32_t i = 0; i < p->nseats; i++)
			if (can_take(p, i) && inflight(p, i) < least)
				least = inflight(p, i);
		if (least == UINT64_MAX)
			return;
		for (uint32_t i = 0; i < p->nseats && p->pend_head; i++)
			if (can_take(p, i) && inflight(p, i) == least)
				assign(p, i, pool_pend_pop(p));
	}
}

/*
 * Hand out the backlog, up to each worker's prefetch. When the backlog is
 * empty and a worker has nothing left, the tasks the others hold beyond
 * an even share (what the ready workers hold, over how many they are) and
 * have not started are taken back and shared out again, so a deep
 * prefetch (fast for tiny tasks) does not leave one worker idle while
 * another still has a queue behind a long task. Only the excess moves:
 * taking back every unstarted task, as this did, moved four in ten of
 * them with 128 Python workers on 2 cores, where the caller cannot keep
 * that many fed and some worker is always idle; each move is a copy and
 * cells to refill.
 */
static void dispatch(struct shoal_pool *p)
{
	uint64_t held = 0, share;
	uint32_t ready = 0;
	bool idle = false;

	fill(p);
	if (p->pend_head)
		return;
	for (uint32_t i = 0; i < p->nseats; i++) {
		if (p->seats[i].state != SEAT_READY)
			continue;
		ready++;
		held += inflight(p, i);
		if (inflight(p, i) == 0)
			idle = true;
	}
	if (!idle)
		return;
	share = (held + ready - 1) / ready;
	if (share < 1)
		share = 1;
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state == SEAT_READY && inflight(p, i) > share)
			pool_reclaim_to(p, (int)i, p->seats[i].collected + share);
	fill(p);
}

/*
 * The supervisor's pass, step by step. Each step decides one thing, in
 * this order: what the workers did (watch_seat: exits, readiness, results,
 * limits), who works at each position (staff_positions), what the backlog
 * becomes when the pool cannot go on (fail_backlog, retire_all), and
 * which worker runs which task (dispatch). Deadlines found on the way are
 * folded into @next: the supervisor sleeps until the earliest.
 */

/* Seat @i's starting worker: ready yet? If so it takes tasks from now on;
 * its replacement time is counted and its baseline memory read. A worker
 * over a limit before its first task would be recycled for ever: the pool
 * says so once (info.config_reason) and does not apply that limit to it. */
static bool admit_ready(struct shoal_pool *p, uint32_t i, uint64_t now)
{
	struct wseat *w = &p->seats[i];

	/* A4: pairs with R4 in shoal_pool_worker_open(). */
	if (!atomic_load_explicit(&sup_seat(p, i)->ready, memory_order_acquire))
		return false;
	w->state = SEAT_READY;
	p->early_deaths = 0;
	if (p->pos[w->pos].decided_ns) {
		p->recycle_ns[p->nrecycle_ns++ % 64] = now - p->pos[w->pos].decided_ns;
		p->pos[w->pos].decided_ns = 0;
	}
	measure(p, w, now);
	w->baseline = w->priv;
	if (p->cfg.max_private && w->baseline > p->cfg.max_private) {
		w->soft_exempt = true;
		if (p->info.config_reason < 0) {
			p->info.config_reason = SHOAL_POOL_MEMORY;
			p->info.config_private = w->baseline;
		}
	}
	if (p->cfg.hard_private && w->baseline > p->cfg.hard_private) {
		w->hard_exempt = true;
		if (p->info.config_reason < 0) {
			p->info.config_reason = SHOAL_POOL_HARD;
			p->info.config_private = w->baseline;
		}
	}
	return true;
}

/* A worker sent SIGTERM over the hard limit: SIGKILL once its grace ends. */
static void escalate_kill(struct wseat *w, uint64_t now, uint64_t *next)
{
	if (now >= w->kill_at && w->pidfd >= 0)
		pool_pidfd_signal(w->pidfd, SIGKILL);
	else if (w->kill_at < *next)
		*next = w->kill_at;
}

/* The hard limit, while tasks run: read the worker every check_ns; over
 * the limit, SIGTERM now (its task runs again elsewhere). True if it was
 * sent. */
static bool apply_hard_limit(struct shoal_pool *p, struct wseat *w, uint64_t now, uint64_t *next)
{
	if (!p->cfg.hard_private || w->hard_exempt || w->assigned == w->collected)
		return false;
	if (now - w->last_check_ns >= p->cfg.check_ns)
		measure(p, w, now);
	if (w->priv > p->cfg.hard_private && w->pidfd >= 0) {
		pool_pidfd_signal(w->pidfd, SIGTERM);
		w->state = SEAT_KILLING;
		w->reason = SHOAL_POOL_HARD;
		if (!p->pos[w->pos].decided_ns)
			p->pos[w->pos].decided_ns = now;
		w->kill_at = now + p->cfg.grace_ns;
		if (w->kill_at < *next)
			*next = w->kill_at;
		return true;
	}
	if (now + p->cfg.check_ns < *next)
		*next = now + p->cfg.check_ns;
	return false;
}

/* Everything about seat @i's worker this pass: its exit settled, its
 * readiness, its results collected, then the limits it is under. */
static void watch_seat(struct shoal_pool *p, uint32_t i, uint64_t now, uint64_t *next)
{
	struct wseat *w = &p->seats[i];

	if (w->state == SEAT_FREE)
		return;
	if (w->exited) {
		settle_exit(p, (int)i);
		return;
	}
	if (w->state == SEAT_STARTING && !admit_ready(p, i, now))
		return;
	collect(p, (int)i);
	if (w->state == SEAT_KILLING) {
		escalate_kill(w, now, next);
		return;
	}
	if (w->state == SEAT_RETIRED)
		return;
	if (apply_hard_limit(p, w, now, next))
		return;
	apply_policy(p, (int)i, now, next);
	if (w->state == SEAT_READY && p->cfg.max_age_ns) {
		uint64_t due = w->started_ns + p->cfg.max_age_ns;

		if (due < *next)
			*next = due;
	}
}

/*
 * Every position has one worker taking tasks, or starting to: a position
 * with neither gets one started (a failed spawn is retried after 100 ms,
 * and five failures in a row break the pool). A worker being recycled has
 * had its replacement started at once; it retires once that has started
 * and it has nothing left in flight. One walk of the seats finds every
 * position's worker (a walk per position, 128 walks of 258 seats a pass
 * with 128 workers, was as much of the supervisor's time as handing out
 * the tasks). Returns the time, read again after a spawn.
 */
static uint64_t staff_positions(struct shoal_pool *p, uint64_t now)
{
	int *ready = p->staff, *starting = p->staff + p->cfg.workers, rc;
	bool full;

	for (unsigned pos = 0; pos < p->cfg.workers; pos++)
		ready[pos] = starting[pos] = -1;
	for (uint32_t i = 0; i < p->nseats; i++) {
		struct wseat *w = &p->seats[i];

		if (w->state == SEAT_FREE || w->reason >= 0)
			continue;
		if (w->state == SEAT_STARTING)
			starting[w->pos] = (int)i;
		else
			ready[w->pos] = (int)i;
	}
	for (unsigned pos = 0; pos < p->cfg.workers && !p->broken; pos++) {
		if (ready[pos] >= 0 || starting[pos] >= 0)
			continue;
		/* No free seat (1) resolves itself when a retired worker's
		 * exit wakes us; a failed spawn waits 100 ms. */
		if (now >= p->spawn_retry_ns) {
			rc = pool_start_worker(p, (int)pos);
			if (rc < 0) {
				p->spawn_retry_ns = now + 100000000u;
				/* Counted as a worker that died before it
				 * was ready: five in a row and the pool is
				 * broken, not waiting for ever. */
				if (++p->early_deaths >= 5)
					p->broken = true;
			} else if (rc == 0) {
				starting[pos] = 0; /* some seat: one is starting */
			}
		}
		now = shoal__now_ns();
	}
	if (p->broken)
		return now;
	/* Started is enough: waiting for it to be ready could leave every
	 * seat held by an idle worker waiting for a seat. And with no seat
	 * free, idle workers being recycled leave at once: a replacement can
	 * start only once one has. */
	full = pool_free_seat(p) < 0;
	for (uint32_t i = 0; i < p->nseats; i++) {
		struct wseat *o = &p->seats[i];

		if (o->state == SEAT_DRAINING && o->reason >= 0 && o->assigned == o->collected &&
		    !o->trimming && (ready[o->pos] >= 0 || starting[o->pos] >= 0 || full))
			send_retire(p, (int)i);
	}
	for (unsigned pos = 0; pos < p->cfg.workers; pos++) {
		int r = ready[pos];

		if (r >= 0 && p->pos[pos].seat != r) {
			p->pos[pos].seat = r;
			p->pos[pos].st.pid = p->seats[r].pid;
			p->pos[pos].st.tasks = p->seats[r].tasks;
			p->pos[pos].st.private_now = p->seats[r].priv;
		}
	}
	return now;
}

/* The pool cannot run the backlog (broken: -ECHILD; closing: -ECANCELED):
 * every task in it fails with @err. */
static void fail_backlog(struct shoal_pool *p, int err)
{
	struct task *t;

	while ((t = pool_pend_pop(p)) != NULL)
		deliver(p, t, err, 0, 0, NULL, 0);
}

/* Closing: every worker that takes tasks, or will, is told to leave. */
static void retire_all(struct shoal_pool *p)
{
	for (uint32_t i = 0; i < p->nseats; i++) {
		struct wseat *w = &p->seats[i];

		if (w->state == SEAT_READY || w->state == SEAT_DRAINING || w->state == SEAT_STARTING)
			send_retire(p, (int)i);
	}
}

/* One pass over everything. Lock held. Returns the next deadline. */
static uint64_t supervise_once(struct shoal_pool *p)
{
	uint64_t now = shoal__now_ns(), next = UINT64_MAX;

	for (uint32_t i = 0; i < p->nseats; i++)
		watch_seat(p, i, now, &next);
	if (!p->closing && !p->broken)
		now = staff_positions(p, now);
	if (p->spawn_retry_ns > now && p->spawn_retry_ns < next)
		next = p->spawn_retry_ns;
	if (p->broken)
		fail_backlog(p, -ECHILD);
	if (p->closing) {
		fail_backlog(p, -ECANCELED);
		retire_all(p);
	} else {
		dispatch(p);
		/* Workers with tasks are read every check_ns for the hard limit. */
		for (uint32_t i = 0; i < p->nseats && p->cfg.hard_private; i++)
			if (p->seats[i].assigned != p->seats[i].collected &&
			    now + p->cfg.check_ns < next)
				next = now + p->cfg.check_ns;
	}
	return next;
}

/* No seat holds a worker (closing: the supervisor and the exit watcher end). */
bool pool_all_free(struct shoal_pool *p)
{
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state != SEAT_FREE)
			return false;
	return true;
}

void *pool_supervisor_main(void *arg)
{
	struct shoal_pool *p = arg;
	uint64_t kill_all_at = 0;
	uint32_t nring, tag;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		uint32_t seen = atomic_load_explicit(&p->hdr->event, memory_order_seq_cst);
		uint64_t next = supervise_once(p);

		if (p->delivered) {
			p->delivered = false;
			pthread_cond_broadcast(&p->done_cv);
		}

		if (p->closing) {
			uint64_t now = shoal__now_ns();

			if (pool_all_free(p))
				break;
			if (!kill_all_at)
				kill_all_at = now + p->cfg.grace_ns;
			if (now >= kill_all_at) {
				for (uint32_t i = 0; i < p->nseats; i++)
					if (p->seats[i].state != SEAT_FREE && p->seats[i].pidfd >= 0)
						pool_pidfd_signal(p->seats[i].pidfd, SIGKILL);
				kill_all_at = now + p->cfg.grace_ns;
			}
			if (kill_all_at < next)
				next = kill_all_at;
		}
		/* The workers handed tasks are rung with the lock released: a
		 * woken worker may take this core at once, and the lock must
		 * not be held by a thread that is not running (the results
		 * thread and submitters wait for it). */
		nring = p->nring;
		p->nring = 0;
		for (uint32_t k = 0; k < nring; k++)
			p->seats[p->ring[k]].ring_due = false;
		pthread_mutex_unlock(&p->mu);
		for (uint32_t k = 0; k < nring; k++)
			pool_ring_worker(sup_seat(p, p->ring[k]));
		/* Announce the sleep, then look again (pairs with
		 * pool_ring_supervisor()): an event after the look wakes us.
		 * Never longer than a second: a worker maps the board
		 * writable, and one that clears the announcement must not
		 * make the supervisor deaf for good. */
		tag = pool_sleep_tag(seen);
		atomic_store_explicit(&p->hdr->sup_waiting, tag, memory_order_seq_cst);
		if (atomic_load_explicit(&p->hdr->event, memory_order_seq_cst) == seen) {
			uint64_t cap = shoal__now_ns() + SUP_SLEEP_MAX_NS;

			shoal__futex_wait(&p->hdr->event, seen, next < cap ? next : cap);
		}
		pool_sleep_over(&p->hdr->sup_waiting, tag);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

