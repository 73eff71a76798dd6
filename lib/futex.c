/*
 * futex.c - sleeping and waking on 32-bit words in shared memory.
 *
 * Shared (not FUTEX_PRIVATE_FLAG) futexes, keyed by the physical page, so a
 * word in a segment mapped at different addresses in different processes is
 * one futex. Deadlines are absolute CLOCK_MONOTONIC (FUTEX_WAIT_BITSET), so a
 * wait restarted after a signal or a spurious wake does not drift.
 *
 * A process killed while asleep leaves nothing behind: the kernel forgets
 * its waiter. The protocols built on this (queue.c) keep their own waiter
 * counts, and treat a wake sent to a dead sleeper as harmless.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

uint64_t shoal__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t shoal__realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t shoal__deadline(int64_t timeout_ns)
{
	uint64_t now;

	if (timeout_ns < 0)
		return UINT64_MAX;
	now = shoal__now_ns();
	return (uint64_t)timeout_ns > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + (uint64_t)timeout_ns;
}

int shoal__futex_wait(shoal__atomic_u32 *addr, uint32_t val, uint64_t deadline_ns)
{
	struct timespec ts, *tsp = NULL;
	long rc;

	if (deadline_ns != UINT64_MAX) {
		if (shoal__now_ns() >= deadline_ns)
			return -ETIMEDOUT;
		ts.tv_sec = (time_t)(deadline_ns / 1000000000u);
		ts.tv_nsec = (long)(deadline_ns % 1000000000u);
		tsp = &ts;
	}
	rc = syscall(SYS_futex, addr, FUTEX_WAIT_BITSET, val, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
	if (rc == 0)
		return 0;
	switch (errno) {
	case EAGAIN:
	case ETIMEDOUT:
	case EINTR:
		return -errno;
	default:
		return -EINTR; /* unexpected: report as an interrupted wait */
	}
}

int shoal__futex_wake(shoal__atomic_u32 *addr, int n)
{
	long rc = syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);

	return rc < 0 ? 0 : (int)rc;
}

void shoal__random(void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, GRND_NONBLOCK);

		if (n <= 0)
			break;
		p += n;
		len -= (size_t)n;
	}
	if (len > 0) {
		/* No entropy yet (early boot): time, pid and address still make
		 * collisions with a live object unlikely, and create/rename
		 * catch the rest. */
		uint64_t x = shoal__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)buf;

		while (len > 0) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			*p++ = (unsigned char)x;
			len--;
		}
	}
}
