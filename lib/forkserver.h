/*
 * forkserver.h - the pool's fork server (lib/forkserver.c), private to
 * libshoal.
 */
#ifndef SHOAL_FORKSERVER_H
#define SHOAL_FORKSERVER_H

#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

/* What a worker runs in the child the server forked; its return value
 * nonzero makes the exit status 1. */
typedef int (*shoal__fs_child_fn)(void *arg, uint32_t seat, uint64_t gen);

struct shoal__forkserver {
	pid_t pid;            /* the server, a child of the pool process */
	int sock;             /* the pool's end of the socketpair */
	pthread_mutex_t mu;   /* one request and its reply at a time */
};

/*
 * Fork the server from the calling thread; call before the caller starts
 * threads of its own. @max_workers bounds the workers alive (not joined)
 * at once; @child(@arg, seat, gen) runs in each, in the memory the server was
 * forked with. Return: 0, -ENOMEM, or the -errno of socketpair()/fork().
 */
int shoal__forkserver_start(struct shoal__forkserver *fs, uint32_t max_workers,
			    shoal__fs_child_fn child, void *arg);
/* Fork a worker: its pid (a child of the server, not joined until
 * shoal__forkserver_join()), or -EAGAIN (@max_workers alive), -EPIPE (the
 * server is gone), or fork()'s -errno. Blocking; thread-safe. */
pid_t shoal__forkserver_spawn(struct shoal__forkserver *fs, uint32_t seat, uint64_t gen);
/* Join worker @pid: its wait status, or -ECHILD (not the server's), -EPIPE.
 * Waits for it to exit: call once its pidfd says it has. */
int shoal__forkserver_join(struct shoal__forkserver *fs, pid_t pid);
/* End the server (it kills and joins any worker left) and wait for it. */
void shoal__forkserver_stop(struct shoal__forkserver *fs);

#endif
