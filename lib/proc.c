/*
 * proc.c - who a process is, and whether it still runs.
 *
 * A pid alone names a process only until it is reused. Linux gives every
 * process a start time (clock ticks since boot, field 22 of /proc/PID/stat)
 * that never changes; no two processes alive at once, nor one after the
 * other with the same pid, can have the same (pid, start time) pair, because
 * a pid is reused only after its previous owner is gone and the clock has
 * moved on. /dev/shm does not survive a reboot, so boot-relative is enough.
 *
 * A zombie (state Z, one thread left) has run its last instruction, so it
 * counts as dead: a SIGKILLed worker that its parent has not reaped yet holds
 * nothing. A thread group whose leader exited while other threads run also
 * shows Z, but with more than one thread: alive.
 *
 * Nothing here touches shared memory, so dying inside it leaves nothing.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Atomic uint32_t shoal__fork_gen;
static _Atomic uint64_t self_key;

static void on_fork_child(void)
{
	atomic_store_explicit(&self_key, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&shoal__fork_gen, 1, memory_order_relaxed);
	shoal__pool_hooks_forked();
}

__attribute__((constructor)) static void proc_init(void)
{
	pthread_atfork(NULL, NULL, on_fork_child);
}

struct stat_fields {
	char state;
	long num_threads;
	unsigned long long start_time;
};

/* Parse /proc/PID/stat. The command name (field 2) may hold spaces and
 * parentheses, so fields are counted from the last ')'. */
static int read_stat(pid_t pid, struct stat_fields *out)
{
	char path[32], buf[1024];
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? -ESRCH : -EIO;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 && errno == ESRCH ? -ESRCH : -EIO;
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ' || !p[2])
		return -EIO;
	out->state = p[2];
	p += 3;
	/* After the state (field 3) come fields 4..; we want 20 and 22. */
	for (int field = 4; field <= 22; field++) {
		char *end;
		unsigned long long v;

		while (*p == ' ')
			p++;
		errno = 0;
		v = strtoull(p, &end, 10);
		if (end == p) {
			/* Fields 4..22 are numbers; a negative one parses too. */
			if (*p == '-') {
				v = 0;
				end = p + 1;
				while (*end >= '0' && *end <= '9')
					end++;
			} else {
				return -EIO;
			}
		}
		if (field == 20)
			out->num_threads = (long)v;
		if (field == 22)
			out->start_time = v;
		p = end;
	}
	return 0;
}

static bool stat_dead(const struct stat_fields *f)
{
	return (f->state == 'Z' || f->state == 'X' || f->state == 'x') && f->num_threads <= 1;
}

SHOAL_API int shoal_proc_get(pid_t pid, struct shoal_proc *out)
{
	struct stat_fields f;
	int rc;

	if (pid <= 0 || !out)
		return -EINVAL;
	rc = read_stat(pid, &f);
	if (rc)
		return rc;
	if (stat_dead(&f))
		return -ESRCH;
	out->pid = pid;
	out->start_time = f.start_time;
	return 0;
}

uint64_t shoal__proc_key(const struct shoal_proc *p)
{
	return (p->start_time << SHOAL__PID_BITS) | ((uint64_t)p->pid & ((1u << SHOAL__PID_BITS) - 1));
}

void shoal__proc_unkey(uint64_t key, struct shoal_proc *out)
{
	out->pid = (pid_t)(key & ((1u << SHOAL__PID_BITS) - 1));
	out->start_time = key >> SHOAL__PID_BITS;
}

SHOAL_API int shoal_proc_self(struct shoal_proc *out)
{
	uint64_t key = atomic_load_explicit(&self_key, memory_order_relaxed);

	if (!out)
		return -EINVAL;
	if (!key) {
		struct shoal_proc me;

		if (shoal_proc_get(getpid(), &me) != 0)
			return -EIO;
		key = shoal__proc_key(&me);
		atomic_store_explicit(&self_key, key, memory_order_relaxed);
	}
	shoal__proc_unkey(key, out);
	return 0;
}

uint64_t shoal__self_key(void)
{
	struct shoal_proc me;

	if (shoal_proc_self(&me) != 0)
		return 0;
	return shoal__proc_key(&me);
}

/* Start times compare as stored in a key: its 42 bits. */
static bool same_start(uint64_t a, uint64_t b)
{
	return (a & (UINT64_MAX >> SHOAL__PID_BITS)) == (b & (UINT64_MAX >> SHOAL__PID_BITS));
}

bool shoal__key_dead(uint64_t key)
{
	struct shoal_proc p, now;
	int rc;

	shoal__proc_unkey(key, &p);
	if (key == 0 || p.pid <= 0)
		return false; /* names nobody: nothing to take back */
	rc = shoal_proc_get(p.pid, &now);
	if (rc == -ESRCH)
		return true;
	if (rc != 0)
		return false; /* /proc unreadable (no fds left, say): not known dead */
	return !same_start(now.start_time, p.start_time);
}

SHOAL_API bool shoal_proc_is_alive(const struct shoal_proc *p)
{
	struct shoal_proc now;

	if (!p || p->pid <= 0)
		return false;
	if (shoal_proc_get(p->pid, &now) != 0)
		return false;
	return same_start(now.start_time, p->start_time);
}
