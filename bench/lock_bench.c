/*
 * lock_bench.c - the cost of shoal's lock word (lib/lock.c) beside the
 * robust process-shared pthread mutex it replaced, in the same run.
 *
 *   lock_bench ROUNDS -> {"name": "lock.uncontended", "value": ns,
 *                         "peers": {"pthread_robust": ns}}
 *
 * The value is the median over 21 batches of ROUNDS acquire + release
 * pairs by one thread on a lock in shared memory (MAP_SHARED), in ns per
 * pair: the fast path every ledger operation pays twice per attach.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define BATCHES 21

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	long rounds = argc > 1 ? atol(argv[1]) : 1000000;
	double ours[BATCHES], theirs[BATCHES];
	pthread_mutexattr_t at;
	struct shoal__lock *l;
	pthread_mutex_t *m;
	void *mem;

	mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || rounds < 1)
		return 1;
	l = mem;
	m = (pthread_mutex_t *)((char *)mem + 64);
	shoal__lock_init(l);
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(m, &at);
	for (int b = 0; b < BATCHES; b++) {
		uint64_t t0 = shoal__now_ns();

		for (long i = 0; i < rounds; i++) {
			if (shoal__lock_acquire(l, -1) != 0)
				return 1;
			shoal__lock_release(l);
		}
		ours[b] = (double)(shoal__now_ns() - t0) / (double)rounds;
		t0 = shoal__now_ns();
		for (long i = 0; i < rounds; i++) {
			if (pthread_mutex_lock(m) != 0)
				return 1;
			pthread_mutex_unlock(m);
		}
		theirs[b] = (double)(shoal__now_ns() - t0) / (double)rounds;
	}
	qsort(ours, BATCHES, sizeof(double), cmp);
	qsort(theirs, BATCHES, sizeof(double), cmp);
	printf("{\"name\": \"lock.uncontended\", \"value\": %.2f, \"unit\": \"ns\", "
	       "\"peers\": {\"pthread_robust\": %.2f}}\n",
	       ours[BATCHES / 2], theirs[BATCHES / 2]);
	return 0;
}
