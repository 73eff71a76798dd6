/*
 * pool_spawn.c - starting workers, and the exit watcher that learns of
 * their deaths at once and joins them.
 *
 *     supervisor: pool_start_worker() -> fork server (SPAWN) or spawn hook
 *                 -> pid -> pidfd_open -> the exit watcher's poll set
 *     exit watcher: poll(pidfds + eventfd) -> a pidfd readable: the worker
 *                 exited -> join (fork server JOIN, or the join hook)
 *                 -> wstatus in the books -> ring the supervisor
 *
 * Workers come from a single-threaded fork server (lib/forkserver.c; the
 * Python binding brings its own through the spawn hook), never from this
 * process's threads, which may hold locks a child would inherit held. A
 * pidfd names each worker from its spawn until it is joined: the zombie
 * pins the pid, so a signal or poll never reaches a process that reused
 * it.
 *
 * The exit watcher is a second thread beside the supervisor; it sleeps in
 * poll() on one pidfd per worker and on an eventfd that says the set
 * changed. A worker's death wakes it at once; it collects the exit status
 * and wakes the supervisor, which settles the dead worker's cells
 * (pool_supervise.c). Its loop never allocates (its poll set is made at
 * shoal_pool_create()), so it is never inside malloc when a spawn hook
 * forks.
 *
 * Deaths: if the supervisor's process dies, the server kills the workers
 * (EOF on its socket); any worker also sees it between tasks or when its
 * wait times out, and leaves (pool_worker.c).
 *
 * The hook gate (shoal_pool_hooks_hold()): a host's spawn and join hooks
 * run on these threads, and may enter an interpreter. Python's ctypes
 * makes a thread state for each call from a thread the interpreter does
 * not know, under the interpreter's own lock, before it takes the GIL; a
 * fork() in another thread at that instant leaves the child that lock
 * held, and CPython 3.11's child takes it before making it anew
 * (PyOS_AfterFork_Child -> _PyThreadState_DeleteExcept): the child waits
 * forever. So every hook call read-holds one process-wide gate, and a host
 * that forks write-holds it around fork(), waiting meanwhile without what
 * a hook needs (the GIL). Writers go first: hooks called back to back
 * never keep a fork waiting.
 */
#include "pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

int pool_start_forkserver(struct shoal_pool *p)
{
	return shoal__forkserver_start(&p->fs, p->nseats, pool_child, p);
}

static const pthread_rwlock_t hook_gate_init = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static pthread_rwlock_t hook_gate = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static __thread bool holding; /* this thread write-holds the gate */
static __thread bool in_hook; /* this thread runs a hook */
static __thread bool reading; /* ... and read-holds the gate for it */

int shoal_pool_hooks_hold(int64_t timeout_ns)
{
	struct timespec until;
	uint64_t t;
	int rc;

	if (in_hook || holding)
		return -EDEADLK;
	if (timeout_ns < 0) {
		rc = pthread_rwlock_wrlock(&hook_gate);
	} else {
		t = shoal__now_ns() + (uint64_t)timeout_ns; /* < 2^64: both < 2^63 */
		until.tv_sec = (time_t)(t / 1000000000u);
		until.tv_nsec = (long)(t % 1000000000u);
		rc = pthread_rwlock_clockwrlock(&hook_gate, CLOCK_MONOTONIC, &until);
	}
	if (rc)
		return -rc; /* ETIMEDOUT */
	holding = true;
	return 0;
}

int shoal_pool_hooks_release(void)
{
	if (!holding)
		return -EPERM;
	holding = false;
	pthread_rwlock_unlock(&hook_gate);
	return 0;
}

/* In the child of every fork() (lib/proc.c): one thread, whatever the
 * parent's threads held or waited for, and the lock names its writer by
 * the parent's thread id. A child forked from inside a hook read-holds it
 * again, so the hook's unlock on return matches. */
void shoal__pool_hooks_forked(void)
{
	memcpy(&hook_gate, &hook_gate_init, sizeof(hook_gate));
	holding = false;
	if (reading)
		reading = pthread_rwlock_rdlock(&hook_gate) == 0;
}

static void hook_enter(void)
{
	/* Fails only past 2^30 readers; the hook then runs ungated. */
	reading = pthread_rwlock_rdlock(&hook_gate) == 0;
	in_hook = true;
}

static void hook_leave(void)
{
	in_hook = false;
	if (reading) {
		reading = false;
		pthread_rwlock_unlock(&hook_gate);
	}
}

static pid_t hook_spawn(struct shoal_pool *p, uint32_t seat, uint64_t gen)
{
	pid_t pid;

	hook_enter();
	pid = p->cfg.spawn(p->cfg.hook_arg, p->name, seat, gen);
	hook_leave();
	return pid;
}

static int hook_join(struct shoal_pool *p, pid_t pid)
{
	int st;

	hook_enter();
	st = p->cfg.join(p->cfg.hook_arg, pid);
	hook_leave();
	return st;
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
	return hook_join(p, pid);
}

static int pidfd_open(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

int pool_pidfd_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

void pool_poke_watcher(struct shoal_pool *p)
{
	uint64_t one = 1;

	if (write(p->watcher_efd, &one, sizeof(one)) < 0) {
		/* Counter saturated: the exit watcher wakes anyway. */
	}
}

int pool_free_seat(struct shoal_pool *p)
{
	for (uint32_t i = 0; i < p->nseats; i++)
		if (p->seats[i].state == SEAT_FREE)
			return (int)i;
	return -1;
}

/* Start a worker for position @pos in a free seat. Called with the lock
 * held; drops it around the spawn hook. Returns 0, 1 if no seat is free,
 * or -errno. */
int pool_start_worker(struct shoal_pool *p, int pos)
{
	int i = pool_free_seat(p);
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
	pool_seat_publish(p, (uint32_t)i);
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
		pid = hook_spawn(p, (uint32_t)i, gen);
	else
		pid = shoal__forkserver_spawn(&p->fs, (uint32_t)i, gen);
	pthread_mutex_lock(&p->mu);

	if (pid <= 0) {
		w->state = SEAT_FREE;
		pool_seat_publish(p, (uint32_t)i);
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
			st = hook_join(p, pid);
		else
			st = shoal__forkserver_join(&p->fs, pid);
		pthread_mutex_lock(&p->mu);
		if (err != ESRCH) {
			w->state = SEAT_FREE;
			w->pid = 0;
			pool_seat_publish(p, (uint32_t)i);
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
	pool_poke_watcher(p);
	return 0;
}

/* The exit watcher: sleeps in poll() on every worker's pidfd and on an eventfd
 * that says the set changed; collects exit statuses as they come. */
void *pool_exit_watcher_main(void *arg)
{
	struct shoal_pool *p = arg;
	struct pollfd *fds = p->watcher_fds;
	int *idx = p->watcher_idx;

	for (;;) {
		nfds_t n = 1;
		bool stop;

		pthread_mutex_lock(&p->mu);
		stop = p->closing && pool_all_free(p);
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
			pool_ring_supervisor(p->hdr);
		}
	}
	return NULL;
}
