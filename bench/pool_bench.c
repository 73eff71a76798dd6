/*
 * pool_bench.c - pool.recycle_ms for forked C workers: every worker does
 * one task (max_tasks = 1), so each task needs a replacement; the pool
 * records each replacement's time from decision to ready, and we print the
 * median (and the time per task, everything included).
 *
 *   pool_bench [tasks]     default 2000
 */
#include <shoal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	struct shoal_pool_config c;
	struct shoal_pool *p;
	struct shoal_pool_info info;
	struct shoal_pool_result r[64];
	double t0, t1;
	int got = 0, rc;

	memset(&c, 0, sizeof(c));
	c.workers = 2;
	c.max_tasks = 1;
	c.fn = echo;
	rc = shoal_pool_create(&c, &p);
	if (rc) {
		fprintf(stderr, "pool_bench: %s\n", shoal_strerror(rc));
		return 1;
	}
	t0 = now();
	for (int i = 0; i < n; i++) {
		uint64_t id;

		shoal_pool_submit(p, "x", 1, &id);
	}
	while (got < n) {
		rc = shoal_pool_wait(p, 10000000000LL, r, 64);
		if (rc < 0) {
			fprintf(stderr, "pool_bench: wait: %s\n", shoal_strerror(rc));
			return 1;
		}
		for (int i = 0; i < rc; i++)
			shoal_pool_result_free(&r[i]);
		got += rc;
	}
	t1 = now();
	shoal_pool_info(p, &info);
	printf("%.3f %.3f\n", info.recycle_ns_median / 1e6, (t1 - t0) * 1e3 / n);
	shoal_pool_destroy(p);
	return 0;
}
