/*
 * pool_scale.c - pool.scale for forked C workers: the rate of tiny tasks
 * (an 8-byte task that returns itself) at a given number of workers, on
 * however many cores the machine has. The tasks are submitted in batches
 * of 1024 while results are taken, up to twice what the workers' cells
 * hold (at least 4096) ahead of the results, as a caller feeding a pool
 * would. The time runs from the first submit to the last result, after a
 * warm-up run of a tenth of the tasks on the same pool (the workers are
 * forked and have run). Every result must come back once, with its bytes.
 *
 *   pool_scale workers [tasks [rounds [prefetch]]]
 *                      default 200000 tasks, 1 round, the pool's prefetch
 *
 * Prints one line per round: workers, tasks, tasks per second, and the CPU
 * time per task in microseconds, the caller's threads and the workers'
 * together (the caller's CPU clock, each worker's /proc/<pid>/schedstat):
 * that moves far less than the rate with what else the machine runs.
 */
#include <shoal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH 1024

static int echo(void *arg, const void *in, size_t len, void **out, size_t *out_len)
{
	(void)arg;
	*out = malloc(len ? len : 1);
	if (!*out)
		return -12;
	memcpy(*out, in, len);
	*out_len = len;
	return 0;
}

/* Nanoseconds worker @pid has run, or 0. */
static double worker_cpu_ns(pid_t pid)
{
	char path[64];
	double ns = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%lf", &ns) != 1)
		ns = 0;
	fclose(f);
	return ns;
}

/* CPU nanoseconds of this process (every thread) and of @p's workers. */
static double cpu_ns(struct shoal_pool *p, struct shoal_pool_stats *st, int workers)
{
	struct timespec ts;
	double ns;
	int n = shoal_pool_stats(p, st, (size_t)workers);

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	ns = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
	for (int i = 0; i < n && i < workers; i++)
		if (st[i].pid > 0)
			ns += worker_cpu_ns(st[i].pid);
	return ns;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run @n tasks through @p; 0, or 1 with a message. Every result must come
 * back once, with its own bytes. */
static int run(struct shoal_pool *p, long n, long window)
{
	static uint64_t buf[BATCH];
	static size_t lens[BATCH];
	static struct shoal_pool_result r[BATCH];
	static char out[BATCH * sizeof(uint64_t)];
	long sent = 0, got = 0;
	uint64_t first, sum = 0, want = 0;
	int rc;

	for (int i = 0; i < BATCH; i++)
		lens[i] = sizeof(uint64_t);
	while (got < n) {
		/* Ahead of the results by a window that fills every cell
		 * twice over (as a map that submits everything would), in
		 * batches, so submitting overlaps running. */
		while (sent < n && sent - got < window) {
			long k = n - sent < BATCH ? n - sent : BATCH;

			for (long i = 0; i < k; i++) {
				buf[i] = (uint64_t)(sent + i);
				want += (uint64_t)(sent + i);
			}
			rc = shoal_pool_submit_many(p, buf, lens, (size_t)k, &first);
			if (rc) {
				fprintf(stderr, "pool_scale: submit: %s\n", shoal_strerror(rc));
				return 1;
			}
			sent += k;
		}
		rc = shoal_pool_wait_into(p, 30000000000LL, r, BATCH, out, sizeof(out));
		if (rc < 0) {
			fprintf(stderr, "pool_scale: wait: %s\n", shoal_strerror(rc));
			return 1;
		}
		for (int i = 0; i < rc; i++) {
			uint64_t v;

			if (r[i].err || r[i].len != sizeof(v)) {
				fprintf(stderr, "pool_scale: task %llu: err %d len %zu\n",
					(unsigned long long)r[i].id, r[i].err, r[i].len);
				return 1;
			}
			memcpy(&v, r[i].data, sizeof(v));
			sum += v;
		}
		got += rc;
	}
	if (sum != want) {
		fprintf(stderr, "pool_scale: results do not balance\n");
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int workers = argc > 1 ? atoi(argv[1]) : 2;
	long n = argc > 2 ? atol(argv[2]) : 200000;
	int rounds = argc > 3 ? atoi(argv[3]) : 1;
	uint32_t prefetch = argc > 4 ? (uint32_t)atoi(argv[4]) : 0;
	long window;
	struct shoal_pool_config c;
	struct shoal_pool_stats *st;
	struct shoal_pool *p;
	int rc;

	if (workers < 1 || n < 1 || rounds < 1) {
		fprintf(stderr, "usage: pool_scale workers [tasks [rounds [prefetch]]]\n");
		return 2;
	}
	st = calloc((size_t)workers, sizeof(*st));
	if (!st)
		return 1;
	memset(&c, 0, sizeof(c));
	c.workers = (uint32_t)workers;
	c.fn = echo;
	c.prefetch = prefetch;
	window = 2L * workers * (prefetch ? prefetch : SHOAL_POOL_PREFETCH_DEFAULT);
	if (window < 4 * BATCH)
		window = 4 * BATCH;
	rc = shoal_pool_create(&c, &p);
	if (rc) {
		fprintf(stderr, "pool_scale: %s\n", shoal_strerror(rc));
		return 1;
	}
	if (run(p, n / 10 > 0 ? n / 10 : 1, window)) {
		shoal_pool_destroy(p);
		return 1;
	}
	for (int k = 0; k < rounds; k++) {
		double c0 = cpu_ns(p, st, workers), t0 = now(), t1;

		if (run(p, n, window)) {
			shoal_pool_destroy(p);
			return 1;
		}
		t1 = now();
		printf("%d %ld %.0f %.3f\n", workers, n, (double)n / (t1 - t0),
		       (cpu_ns(p, st, workers) - c0) / 1e3 / (double)n);
		fflush(stdout);
	}
	shoal_pool_destroy(p);
	free(st);
	return 0;
}
