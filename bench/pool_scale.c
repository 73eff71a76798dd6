/*
 * pool_scale.c - pool.scale for forked C workers: the rate of tiny tasks
 * (an 8-byte task that returns itself) at several counts of workers, on
 * however many cores the machine has. One pool per count lives for the
 * whole run, each warmed by a run of a tenth of the tasks (its workers are
 * forked and have run); then the counts take turns, round after round (in
 * ascending order, then descending), so that a swing of the machine's speed
 * falls on every count alike rather than on whichever ran at that minute.
 * The idle pools sleep (a worker wakes once a second to look at its
 * supervisor). The tasks are submitted in batches of 1024 while results are
 * taken, up to twice what the workers' cells hold (at least 4096) ahead of
 * the results, as a caller feeding a pool would. The time runs from the
 * first submit to the last result. Every result must come back once, with
 * its bytes.
 *
 *   pool_scale [-p prefetch] [-i inline_bytes] tasks rounds workers...
 *
 * Prints one line per count and round: round, workers, tasks, tasks per
 * second, the CPU time per task in microseconds (the caller's threads and
 * the workers together: the caller's CPU clock, each worker's
 * /proc/<pid>/schedstat; that moves far less than the rate with what else
 * the machine runs), then per task the workers' voluntary and involuntary
 * context switches and the caller's threads' (supervisor, submitting and
 * waiting thread), from /proc/.../status, and the CPU time per task of
 * the caller's threads and of the workers apart.
 */
#include <shoal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <dirent.h>
#include <unistd.h>
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

/* Add the voluntary and involuntary context switches in status file
 * @path to @sw[0], @sw[1]. */
static void add_switches(const char *path, double sw[2])
{
	char line[128];
	double v;
	FILE *f = fopen(path, "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "voluntary_ctxt_switches: %lf", &v) == 1)
			sw[0] += v;
		else if (sscanf(line, "nonvoluntary_ctxt_switches: %lf", &v) == 1)
			sw[1] += v;
	}
	fclose(f);
}

/* Context switches of @p's workers (@sw[0..1]) and of this process's
 * threads (@sw[2..3]). */
static void switches(struct shoal_pool *p, struct shoal_pool_stats *st, int workers, double sw[4])
{
	char path[300];
	int n = shoal_pool_stats(p, st, (size_t)workers);
	DIR *d;
	struct dirent *e;

	memset(sw, 0, 4 * sizeof(*sw));
	for (int i = 0; i < n && i < workers; i++) {
		if (st[i].pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", (int)st[i].pid);
		add_switches(path, sw);
	}
	d = opendir("/proc/self/task");
	if (!d)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
		add_switches(path, sw + 2);
	}
	closedir(d);
}

/* CPU nanoseconds of this process (every thread: @cpu[0]) and of @p's
 * workers (@cpu[1]). */
static void cpu_ns(struct shoal_pool *p, struct shoal_pool_stats *st, int workers, double cpu[2])
{
	struct timespec ts;
	int n = shoal_pool_stats(p, st, (size_t)workers);

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	cpu[0] = (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
	cpu[1] = 0;
	for (int i = 0; i < n && i < workers; i++)
		if (st[i].pid > 0)
			cpu[1] += worker_cpu_ns(st[i].pid);
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

struct scale {
	int workers;
	long window;
	struct shoal_pool *p;
	struct shoal_pool_stats *st;
};

static int usage(void)
{
	fprintf(stderr, "usage: pool_scale [-p prefetch] [-i inline_bytes] tasks rounds workers...\n");
	return 2;
}

int main(int argc, char **argv)
{
	uint32_t prefetch = 0, inline_bytes = 0;
	struct scale *s;
	long n;
	int rounds, ns, opt, rc = 0;

	while ((opt = getopt(argc, argv, "p:i:")) != -1) {
		if (opt == 'p')
			prefetch = (uint32_t)atoi(optarg);
		else if (opt == 'i')
			inline_bytes = (uint32_t)atoi(optarg);
		else
			return usage();
	}
	if (argc - optind < 3)
		return usage();
	n = atol(argv[optind]);
	rounds = atoi(argv[optind + 1]);
	ns = argc - optind - 2;
	if (n < 1 || rounds < 1)
		return usage();
	s = calloc((size_t)ns, sizeof(*s));
	if (!s)
		return 1;
	for (int k = 0; k < ns && !rc; k++) {
		struct shoal_pool_config c;

		s[k].workers = atoi(argv[optind + 2 + k]);
		if (s[k].workers < 1) {
			rc = usage();
			break;
		}
		s[k].st = calloc((size_t)s[k].workers, sizeof(*s[k].st));
		if (!s[k].st) {
			rc = 1;
			break;
		}
		memset(&c, 0, sizeof(c));
		c.workers = (uint32_t)s[k].workers;
		c.fn = echo;
		c.prefetch = prefetch;
		c.inline_bytes = inline_bytes;
		s[k].window = 2L * s[k].workers * (prefetch ? prefetch : SHOAL_POOL_PREFETCH_DEFAULT);
		if (s[k].window < 4 * BATCH)
			s[k].window = 4 * BATCH;
		rc = shoal_pool_create(&c, &s[k].p);
		if (rc) {
			fprintf(stderr, "pool_scale: %s\n", shoal_strerror(rc));
			rc = 1;
			break;
		}
		rc = run(s[k].p, n / 10 > 0 ? n / 10 : 1, s[k].window);
	}
	for (int r = 0; r < rounds && !rc; r++) {
		for (int j = 0; j < ns && !rc; j++) {
			struct scale *x = &s[r % 2 ? ns - 1 - j : j];
			double sw0[4], sw1[4], c0[2], c1[2], t0, t1;

			switches(x->p, x->st, x->workers, sw0);
			cpu_ns(x->p, x->st, x->workers, c0);
			t0 = now();
			rc = run(x->p, n, x->window);
			t1 = now();
			if (rc)
				break;
			cpu_ns(x->p, x->st, x->workers, c1);
			switches(x->p, x->st, x->workers, sw1);
			printf("%d %d %ld %.0f %.3f %.4f %.4f %.4f %.4f %.3f %.3f\n", r, x->workers, n,
			       (double)n / (t1 - t0),
			       (c1[0] + c1[1] - c0[0] - c0[1]) / 1e3 / (double)n,
			       (sw1[0] - sw0[0]) / (double)n, (sw1[1] - sw0[1]) / (double)n,
			       (sw1[2] - sw0[2]) / (double)n, (sw1[3] - sw0[3]) / (double)n,
			       (c1[0] - c0[0]) / 1e3 / (double)n, (c1[1] - c0[1]) / 1e3 / (double)n);
			fflush(stdout);
		}
	}
	for (int k = 0; k < ns; k++) {
		if (s[k].p)
			shoal_pool_destroy(s[k].p);
		free(s[k].st);
	}
	free(s);
	return rc;
}
