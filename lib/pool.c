/*
 * pool.c - a task board in shared memory, and the supervisor that starts,
 * watches and recycles the workers that read it.
 *
 * The board (one shoal object of kind SHOAL__KIND_POOL) holds only what is
 * in flight: one seat per worker process (twice the pool size, so a
 * replacement can start before the worker it replaces retires), and in each
 * seat a small ring of cells, one task each. Tasks not yet handed out stay
 * in the supervisor's own memory, so the backlog has no bound but memory.
 *
 * Each cell has one writer at a time, handed over by its state word:
 *
 *     EMPTY --supervisor writes task, R1--> ASSIGNED
 *     ASSIGNED --worker claims (CAS, R2)--> RUNNING
 *     RUNNING --worker writes result, R3--> DONE
 *     DONE --supervisor (or a waiter) copies result--> EMPTY
 *
 * A cell is claimed by (seat, generation, attempt): the seat names the
 * worker, the generation tells its incarnations apart, the attempt counts
 * runs of the task. The worker writes the result, then marks the cell DONE
 * (release), so a DONE cell always holds a whole result.
 *
 * The supervisor is one thread in the parent; it alone hands out tasks and
 * makes every recycling decision, so the policy is in this file and nowhere
 * else (the Python pool drives it through ctypes and brings only a way to
 * start processes). A second thread, the exit watcher, sleeps in poll() on one
 * pidfd per worker: a worker's death wakes it at once, it collects the exit
 * status and wakes the supervisor, which then walks the dead worker's cells:
 * DONE cells are results like any other, ASSIGNED cells go back to the head
 * of the backlog, and the RUNNING cell (at most one) is the task the worker
 * died in: it runs again, or after max_attempts fails with
 * SHOAL_EWORKERLOST and the signal. Nothing a worker does can lose a task,
 * because a task leaves the supervisor's books only when its DONE cell has
 * been copied out.
 *
 * Sleeping is on futex words in the board: workers sleep on their seat's
 * bell, the supervisor on the board's event word; each side announces that
 * it sleeps, and the other side wakes it only then (seq_cst on both, the
 * Dekker pattern), so a busy pool makes no futex calls. A worker that ends a
 * task rings the supervisor only when it runs low or a thread sleeps in
 * shoal_pool_wait(); a waiter that finds nothing delivered copies DONE
 * cells out itself (see wait_results()).
 *
 * Workers come from a single-threaded fork server (lib/forkserver.c; the
 * Python binding brings its own through the spawn hook), never from this
 * process's threads. If the supervisor's process dies, the server kills
 * them (EOF on its socket); any worker also sees it between tasks (at most
 * every 0.5 s) or when its wait times out (each second), and leaves.
 */
#include "internal.h"
#include "forkserver.h"

#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the board ---------------------------------------------------------- */

#define POOL_MAX_WORKERS 256u
#define POOL_MAX_PREFETCH 256u
#define POOL_NAME_MAX 150 /* room for ".r<id>.<attempt>" spill names */

enum cell_state {
	CELL_EMPTY = 0,
	CELL_ASSIGNED = 1,
	CELL_RUNNING = 2,
	CELL_DONE = 3,
};

/* The seat's command word: RETIRE bit, and a trim sequence in the rest. */
#define CMD_RETIRE 0x80000000u
#define CMD_TRIM_MASK 0x7fffffffu

struct pool_hdr {
	uint32_t nseats;
	uint32_t prefetch;
	uint64_t inline_bytes;
	uint64_t cell_size;
	uint64_t seat_size;
	uint64_t sup_key;              /* the supervisor's identity */
	shoal__atomic_u32 event;       /* futex: bumped on anything for the supervisor */
	shoal__atomic_u32 sup_waiting; /* 1 while the supervisor sleeps on event */
	shoal__atomic_u32 res_waiting; /* threads asleep in shoal_pool_wait() */
	uint32_t reserved[3];
};
_Static_assert(sizeof(struct pool_hdr) == 64, "pool header layout is ABI");
_Static_assert(offsetof(struct pool_hdr, event) == 40, "pool header layout is ABI");

struct pool_seat {
	shoal__atomic_u64 gen;            /* incarnation; written before spawn */
	shoal__atomic_u64 worker_key;     /* the worker's identity, once ready */
	shoal__atomic_u32 bell;           /* futex: bumped by the supervisor */
	shoal__atomic_u32 cmd;            /* CMD_RETIRE | trim sequence */
	shoal__atomic_u32 trim_ack;       /* trim sequence the worker finished */
	shoal__atomic_u32 worker_waiting; /* 1 while the worker sleeps on bell */
	shoal__atomic_u32 ready;          /* 1 once the worker has opened */
	uint32_t reserved[7];
};
_Static_assert(sizeof(struct pool_seat) == 64, "pool seat layout is ABI");
_Static_assert(offsetof(struct pool_seat, bell) == 16, "pool seat layout is ABI");

struct pool_cell {
	shoal__atomic_u32 state; /* enum cell_state */
	uint32_t attempt;
	uint64_t task_id;
	uint64_t arg_len;
	uint32_t arg_spill; /* 1: the bytes are in segment "<board>.a<id>" */
	int32_t err;
	uint64_t res_len;
	uint32_t res_spill; /* 1: in segment "<board>.r<id>.<attempt>" */
	uint32_t reserved[5];
	/* then inline_bytes of task, inline_bytes of result */
};
_Static_assert(sizeof(struct pool_cell) == 64, "pool cell layout is ABI");
_Static_assert(offsetof(struct pool_cell, res_len) == 32, "pool cell layout is ABI");
/* The bindings read results as rows of words (bindings/python/shoal/pool.py,
 * _WORDS): exit_code and hard_limit live in what was padding. */
_Static_assert(sizeof(struct shoal_pool_result) == 48, "pool result layout is ABI");
_Static_assert(offsetof(struct shoal_pool_result, exit_code) == 20, "pool result layout is ABI");
_Static_assert(offsetof(struct shoal_pool_result, last_private) == 24, "pool result layout is ABI");

/*
 * Addresses inside the board come from a private copy of its layout @l
 * (the supervisor's own, or a worker's validated copy), never from the
 * shared header: any worker maps it writable, and one stray write there
 * must not send the supervisor outside the mapping.
 */
static struct pool_seat *seat_at(void *data, const struct pool_hdr *l, uint32_t i)
{
	return (struct pool_seat *)((char *)data + (uint64_t)i * l->seat_size);
}

static struct pool_cell *cell_in(struct pool_seat *seat, const struct pool_hdr *l, uint64_t seq)
{
	return (struct pool_cell *)((char *)seat + sizeof(struct pool_seat) + (seq % l->prefetch) * l->cell_size);
}

static char *cell_args(struct pool_cell *c)
{
	return (char *)(c + 1);
}

static char *cell_res(const struct pool_hdr *l, struct pool_cell *c)
{
	return (char *)(c + 1) + l->inline_bytes;
}

/*
 * Wake the supervisor: pairs with the sup_waiting store in
 * supervisor_main(). The ringer that takes the flag makes the one system
 * call; the rings after it, before the supervisor has run, find it taken
 * and cost nothing (the supervisor looks at everything once it runs). A
 * load first: while the supervisor is awake, a ring writes the event
 * count only, never the flag.
 */
static void ring_supervisor(struct pool_hdr *h)
{
	atomic_fetch_add_explicit(&h->event, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&h->sup_waiting, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&h->sup_waiting, 0, memory_order_seq_cst))
		shoal__futex_wake(&h->event, INT32_MAX);
}

/* Wake a worker: pairs with the worker_waiting store in worker_next();
 * as above, one system call per sleep, not one per task handed out. */
static void ring_worker(struct pool_seat *seat)
{
	atomic_fetch_add_explicit(&seat->bell, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&seat->worker_waiting, memory_order_seq_cst) &&
	    atomic_exchange_explicit(&seat->worker_waiting, 0, memory_order_seq_cst))
		shoal__futex_wake(&seat->bell, INT32_MAX);
}

/* ---- large tasks and results: one segment each ----------------------------- */

static void spill_name(char *buf, size_t cap, const char *board, char kind, uint64_t id,
		       uint32_t attempt)
{
	if (kind == 'a')
		snprintf(buf, cap, "%s.a%llu", board, (unsigned long long)id);
	else
		snprintf(buf, cap, "%s.r%llu.%u", board, (unsigned long long)id, attempt);
}

static int spill_put(const char *name, const void *data, size_t len)
{
	struct shoal_segment *s;
	int rc = shoal_segment_create(name, len, NULL, &s);

	if (rc)
		return rc;
	memcpy(shoal_segment_data(s), data, len);
	shoal_segment_close(s);
	return 0;
}

/* Copy a spilled object out into malloc()ed memory; it must hold @len. */
static int spill_get(const char *name, size_t len, void **out)
{
	struct shoal_segment *s;
	void *buf;
	int rc = shoal_segment_open(name, SHOAL_RDONLY, &s);

	if (rc)
		return rc;
	if (shoal_segment_size(s) != len) {
		shoal_segment_close(s);
		return -EBADMSG;
	}
	buf = malloc(len);
	if (!buf) {
		shoal_segment_close(s);
		return -ENOMEM;
	}
	memcpy(buf, shoal_segment_data(s), len);
	shoal_segment_close(s);
	*out = buf;
	return 0;
}

/* ---- the supervisor's books (process-local) ---------------------------------- */

/*
 * A task, from submit to the caller that takes its result: in the backlog,
 * in a worker's cell, then in the done list with @r filled. One allocation
 * throughout, made by the submitting thread and freed by the one that
 * takes the result: a result that fits goes into @data, over the task's
 * own bytes (no longer needed once it is done). So delivering allocates
 * nothing and cannot fail; and the supervisor no longer spends its time
 * in malloc for memory other threads free (see docs/design.md).
 */
struct task {
	struct task *next; /* in the backlog, then in the done list */
	uint64_t id;
	size_t len;
	bool spilled;
	uint32_t attempts;
	struct shoal_pool_result r; /* once delivered */
	char data[]; /* the task's bytes (unless spilled), then its result */
};

enum seat_state {
	SEAT_FREE = 0,
	SEAT_STARTING, /* spawned, not yet ready */
	SEAT_READY,    /* takes tasks */
	SEAT_DRAINING, /* to be recycled: no new tasks; retired once empty */
	SEAT_RETIRED,  /* told to leave */
	SEAT_KILLING,  /* over the hard limit: SIGTERM sent, SIGKILL at kill_at */
};

struct wseat {
	enum seat_state state;
	int pos;       /* worker position it serves */
	pid_t pid;
	int pidfd;     /* owned by the exit watcher once set; -1 when closed */
	bool exited;   /* the exit watcher collected @wstatus */
	int wstatus;
	uint64_t gen;
	uint64_t assigned, collected; /* cell sequence numbers */
	struct task **cells;          /* [prefetch], the task in each cell */
	uint64_t started_ns;
	uint64_t tasks, task_limit;
	uint64_t priv, baseline;
	uint64_t last_check_ns;
	int reason;                   /* why it is being recycled, or -1 */
	uint32_t trim_seq;            /* last trim asked; 0: none */
	bool fresh;                   /* read since its last task ended */
	bool want_trim;               /* over the soft limit: trim when idle */
	bool trimming;                /* waiting for trim_ack */
	bool soft_exempt, hard_exempt;
	uint64_t kill_at;
};

struct wpos {
	int seat;      /* the worker serving it, or -1 */
	uint64_t decided_ns; /* when its worker was to be replaced, or 0 */
	struct shoal_pool_stats st;
};

struct shoal_pool {
	struct shoal_pool_config cfg;
	struct shoal_segment *seg;
	struct pool_hdr *hdr;     /* shared: only its atomics are used */
	struct pool_hdr layout;   /* private: sizes, for every address */
	struct shoal__forkserver fs; /* forks a C pool's workers (no spawn hook) */
	char name[POOL_NAME_MAX + 1];
	uint32_t nseats;

	pthread_mutex_t mu;
	pthread_cond_t done_cv;
	unsigned waiting; /* threads inside shoal_pool_wait(); destroy waits for 0 */
	pthread_t sup_thread, watcher_thread;
	bool threads_started;
	int watcher_efd; /* eventfd: the exit watcher's set of pidfds changed */
	struct pollfd *watcher_fds; /* the exit watcher's poll set, [nseats + 1] */
	int *watcher_idx;           /* the seat of each entry */

	/* The backlog: the first pend_front tasks were put back at its head
	 * (taken back, or orphaned by a dead worker), in any order; the rest
	 * are as submitted, in ascending id order. */
	struct task *pend_head, *pend_tail;
	uint64_t pend_front;
	struct task *done_head, *done_tail;
	uint64_t next_id;
	uint64_t npending, nrunning, ncompleted, nlost;
	bool closing, broken;
	bool delivered; /* results came this pass: wake shoal_pool_wait() */
	uint64_t recycle_ns[64]; /* the last decision-to-ready times */
	uint64_t nrecycle_ns;
	int early_deaths; /* workers in a row that failed to start or died before ready */
	uint64_t spawn_retry_ns;
	struct shoal_pool_info info;

	struct wseat *seats;
	struct wpos *pos;
};

static struct pool_seat *sup_seat(struct shoal_pool *p, uint32_t i)
{
	return seat_at(p->seg->data, &p->layout, i);
}

static struct pool_cell *sup_cell(struct shoal_pool *p, uint32_t i, uint64_t seq)
{
	return cell_in(sup_seat(p, i), &p->layout, seq);
}

/* Remove the segment that holds a large task's bytes. */
static void task_unspill(struct shoal_pool *p, struct task *t)
{
	char n[SHOAL_NAME_MAX + 1];

	if (!t->spilled)
		return;
	spill_name(n, sizeof(n), p->name, 'a', t->id, 0);
	shoal_unlink(n);
	t->spilled = false;
}

static void task_free(struct shoal_pool *p, struct task *t)
{
	if (!t)
		return;
	task_unspill(p, t);
	free(t);
}

/* Free a delivered task and its result's bytes, wherever they are. */
static void done_free(struct task *t)
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

static void pend_push_back(struct shoal_pool *p, struct task *t)
{
	t->next = NULL;
	if (p->pend_tail)
		p->pend_tail->next = t;
	else
		p->pend_head = t;
	p->pend_tail = t;
	p->npending++;
}

static struct task *pend_pop(struct shoal_pool *p)
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

/* ---- measuring ---------------------------------------------------------------- */

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

/* ---- spawning --------------------------------------------------------------- */

/* What a C pool's worker runs, in a child of the fork server: @arg is the
 * server's copy of the pool, as it was at shoal_pool_create(). */
static int pool_child(void *arg, uint32_t seat, uint64_t gen)
{
	struct shoal_pool *p = arg;
	struct shoal_pool_worker *w;
	int rc;

	rc = shoal_pool_worker_open(p->name, seat, gen, &w);
	if (rc)
		return rc;
	return shoal_pool_worker_run(w, p->cfg.fn, p->cfg.fn_arg);
}

/* The exit status of worker @pid, whose pidfd said it has exited: from
 * the fork server (C pools) or the join hook. A hook's worker may be our
 * own child (multiprocessing's): if it was killed, it may have died inside
 * a create, so sweep what it left while its zombie still pins its pid (a
 * fork server's worker is swept by the server). */
static int join_worker(struct shoal_pool *p, int pidfd, pid_t pid)
{
	siginfo_t si;

	if (!p->cfg.spawn)
		return shoal__forkserver_join(&p->fs, pid);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOWAIT | WNOHANG) == 0 &&
	    si.si_pid == pid && si.si_code != CLD_EXITED)
		shoal__unlink_tmp_of(pid);
	return p->cfg.join(p->cfg.hook_arg, pid);
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void poke_watcher(struct shoal_pool *p)
{
	uint64_t one = 1;

	if (write(p->watcher_efd, &one, sizeof(one)) < 0) {
		/* Counter saturated: the exit watcher wakes anyway. */
	}
}

static int free_seat(struct shoal_pool *p)
{
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state == SEAT_FREE)
			return (int)i;
	return -1;
}

/* Start a worker for position @pos. Called with the lock held; drops it
 * around the spawn hook. Returns 0, 1 if no seat is free, or -errno. */
static int start_worker(struct shoal_pool *p, int pos)
{
	int i = free_seat(p);
	struct wseat *w;
	struct pool_seat *seat;
	uint64_t gen, r;
	pid_t pid;

	if (i < 0)
		return 1;
	w = &p->seats[i];
	seat = sup_seat(p, (uint32_t)i);
	gen = w->gen + 1;
	for (uint32_t c = 0; c < p->layout.prefetch; c++) {
		atomic_store_explicit(&sup_cell(p, (uint32_t)i, c)->state, CELL_EMPTY,
				      memory_order_relaxed);
		w->cells[c] = NULL;
	}
	atomic_store_explicit(&seat->worker_key, 0, memory_order_relaxed);
	atomic_store_explicit(&seat->cmd, 0, memory_order_relaxed);
	atomic_store_explicit(&seat->trim_ack, 0, memory_order_relaxed);
	atomic_store_explicit(&seat->ready, 0, memory_order_relaxed);
	atomic_store_explicit(&seat->worker_waiting, 0, memory_order_relaxed);
	/* R0: the seat is clean before its generation says it is in use;
	 * pairs with A0 in shoal_pool_worker_open(). */
	atomic_store_explicit(&seat->gen, gen, memory_order_release);
	w->gen = gen;
	w->state = SEAT_STARTING;
	w->pos = pos;
	w->pid = 0;
	w->pidfd = -1;
	w->exited = false;
	w->assigned = w->collected = 0;
	w->tasks = 0;
	w->priv = w->baseline = 0;
	w->reason = -1;
	w->trim_seq = 0;
	w->trimming = false;
	w->want_trim = false;
	w->soft_exempt = w->hard_exempt = false;
	w->kill_at = 0;
	w->started_ns = shoal__now_ns();
	w->last_check_ns = 0;
	w->task_limit = p->cfg.max_tasks;
	if (p->cfg.max_tasks && p->cfg.max_tasks_jitter) {
		uint64_t span = p->cfg.max_tasks * p->cfg.max_tasks_jitter / 100;

		shoal__random(&r, sizeof(r));
		w->task_limit -= r % (span + 1);
		if (w->task_limit == 0)
			w->task_limit = 1;
	}

	/* Never a fork here: this process has threads (see forkserver.c). */
	pthread_mutex_unlock(&p->mu);
	if (p->cfg.spawn)
		pid = p->cfg.spawn(p->cfg.hook_arg, p->name, (uint32_t)i, gen);
	else
		pid = shoal__forkserver_spawn(&p->fs, (uint32_t)i, gen);
	pthread_mutex_lock(&p->mu);

	if (pid <= 0) {
		w->state = SEAT_FREE;
		p->info.spawn_error = pid < 0 ? pid : -ECHILD;
		return p->info.spawn_error;
	}
	p->info.spawn_error = 0;
	w->pid = pid;
	w->pidfd = pidfd_open(pid);
	if (w->pidfd < 0) {
		int err = errno, st = 0;

		/* ESRCH: gone already and joined by someone else (a hook's
		 * own fork server); the exit watcher will not see it, so collect it
		 * here. Anything else (no fds left): it runs, but nobody could
		 * watch it, so it must not: kill it, collect it, report the
		 * error. */
		if (err != ESRCH)
			kill(pid, SIGKILL);
		pthread_mutex_unlock(&p->mu);
		if (p->cfg.join)
			st = p->cfg.join(p->cfg.hook_arg, pid);
		else
			st = shoal__forkserver_join(&p->fs, pid);
		pthread_mutex_lock(&p->mu);
		if (err != ESRCH) {
			w->state = SEAT_FREE;
			w->pid = 0;
			p->info.spawn_error = -err;
			return -err;
		}
		w->exited = true;
		w->wstatus = st;
	}
	if (p->pos[pos].seat < 0) {
		p->pos[pos].seat = i;
		p->pos[pos].st.pid = pid;
		p->pos[pos].st.tasks = 0;
		p->pos[pos].st.private_now = 0;
	}
	poke_watcher(p);
	return 0;
}

/* ---- the supervisor ------------------------------------------------------------ */

/*
 * Take back the tasks a worker has been handed but not started, newest
 * first, so it stops between tasks however many were prefetched. The
 * worker claims a cell by CAS ASSIGNED -> RUNNING; we take it back by CAS
 * ASSIGNED -> EMPTY: exactly one of the two wins. The worker runs its cells
 * in order, so once one is started all older ones are too; we stop there,
 * and the sequence numbers we give back are handed out again later.
 * reclaim_to() stops at sequence @floor too (shoal_pool_cancel() takes back
 * one cell and those after it).
 */
static void reclaim_to(struct shoal_pool *p, int i, uint64_t floor)
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
	reclaim_to(p, i, 0);
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
	ring_worker(seat);
	p->seats[i].state = SEAT_RETIRED;
}

/* Copy out every DONE cell of seat @i, in order. */
static void collect(struct shoal_pool *p, int i)
{
	struct wseat *w = &p->seats[i];

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

			spill_name(n, sizeof(n), p->name, 'r', t->id, c->attempt);
			rc = spill_get(n, len, &data);
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
				memcpy(data, cell_res(&p->layout, c), len);
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
}

/* Collect every live seat's DONE cells; true if any was. */
static bool collect_all(struct shoal_pool *p)
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
			spill_name(n, sizeof(n), p->name, 'r', t->id, c->attempt);
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
}

/*
 * The recycling policy, for a worker that takes tasks. Limits are decided
 * as soon as they are reached: the worker gets no more tasks (DRAINING) and
 * its replacement starts at once; it retires when it has nothing in flight
 * and the replacement is ready (see the position loop). The soft memory
 * limit first asks the worker, once idle, to trim; only if it is still over
 * afterwards is it recycled.
 */
static void policy(struct shoal_pool *p, int i, uint64_t now, uint64_t *next)
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
		ring_worker(seat);
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

/* Hand out the backlog, each task to the worker with the fewest in flight. */
static void fill(struct shoal_pool *p)
{
	while (p->pend_head) {
		struct wseat *w;
		struct pool_cell *c;
		struct task *t;
		int best = -1;

		for (uint32_t i = 0; i < p->nseats; i++)
			if (can_take(p, i) && (best < 0 || inflight(p, i) < inflight(p, (uint32_t)best)))
				best = (int)i;
		if (best < 0)
			return;
		w = &p->seats[best];
		t = pend_pop(p);
		c = sup_cell(p, (uint32_t)best, w->assigned);
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
		ring_worker(sup_seat(p, (uint32_t)best));
	}
}

/*
 * Hand out the backlog, up to each worker's prefetch. When the backlog is
 * empty and a worker has nothing left, the tasks other workers have not
 * started are taken back and shared out again, so a deep prefetch (fast
 * for tiny tasks) does not leave one worker idle while another still has
 * a queue behind a long task.
 */
static void dispatch(struct shoal_pool *p)
{
	bool idle = false;

	fill(p);
	if (p->pend_head)
		return;
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state == SEAT_READY && inflight(p, i) == 0)
			idle = true;
	if (!idle)
		return;
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state == SEAT_READY && inflight(p, i) >= 2)
			reclaim(p, (int)i);
	fill(p);
}

/* One pass over everything. Lock held. Returns the next deadline. */
static uint64_t supervise_once(struct shoal_pool *p)
{
	uint64_t now = shoal__now_ns(), next = UINT64_MAX;

	for (uint32_t i = 0; i < p->nseats; i++) {
		struct wseat *w = &p->seats[i];
		struct pool_seat *seat = sup_seat(p, i);

		if (w->state == SEAT_FREE)
			continue;
		if (w->exited) {
			settle_exit(p, (int)i);
			continue;
		}
		if (w->state == SEAT_STARTING) {
			/* A4: pairs with R4 in shoal_pool_worker_open(). */
			if (!atomic_load_explicit(&seat->ready, memory_order_acquire))
				continue;
			w->state = SEAT_READY;
			p->early_deaths = 0;
			if (p->pos[w->pos].decided_ns) {
				p->recycle_ns[p->nrecycle_ns++ % 64] = now - p->pos[w->pos].decided_ns;
				p->pos[w->pos].decided_ns = 0;
			}
			measure(p, w, now);
			w->baseline = w->priv;
			/* A worker over a limit before its first task would be
			 * recycled for ever: say so once, do not apply it. */
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
		}
		collect(p, (int)i);
		if (w->state == SEAT_KILLING) {
			if (now >= w->kill_at && w->pidfd >= 0)
				pidfd_signal(w->pidfd, SIGKILL);
			else if (w->kill_at < next)
				next = w->kill_at;
			continue;
		}
		if (w->state == SEAT_RETIRED)
			continue;
		/* The hard limit applies while tasks run. */
		if (p->cfg.hard_private && !w->hard_exempt && w->assigned != w->collected) {
			if (now - w->last_check_ns >= p->cfg.check_ns)
				measure(p, w, now);
			if (w->priv > p->cfg.hard_private && w->pidfd >= 0) {
				pidfd_signal(w->pidfd, SIGTERM);
				w->state = SEAT_KILLING;
				w->reason = SHOAL_POOL_HARD;
				if (!p->pos[w->pos].decided_ns)
					p->pos[w->pos].decided_ns = now;
				w->kill_at = now + p->cfg.grace_ns;
				if (w->kill_at < next)
					next = w->kill_at;
				continue;
			}
			if (now + p->cfg.check_ns < next)
				next = now + p->cfg.check_ns;
		}
		policy(p, (int)i, now, &next);
		if (w->state == SEAT_READY && p->cfg.max_age_ns) {
			uint64_t due = w->started_ns + p->cfg.max_age_ns;

			if (due < next)
				next = due;
		}
	}

	/* Every position has one worker taking tasks, or starting to. One
	 * being recycled has its replacement started at once, and retires
	 * once that has started and it has nothing left in flight. */
	for (int pos = 0; pos < (int)p->cfg.workers && !p->closing && !p->broken; pos++) {
		int ready = -1, starting = -1, rc;

		for (uint32_t i = 0; i < p->nseats; i++) {
			struct wseat *w = &p->seats[i];

			if (w->state == SEAT_FREE || w->pos != pos || w->reason >= 0)
				continue;
			if (w->state == SEAT_STARTING)
				starting = (int)i;
			else
				ready = (int)i;
		}
		if (ready < 0 && starting < 0) {
			/* No free seat (1) resolves itself when a retired
			 * worker's exit wakes us; a failed spawn waits 100 ms. */
			if (now >= p->spawn_retry_ns) {
				rc = start_worker(p, pos);
				if (rc < 0) {
					p->spawn_retry_ns = now + 100000000u;
					/* Counted as a worker that died before
					 * it was ready: five in a row and the
					 * pool is broken, not waiting for ever. */
					if (++p->early_deaths >= 5)
						p->broken = true;
				} else if (rc == 0)
					starting = 0; /* some seat: one is starting */
			}
			now = shoal__now_ns();
		}
		/* Started is enough: waiting for it to be ready could leave
		 * every seat held by an idle worker waiting for a seat. And with
		 * no seat free, idle workers being recycled leave at once: a
		 * replacement can start only once one has. */
		if (ready < 0 && starting < 0 && free_seat(p) >= 0)
			continue;
		for (uint32_t i = 0; i < p->nseats; i++) {
			struct wseat *o = &p->seats[i];

			if (o->pos == pos && o->state == SEAT_DRAINING && o->reason >= 0 &&
			    o->assigned == o->collected && !o->trimming)
				send_retire(p, (int)i);
		}
		if (ready >= 0 && p->pos[pos].seat != ready) {
			p->pos[pos].seat = ready;
			p->pos[pos].st.pid = p->seats[ready].pid;
			p->pos[pos].st.tasks = p->seats[ready].tasks;
			p->pos[pos].st.private_now = p->seats[ready].priv;
		}
	}
	if (p->spawn_retry_ns > now && p->spawn_retry_ns < next)
		next = p->spawn_retry_ns;
	if (p->broken) {
		struct task *t;

		while ((t = pend_pop(p)) != NULL)
			deliver(p, t, -ECHILD, 0, 0, NULL, 0);
	}
	if (p->closing) {
		struct task *t;

		while ((t = pend_pop(p)) != NULL)
			deliver(p, t, -ECANCELED, 0, 0, NULL, 0);
		for (uint32_t i = 0; i < p->nseats; i++) {
			struct wseat *w = &p->seats[i];

			if (w->state == SEAT_READY || w->state == SEAT_DRAINING ||
			    w->state == SEAT_STARTING)
				send_retire(p, (int)i);
		}
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

static bool all_free(struct shoal_pool *p)
{
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state != SEAT_FREE)
			return false;
	return true;
}

static void *supervisor_main(void *arg)
{
	struct shoal_pool *p = arg;
	uint64_t kill_all_at = 0;

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

			if (all_free(p))
				break;
			if (!kill_all_at)
				kill_all_at = now + p->cfg.grace_ns;
			if (now >= kill_all_at) {
				for (uint32_t i = 0; i < p->nseats; i++)
					if (p->seats[i].state != SEAT_FREE && p->seats[i].pidfd >= 0)
						pidfd_signal(p->seats[i].pidfd, SIGKILL);
				kill_all_at = now + p->cfg.grace_ns;
			}
			if (kill_all_at < next)
				next = kill_all_at;
		}
		pthread_mutex_unlock(&p->mu);
		/* Announce the sleep, then look again (pairs with
		 * ring_supervisor()): an event after the look wakes us. */
		atomic_store_explicit(&p->hdr->sup_waiting, 1, memory_order_seq_cst);
		if (atomic_load_explicit(&p->hdr->event, memory_order_seq_cst) == seen)
			shoal__futex_wait(&p->hdr->event, seen, next);
		atomic_store_explicit(&p->hdr->sup_waiting, 0, memory_order_relaxed);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* The exit watcher: sleeps in poll() on every worker's pidfd and on an eventfd
 * that says the set changed; collects exit statuses as they come. */
static void *exit_watcher_main(void *arg)
{
	struct shoal_pool *p = arg;
	struct pollfd *fds = p->watcher_fds;
	int *idx = p->watcher_idx;

	for (;;) {
		nfds_t n = 1;
		bool stop;

		pthread_mutex_lock(&p->mu);
		stop = p->closing && all_free(p);
		for (uint32_t i = 0; i < p->nseats; i++) {
			if (p->seats[i].pidfd >= 0 && !p->seats[i].exited) {
				fds[n].fd = p->seats[i].pidfd;
				fds[n].events = POLLIN;
				idx[n] = (int)i;
				n++;
			}
		}
		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		fds[0].fd = p->watcher_efd;
		fds[0].events = POLLIN;
		if (poll(fds, n, -1) < 0)
			continue;
		if (fds[0].revents & POLLIN) {
			uint64_t v;

			if (read(p->watcher_efd, &v, sizeof(v)) < 0) {
				/* EAGAIN: someone else drained it. */
			}
		}
		for (nfds_t k = 1; k < n; k++) {
			struct wseat *w = &p->seats[idx[k]];
			int st, fd;
			pid_t pid;
			uint64_t gen;

			if (!(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			pthread_mutex_lock(&p->mu);
			fd = w->pidfd;
			pid = w->pid;
			gen = w->gen;
			pthread_mutex_unlock(&p->mu);
			if (fd != fds[k].fd)
				continue;
			st = join_worker(p, fd, pid);
			pthread_mutex_lock(&p->mu);
			if (w->gen == gen && w->pidfd == fd) {
				close(fd);
				w->pidfd = -1;
				w->wstatus = st;
				w->exited = true;
			}
			pthread_mutex_unlock(&p->mu);
			ring_supervisor(p->hdr);
		}
	}
	return NULL;
}

/* ---- the public supervisor side ------------------------------------------------- */

SHOAL_API int shoal_pool_create(const struct shoal_pool_config *cfg, struct shoal_pool **out)
{
	struct shoal_pool *p;
	struct pool_hdr *h;
	uint64_t cell_size, seat_size, rnd;
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
	if (cfg->inline_bytes > (64u << 20))
		return shoal__fail(-EINVAL, "pool: inline_bytes %zu must be at most %u",
				   cfg->inline_bytes, 64u << 20);
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->cfg = *cfg;
	if (!p->cfg.max_attempts)
		p->cfg.max_attempts = 3;
	if (!p->cfg.grace_ns)
		p->cfg.grace_ns = 1000000000u;
	if (!p->cfg.check_ns)
		p->cfg.check_ns = 20000000u;
	if (!p->cfg.inline_bytes)
		p->cfg.inline_bytes = 4096;
	p->cfg.inline_bytes = (p->cfg.inline_bytes + 63) & ~(size_t)63;
	if (!p->cfg.prefetch)
		p->cfg.prefetch = 2;
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
	cell_size = sizeof(struct pool_cell) + 2 * (uint64_t)p->cfg.inline_bytes;
	seat_size = sizeof(struct pool_seat) + p->cfg.prefetch * cell_size;
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
	/* Allocated here, not in the exit watcher: its loop never allocates, so it
	 * is never inside malloc when the supervisor forks. */
	p->watcher_fds = calloc(nseats + 1, sizeof(*p->watcher_fds));
	p->watcher_idx = calloc(nseats + 1, sizeof(*p->watcher_idx));
	if (!p->seats || !p->pos || !p->watcher_fds || !p->watcher_idx) {
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
				   nseats * seat_size, NULL, &p->seg);
	if (rc)
		goto fail;
	h = p->seg->kind_hdr;
	h->nseats = nseats;
	h->prefetch = p->cfg.prefetch;
	h->inline_bytes = p->cfg.inline_bytes;
	h->cell_size = cell_size;
	h->seat_size = seat_size;
	h->sup_key = shoal__self_key();
	p->hdr = h;
	p->layout.nseats = nseats;
	p->layout.prefetch = p->cfg.prefetch;
	p->layout.inline_bytes = p->cfg.inline_bytes;
	p->layout.cell_size = cell_size;
	p->layout.seat_size = seat_size;
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
		rc = shoal__forkserver_start(&p->fs, nseats, pool_child, p);
		if (rc)
			goto fail_unlink;
	}
	/* The threads wait for the lock until both exist: no fork while this
	 * thread is still inside pthread_create (and its allocations). */
	pthread_mutex_lock(&p->mu);
	rc = -pthread_create(&p->watcher_thread, NULL, exit_watcher_main, p);
	if (rc) {
		pthread_mutex_unlock(&p->mu);
		goto fail_unlink;
	}
	rc = -pthread_create(&p->sup_thread, NULL, supervisor_main, p);
	if (rc) {
		p->closing = true;
		pthread_mutex_unlock(&p->mu);
		poke_watcher(p);
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

		spill_name(n, sizeof(n), p->name, 'a', id, 0);
		rc = spill_put(n, data, len);
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
				task_free(p, head);
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
		pend_push_back(p, t);
	}
	pthread_mutex_unlock(&p->mu);
	*first_id = first;
	if (n)
		ring_supervisor(p->hdr);
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
		if (collect_all(p)) {
			ring_supervisor(p->hdr);
			continue;
		}
		/* Announce the sleep, then look again: pairs with the fence in
		 * shoal_pool_worker_done(). */
		atomic_fetch_add_explicit(&p->hdr->res_waiting, 1, memory_order_seq_cst);
		atomic_thread_fence(memory_order_seq_cst);
		if (collect_all(p)) {
			ring_supervisor(p->hdr);
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
			done_free(d);
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
		task_free(p, t);
		rc = 0;
		break;
	}
	/*
	 * Handed to a worker but maybe not started (prefetched): its cell and
	 * the newer ones after it are taken back (reclaim_to(), the CAS that
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
			reclaim_to(p, (int)i, s);
			if (w->assigned == s) {
				/* Pushed to the front last: the backlog's head. */
				task_free(p, pend_pop(p));
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
		ring_supervisor(p->hdr);
	return rc;
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
	ring_supervisor(p->hdr);
	pthread_join(p->sup_thread, NULL);
	poke_watcher(p);
	pthread_join(p->watcher_thread, NULL);
	close(p->watcher_efd);
	shoal__forkserver_stop(&p->fs);
	pthread_mutex_lock(&p->mu);
	/* Threads still inside shoal_pool_wait() leave with -EPIPE first. */
	while (p->waiting > 0)
		pthread_cond_wait(&p->done_cv, &p->mu);
	while ((d = p->done_head) != NULL) {
		p->done_head = d->next;
		done_free(d);
	}
	pthread_mutex_unlock(&p->mu);
	for (uint32_t i = 0; i < p->nseats; i++)
		free(p->seats[i].cells);
	free(p->seats);
	free(p->pos);
	free(p->watcher_fds);
	free(p->watcher_idx);
	shoal_segment_close(p->seg);
	shoal_unlink(p->name);
	pthread_cond_destroy(&p->done_cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
	return 0;
}

/* ---- the worker side ------------------------------------------------------------- */

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
	uint64_t need;
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
	need = sizeof(struct pool_cell) + 2 * w->hdr.inline_bytes;
	if (w->hdr.nseats == 0 || w->hdr.nseats > 2 * POOL_MAX_WORKERS + 2 || w->hdr.prefetch == 0 ||
	    w->hdr.prefetch > POOL_MAX_PREFETCH || w->hdr.inline_bytes > (64u << 20) ||
	    w->hdr.cell_size != need ||
	    w->hdr.seat_size != sizeof(struct pool_seat) + w->hdr.prefetch * need ||
	    w->hdr.seat_size * w->hdr.nseats > w->seg->hdr.data_size) {
		rc = -EBADMSG;
		goto fail;
	}
	if (seat >= w->hdr.nseats) {
		rc = -EINVAL;
		goto fail;
	}
	w->seat = seat_at(w->seg->data, &w->hdr, seat);
	w->idx = seat;
	w->gen = gen;
	/* A0: pairs with R0 in start_worker(). */
	if (atomic_load_explicit(&w->seat->gen, memory_order_acquire) != gen) {
		rc = -ESTALE;
		goto fail;
	}
	strcpy(w->name, board);
	atomic_store_explicit(&w->seat->worker_key, shoal__self_key(), memory_order_relaxed);
	/* R4: pairs with A4 in supervise_once(). */
	atomic_store_explicit(&w->seat->ready, 1, memory_order_release);
	ring_supervisor(h);
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

	if (!w || !t || w->cur)
		return -EINVAL;
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
		uint32_t cmd, expect = CELL_ASSIGNED;
		uint64_t wake;
		int rc;

		/* A1: pairs with R1 in dispatch(); R2: the supervisor's walk
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

				spill_name(n, sizeof(n), w->name, 'a', t->id, 0);
				rc = spill_get(n, len, &w->arg_copy);
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
		/* Sleep at most a second at a time, to notice a dead supervisor. */
		wake = shoal__deadline(1000000000);
		if (deadline < wake)
			wake = deadline;
		atomic_store_explicit(&w->seat->worker_waiting, 1, memory_order_seq_cst);
		expect = atomic_load_explicit(&c->state, memory_order_seq_cst);
		cmd = atomic_load_explicit(&w->seat->cmd, memory_order_seq_cst);
		if (expect != CELL_ASSIGNED && !(cmd & CMD_RETIRE) &&
		    (!(cmd & CMD_TRIM_MASK) || (cmd & CMD_TRIM_MASK) == w->trim_seen)) {
			rc = shoal__futex_wait(&w->seat->bell, bell, wake);
			if (rc == -ETIMEDOUT && !supervisor_alive(w)) {
				atomic_store_explicit(&w->seat->worker_waiting, 0, memory_order_relaxed);
				return -EPIPE;
			}
		}
		atomic_store_explicit(&w->seat->worker_waiting, 0, memory_order_relaxed);
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

		spill_name(n, sizeof(n), w->name, 'r', c->task_id, c->attempt);
		rc = spill_put(n, data, len);
		if (rc) {
			err = rc;
			len = 0;
		} else {
			c->res_spill = 1;
		}
	} else if (len) {
		memcpy(cell_res(&w->hdr, c), data, len);
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
		ring_supervisor(h);
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
	/* R5: pairs with the A5 in policy(). */
	atomic_store_explicit(&w->seat->trim_ack, w->trim_seen, memory_order_release);
	ring_supervisor(w->seg->kind_hdr);
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
