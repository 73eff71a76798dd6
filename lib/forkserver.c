/*
 * forkserver.c - the single-threaded process that forks every worker of a C
 * pool, and the sweep of what a killed worker left half-made in /dev/shm.
 *
 * A worker forked from a process with other threads inherits what those
 * threads held at that instant: a lock (malloc's, the sanitizer
 * allocator's, stdio's) that nobody in the child will ever release, and
 * every fd they had just made, close-on-exec or not (a pipe a thread was
 * handing to subprocess keeps that subprocess's reader waiting for EOF).
 * So the pool forks once, at shoal_pool_create(), before it starts any
 * thread of its own: that child, the fork server, closes every fd but its
 * end of a socketpair and 0-2, and from then on forks each worker on
 * request. It is multiprocessing's "forkserver" idea, without the exec a C
 * function pointer would not survive.
 *
 * Protocol (SOCK_SEQPACKET, one request and one reply at a time, under
 * the client's lock): SPAWN {seat, gen} -> pid or -errno; JOIN {pid} ->
 * the wait status or -errno. The server never waits for a worker before
 * the pool asks: the zombie pins the pid, so the pool's pidfd_open() after
 * a SPAWN and its poll on that pidfd name the worker and no process that
 * reused its pid. The pool's exit watcher asks JOIN only once the pidfd
 * says the worker has exited, so a JOIN never waits long.
 *
 * EXIT ends the server (shoal_pool_destroy() sends it).
 *
 * Deaths: a worker has PR_SET_PDEATHSIG(SIGKILL) towards the server (one
 * thread, so the signal follows the process). The server learns of the
 * pool process's death from EOF on its socket, or, when a child the pool
 * process forked holds a copy of that socket, from its parent changing
 * (looked at once a second); PR_SET_PDEATHSIG would fire when the creating
 * *thread* ends, not the process. It then SIGKILLs and joins every worker
 * it still has, and exits. A server that dies makes
 * every later SPAWN fail (-EPIPE), which the pool reports as a spawn error.
 */
#include "internal.h"
#include "forkserver.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

enum { FS_SPAWN = 1, FS_JOIN = 2, FS_EXIT = 3 };

struct fs_req {
	uint32_t op;
	uint32_t seat;
	uint64_t gen;
	int32_t pid;
	uint32_t reserved;
};
_Static_assert(sizeof(struct fs_req) == 24, "fork server request layout");

/* fd 3 in the server, whatever it was in the pool process. */
#define FS_FD 3

static void close_from(int lowfd)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0) == 0)
		return;
#endif
	for (int fd = lowfd; fd < 65536; fd++)
		close(fd);
}

/* Signals a worker starts with: handlers the pool process installed for
 * itself (a SIGTERM handler would defeat the hard limit) back to the
 * default; an ignored signal stays ignored, as across exec(), except the
 * two the pool's own work relies on. */
static void reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;

	for (int sig = 1; sig < NSIG; sig++) {
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		if (sigaction(sig, NULL, &sa) != 0)
			continue;
		if (sa.sa_handler != SIG_IGN || sig == SIGTERM || sig == SIGCHLD) {
			memset(&sa, 0, sizeof(sa));
			sa.sa_handler = SIG_DFL;
			sigaction(sig, &sa, NULL);
		}
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static bool send_val(int fd, int32_t v)
{
	return send(fd, &v, sizeof(v), MSG_NOSIGNAL) == (ssize_t)sizeof(v);
}

/* The server's loop; never returns. @kids: room for @cap pids, allocated
 * before the fork so the server itself never allocates. */
static __attribute__((noreturn)) void serve(pid_t *kids, uint32_t cap, shoal__fs_child_fn child,
					    void *arg)
{
	pid_t self = getpid(), parent = getppid();
	uint32_t n = 0;

	/* SIGINT reaches the whole foreground group; the server leaves when
	 * its pool process does (EOF), never before it. */
	signal(SIGINT, SIG_IGN);
	for (;;) {
		struct pollfd pfd = { .fd = FS_FD, .events = POLLIN };
		struct fs_req rq;
		ssize_t got;
		int32_t v = -EINVAL;
		int st;

		/* A child the pool process forked holds a copy of its end of
		 * the socket, so EOF may never come: once a second, look
		 * whether the pool process is still our parent. */
		if (poll(&pfd, 1, 1000) == 0) {
			if (getppid() != parent)
				break;
			continue;
		}
		got = recv(FS_FD, &rq, sizeof(rq), MSG_DONTWAIT);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got <= 0 || (got == (ssize_t)sizeof(rq) && rq.op == FS_EXIT))
			break;
		if (got == (ssize_t)sizeof(rq) && rq.op == FS_SPAWN) {
			pid_t pid;

			if (n == cap) {
				send_val(FS_FD, -EAGAIN);
				continue;
			}
			pid = fork();
			if (pid == 0) {
				prctl(PR_SET_PDEATHSIG, SIGKILL);
				if (getppid() != self)
					_exit(1);
				close(FS_FD);
				reset_signals();
				_exit(child(arg, rq.seat, rq.gen) ? 1 : 0);
			}
			v = pid < 0 ? -errno : pid;
			if (pid > 0)
				kids[n++] = pid;
		} else if (got == (ssize_t)sizeof(rq) && rq.op == FS_JOIN) {
			uint32_t k;

			for (k = 0; k < n && kids[k] != rq.pid; k++)
				;
			v = -ECHILD;
			if (k < n) {
				siginfo_t si;

				/* Killed: it may have died inside a create; sweep
				 * while the zombie still pins its pid. */
				memset(&si, 0, sizeof(si));
				if (waitid(P_PID, (id_t)rq.pid, &si, WEXITED | WNOWAIT) == 0 &&
				    si.si_code != CLD_EXITED)
					shoal__unlink_tmp_of(rq.pid);
				while ((got = waitpid(rq.pid, &st, 0)) < 0 && errno == EINTR)
					;
				v = got == rq.pid ? st : -errno;
				kids[k] = kids[--n];
			}
		}
		if (!send_val(FS_FD, v))
			break;
	}
	/* The pool process is gone (or destroyed its pool): no worker may
	 * outlive it. */
	for (uint32_t k = 0; k < n; k++)
		kill(kids[k], SIGKILL);
	for (uint32_t k = 0; k < n; k++) {
		int st;

		while (waitpid(kids[k], &st, 0) < 0 && errno == EINTR)
			;
		shoal__unlink_tmp_of(kids[k]);
	}
	_exit(0);
}

int shoal__forkserver_start(struct shoal__forkserver *fs, uint32_t max_workers,
			    shoal__fs_child_fn child, void *arg)
{
	pid_t *kids;
	int sv[2];
	pid_t pid;

	fs->pid = -1;
	fs->sock = -1;
	kids = calloc(max_workers, sizeof(*kids));
	if (!kids)
		return -ENOMEM;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
		free(kids);
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int err = errno;

		close(sv[0]);
		close(sv[1]);
		free(kids);
		return -err;
	}
	if (pid == 0) {
		/* Only this thread came along; keep nothing of the rest. */
		if (sv[1] != FS_FD && dup3(sv[1], FS_FD, O_CLOEXEC) < 0)
			_exit(127);
		close_from(FS_FD + 1);
		if (sv[1] < FS_FD)
			close(sv[1]);
		if (sv[0] < FS_FD)
			close(sv[0]);
		reset_signals();
		serve(kids, max_workers, child, arg);
	}
	free(kids);
	close(sv[1]);
	fs->pid = pid;
	fs->sock = sv[0];
	pthread_mutex_init(&fs->mu, NULL);
	return 0;
}

/* One request, one reply. */
static int32_t call(struct shoal__forkserver *fs, const struct fs_req *rq)
{
	int32_t v;
	ssize_t n;

	pthread_mutex_lock(&fs->mu);
	if (send(fs->sock, rq, sizeof(*rq), MSG_NOSIGNAL) != (ssize_t)sizeof(*rq)) {
		v = errno == EPIPE || errno == ECONNRESET ? -EPIPE : -errno;
		pthread_mutex_unlock(&fs->mu);
		return v;
	}
	while ((n = recv(fs->sock, &v, sizeof(v), 0)) < 0 && errno == EINTR)
		;
	if (n != (ssize_t)sizeof(v))
		v = n < 0 ? -errno : -EPIPE;
	pthread_mutex_unlock(&fs->mu);
	return v;
}

pid_t shoal__forkserver_spawn(struct shoal__forkserver *fs, uint32_t seat, uint64_t gen)
{
	struct fs_req rq = { .op = FS_SPAWN, .seat = seat, .gen = gen };

	return call(fs, &rq);
}

int shoal__forkserver_join(struct shoal__forkserver *fs, pid_t pid)
{
	struct fs_req rq = { .op = FS_JOIN, .pid = pid };

	return call(fs, &rq);
}

void shoal__forkserver_stop(struct shoal__forkserver *fs)
{
	int st;

	struct fs_req rq = { .op = FS_EXIT };

	if (fs->pid <= 0)
		return;
	/* EXIT, not only EOF: a child the caller forked may hold a copy of
	 * the socket, and EOF would then wait for that child to end. */
	if (send(fs->sock, &rq, sizeof(rq), MSG_NOSIGNAL) < 0) {
		/* The server is gone already: nothing to tell it. */
	}
	close(fs->sock);
	/* ECHILD: a SIGCHLD handler of the caller's waited for it first. */
	while (waitpid(fs->pid, &st, 0) < 0 && errno == EINTR)
		;
	pthread_mutex_destroy(&fs->mu);
	fs->pid = -1;
	fs->sock = -1;
}
