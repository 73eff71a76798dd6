/*
 * pool.h - the task board's layout and the supervisor's books, shared by
 * the pool's files (lib/pool*.c) and private to them.
 *
 * The board (one shoal object of kind SHOAL__KIND_POOL) holds only what is
 * in flight: one seat per worker process (twice the pool size and two, so a
 * replacement can start before the worker it replaces retires), and in each
 * seat a small ring of cells, one task each. Tasks not yet handed out stay
 * in the supervisor's own memory (the books, struct shoal_pool below), so
 * the backlog has no bound but memory.
 *
 *     board:  struct pool_hdr | seat 0 | seat 1 | ... | seat nseats-1
 *     seat:   struct pool_seat | cell 0 | ... | cell prefetch-1
 *     cell:   struct pool_cell | task bytes, then its result over them [inline_bytes]
 *
 * Each cell has one writer at a time, handed over by its state word:
 *
 *     EMPTY --supervisor writes task, R1--> ASSIGNED
 *     ASSIGNED --worker claims (CAS, R2)--> RUNNING
 *     RUNNING --worker writes result, R3--> DONE
 *     DONE --supervisor (or a waiter) copies result--> EMPTY
 *
 * A cell is claimed by (seat, generation, attempt): the seat names the
 * worker, the generation tells its successive workers apart, the attempt
 * counts runs of the task. The worker writes the result, then marks the
 * cell DONE (release), so a DONE cell always holds a whole result.
 *
 * Who defines what:
 *     pool_board.c      the layout's sizes and checks, the bells, spills
 *     pool_spawn.c      starting workers, pidfds, the exit watcher, join
 *     pool_supervise.c  the supervisor thread: books and policy
 *     pool.c            the public supervisor-side API
 *     pool_worker.c     the worker side
 * The acquire/release pairs are numbered across them: A0/R0 a seat's
 * generation, A1/R1 a task in its cell, R2 the claim, A3/R3 a result, A4/R4
 * a worker ready, A5/R5 a trim done; each site names its partner.
 */
#ifndef SHOAL_POOL_H
#define SHOAL_POOL_H

#include "internal.h"
#include "forkserver.h"

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define POOL_MAX_WORKERS ((uint32_t)SHOAL_POOL_WORKERS_MAX)
#define POOL_MAX_PREFETCH ((uint32_t)SHOAL_POOL_PREFETCH_MAX)
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
	shoal__atomic_u32 sup_waiting; /* while the supervisor sleeps on event: its tag */
	shoal__atomic_u32 res_waiting; /* threads asleep in shoal_pool_wait() */
	/* POOL_OBSERVED: the supervisor keeps each seat's figures for
	 * observers (below); 0 on a board an older library made. */
	uint32_t observed;
	/* POOL_LAYOUT; 0 on a board an older library made, whose cells held
	 * the result after the task rather than over it. */
	uint32_t layout;
	/* Nonzero: a worker that finds no task yields its CPU once before it
	 * sleeps (pool_worker.c, "Yield once"). Set at create for a pool
	 * without a spawn hook (the fork server's C workers) that has more
	 * workers than CPUs; 0 on a board an older library made. Any nonzero
	 * value means one yield, no more. */
	uint32_t yield_first;
};
_Static_assert(sizeof(struct pool_hdr) == 64, "pool header layout is ABI");
_Static_assert(offsetof(struct pool_hdr, event) == 40, "pool header layout is ABI");
_Static_assert(offsetof(struct pool_hdr, layout) == 56, "pool header layout is ABI");
_Static_assert(offsetof(struct pool_hdr, yield_first) == 60, "pool header layout is ABI");
/*
 * 1: a cell carries its task's bytes, then its result written over them
 * (the worker is done with the task when it writes the result; the
 * supervisor keeps its own copy to run it again), so a tiny task and its
 * result share one page: with 4 KiB cells the two on separate pages made
 * every task two TLB misses for a worker that 127 others had just
 * displaced, and the board twice its size.
 */
#define POOL_LAYOUT 1u

struct pool_seat {
	shoal__atomic_u64 gen;            /* incarnation; written before spawn */
	shoal__atomic_u64 worker_key;     /* the worker's identity, once ready */
	shoal__atomic_u32 bell;           /* futex: bumped by the supervisor */
	shoal__atomic_u32 cmd;            /* CMD_RETIRE | trim sequence */
	shoal__atomic_u32 trim_ack;       /* trim sequence the worker finished */
	shoal__atomic_u32 worker_waiting; /* while the worker sleeps on bell: its tag */
	shoal__atomic_u32 ready;          /* 1 once the worker has opened */
	/* For observers only (shoal_pool_observe(), pool_observe.c), written
	 * by the supervisor from its books, never read back by the pool:
	 * any bytes here are harmless. Bytes that were reserved (zero). */
	shoal__atomic_u32 obs_tasks;      /* tasks the seat's worker finished */
	shoal__atomic_u32 obs_pos;        /* its position + 1; 0: seat free */
	shoal__atomic_u32 obs_recycles[SHOAL_POOL_NREASONS]; /* the position's */
};
_Static_assert(sizeof(struct pool_seat) == 64, "pool seat layout is ABI");
_Static_assert(offsetof(struct pool_seat, bell) == 16, "pool seat layout is ABI");
_Static_assert(offsetof(struct pool_seat, obs_tasks) == 36, "pool seat layout is ABI");
_Static_assert(SHOAL_POOL_NREASONS == 5, "the seat's observed figures fill its reserved words");
#define POOL_OBSERVED 1u

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
	/* then inline_bytes: the task, then its result over it */
};
_Static_assert(sizeof(struct pool_cell) == 64, "pool cell layout is ABI");
_Static_assert(offsetof(struct pool_cell, res_len) == 32, "pool cell layout is ABI");
/* The bindings read results as rows of words (bindings/python/shoal/_pool_abi.py,
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
static inline struct pool_seat *seat_at(void *data, const struct pool_hdr *l, uint32_t i)
{
	return (struct pool_seat *)((char *)data + (uint64_t)i * l->seat_size);
}

static inline struct pool_cell *cell_in(struct pool_seat *seat, const struct pool_hdr *l,
					uint64_t seq)
{
	return (struct pool_cell *)((char *)seat + sizeof(struct pool_seat) +
				    (seq % l->prefetch) * l->cell_size);
}

static inline char *cell_args(struct pool_cell *c)
{
	return (char *)(c + 1);
}

/* Where the result goes: over the task, which is no longer needed. */
static inline char *cell_res(struct pool_cell *c)
{
	return (char *)(c + 1);
}

/*
 * The board (pool_board.c).
 */

/* Wake the supervisor, or the worker of a seat: a futex call only when the
 * other side announced that it sleeps. Wait-free otherwise. */
void pool_ring_supervisor(struct pool_hdr *h);
void pool_ring_worker(struct pool_seat *seat);

/* A sleep's announcement in sup_waiting or worker_waiting: never 0, and
 * another for each count slept on (see ring() in pool_board.c). */
static inline uint32_t pool_sleep_tag(uint32_t seen)
{
	return seen + 1 ? seen + 1 : 1;
}

/* After the sleep: withdraw our own announcement, unless a ringer took it
 * (or a later sleep's stands). */
static inline void pool_sleep_over(shoal__atomic_u32 *waiting, uint32_t tag)
{
	atomic_compare_exchange_strong_explicit(waiting, &tag, 0, memory_order_relaxed,
						memory_order_relaxed);
}
/* The layout of a board of @nseats seats of @prefetch cells that carry
 * @inline_bytes (a task, then its result over it): fills @l's sizes; the
 * data size is
 * l->nseats * l->seat_size. */
void pool_board_layout(struct pool_hdr *l, uint32_t nseats, uint32_t prefetch,
		       uint64_t inline_bytes);
/* Whether a board's layout @l (a private copy) holds, in @data_size bytes
 * of data: 0 or -EBADMSG. */
int pool_board_check(const struct pool_hdr *l, uint64_t data_size);
/* A large task ('a', attempt 0) or result ('r') of board @board travels in
 * a segment of its own, named after the board, the task and the attempt
 * (pool_objects.c, which also parses these names when it reaps). */
void pool_spill_name(char *buf, size_t cap, const char *board, char kind, uint64_t id,
		     uint32_t attempt);
int pool_spill_put(const char *name, const void *data, size_t len);
int pool_spill_get(const char *name, size_t len, void **out);

/*
 * The supervisor's books (process-local; lock p->mu held throughout unless
 * said otherwise).
 */

/*
 * A task, from submit to the caller that takes its result: in the backlog,
 * in a worker's cell, then in the done list with @r filled. One allocation
 * throughout, made by the submitting thread and freed by the one that
 * takes the result: a result that fits goes into @data, over the task's
 * own bytes (no longer needed once it is done). So delivering allocates
 * nothing and cannot fail; and the supervisor no longer spends its time
 * in malloc for memory other threads free (docs/pool.md, "Forking from a threaded process").
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
	bool ring_due;                /* in p->ring: rung once this pass ends */
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
	/* The seats handed tasks this pass, each once: rung when the pass
	 * ends and the lock is released (pool_supervisor_main()). The
	 * supervisor thread's own: only it fills cells. [nseats] */
	uint32_t *ring;
	uint32_t nring;
	int *staff; /* the supervisor's: each position's ready and starting seat, [2 * workers] */
};

static inline struct pool_seat *sup_seat(struct shoal_pool *p, uint32_t i)
{
	return seat_at(p->seg->data, &p->layout, i);
}

static inline struct pool_cell *sup_cell(struct shoal_pool *p, uint32_t i, uint64_t seq)
{
	return cell_in(sup_seat(p, i), &p->layout, seq);
}

/*
 * What observers read (pool_observe.c).
 */

/* Write seat @i's observed figures from the books (lock held): its tasks,
 * position and the position's replacements; position 0 once it is free. */
void pool_seat_publish(struct shoal_pool *p, uint32_t i);
/* Only the finished-task count: one relaxed store, on every task. */
static inline void pool_seat_publish_tasks(struct shoal_pool *p, uint32_t i, uint64_t tasks)
{
	atomic_store_explicit(&sup_seat(p, i)->obs_tasks,
			      tasks > UINT32_MAX ? UINT32_MAX : (uint32_t)tasks,
			      memory_order_relaxed);
}

/*
 * Starting workers and watching them exit (pool_spawn.c).
 */

/* Fork the fork server that starts a C pool's workers (no spawn hook),
 * before the pool's threads exist: 0 or the errors of
 * shoal__forkserver_start(). */
int pool_start_forkserver(struct shoal_pool *p);
/* Start a worker for position @pos in a free seat (lock held; dropped
 * around the spawn): 0, 1 if no seat is free, or -errno. */
int pool_start_worker(struct shoal_pool *p, int pos);
/* The first free seat, or -1. */
int pool_free_seat(struct shoal_pool *p);
int pool_pidfd_signal(int pidfd, int sig);
/* Tell the exit watcher its set of pidfds changed (no lock needed). */
void pool_poke_watcher(struct shoal_pool *p);
/* The exit watcher thread (lock not held on entry). */
void *pool_exit_watcher_main(void *arg);

/*
 * The books and the policy (pool_supervise.c).
 */

/* The supervisor thread (lock not held on entry). */
void *pool_supervisor_main(void *arg);
/* Free a task never delivered (and its spilled bytes); NULL is fine. */
void pool_task_free(struct shoal_pool *p, struct task *t);
/* Free a delivered task and its result's bytes, wherever they are. */
void pool_done_free(struct task *t);
void pool_pend_push_back(struct shoal_pool *p, struct task *t);
/* The backlog's head, or NULL. */
struct task *pool_pend_pop(struct shoal_pool *p);
/* Take back seat @i's tasks not yet started, newest first, down to cell
 * sequence @floor: they go back to the head of the backlog. */
void pool_reclaim_to(struct shoal_pool *p, int i, uint64_t floor);
/* Copy out every live seat's DONE cells: true if any was. */
bool pool_collect_all(struct shoal_pool *p);
/* True when no seat holds a worker. */
bool pool_all_free(struct shoal_pool *p);

#endif
