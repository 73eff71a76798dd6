/*
 * bigarray_floor.c - the floors under bench/bigarray_bench.py: how fast this
 * machine can put N bytes of fresh, zeroed memory into a process at all,
 * and then write them once, with no shoal and no Python in the way.
 *
 *   bigarray_floor MODE BYTES [PATH] [AGAIN_GAP_S]
 *
 * MODE (each one mapping of BYTES, then one memset of 1 over it in this
 * thread, as numpy's fill; then unmapped and, for a file, removed):
 *   anon_populate   mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE): the
 *                   kernel allocates, zeroes and maps every page in one call
 *   anon_threads    an anonymous mapping, MADV_POPULATE_WRITE split across
 *                   one thread per CPU (as lib/segment.c's populate())
 *   anon_threads_hp the same after madvise(MADV_HUGEPAGE): 2 MiB pages
 *   memfd_fallocate memfd_create + fallocate, then the fill faults the pages
 *   file_threads    PATH (created, must not exist): ftruncate, mmap shared,
 *                   MADV_HUGEPAGE, MADV_POPULATE_WRITE in one thread per
 *                   CPU: shoal's create on that mount (a hugetlbfs, a huge=
 *                   tmpfs), without the library
 *   file_fault      PATH: ftruncate + mmap shared, the fill faults every
 *                   page: SharedMemory + numpy's fill, in C
 *
 * With AGAIN_GAP_S, the whole thing runs a second time AGAIN_GAP_S seconds
 * after the first mapping was freed: whether pages freed a moment ago come
 * back faster than fresh ones (a balloon reporting free pages to the host
 * does so only after a delay).
 *
 * One JSON object per run on stdout: create_s (map + populate), fill_s
 * (the memset), cpu_s (user + system of every thread), minflt (minor
 * faults), steal_s (the machine's steal time over the run, every CPU, from
 * /proc/stat: time the hypervisor ran something else), and the
 * /proc/vmstat deltas thp_fault_alloc, thp_file_alloc and pgfault.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#define MAX_THREADS 16

struct job {
	char *p;
	size_t len;
	int rc;
};

struct counts {
	double t, cpu, steal;
	long minflt;
	long long thp_fault, thp_file, pgfault;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long long vmstat(const char *key)
{
	char name[64];
	long long v, found = -1;
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return -1;
	while (fscanf(f, "%63s %lld", name, &v) == 2)
		if (strcmp(name, key) == 0) {
			found = v;
			break;
		}
	fclose(f);
	return found;
}

/* Steal time of all CPUs so far, in seconds (the 8th field of "cpu"). */
static double steal(void)
{
	unsigned long long f[8] = { 0 };
	FILE *p = fopen("/proc/stat", "r");

	if (!p)
		return 0;
	if (fscanf(p, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &f[0], &f[1], &f[2], &f[3],
		   &f[4], &f[5], &f[6], &f[7]) != 8)
		f[7] = 0;
	fclose(p);
	return (double)f[7] / (double)sysconf(_SC_CLK_TCK);
}

static void sample(struct counts *c)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	c->cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
		 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
	c->minflt = ru.ru_minflt;
	c->steal = steal();
	c->thp_fault = vmstat("thp_fault_alloc");
	c->thp_file = vmstat("thp_file_alloc");
	c->pgfault = vmstat("pgfault");
	c->t = now();
}

static void *run(void *arg)
{
	struct job *j = arg;

	j->rc = madvise(j->p, j->len, MADV_POPULATE_WRITE) != 0 ? errno : 0;
	return NULL;
}

/* MADV_POPULATE_WRITE over [p, p + len) in one thread per CPU, pieces on
 * 2 MiB boundaries. 0 or the first errno. */
static int populate(char *p, size_t len)
{
	struct job job[MAX_THREADS];
	pthread_t tid[MAX_THREADS];
	bool started[MAX_THREADS] = { false };
	cpu_set_t cpus;
	size_t n = 1, per, off = 0;
	int rc = 0;

	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
		n = (size_t)CPU_COUNT(&cpus);
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	per = ((len + n - 1) / n + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
	for (size_t i = 0; i < n; i++) {
		job[i].p = p + off;
		job[i].len = off >= len ? 0 : len - off < per ? len - off : per;
		job[i].rc = 0;
		off += job[i].len;
	}
	for (size_t i = 1; i < n; i++)
		started[i] = pthread_create(&tid[i], NULL, run, &job[i]) == 0;
	for (size_t i = 0; i < n; i++)
		if (!started[i])
			run(&job[i]);
	for (size_t i = 1; i < n; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
	for (size_t i = 0; i < n && !rc; i++)
		rc = job[i].rc;
	return rc;
}

static int once(const char *mode, size_t n, const char *path, double gap)
{
	struct counts a, b, c;
	char *p = MAP_FAILED;
	int fd = -1, rc = 0;

	sample(&a);
	if (strcmp(mode, "anon_populate") == 0) {
		p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
			 -1, 0);
	} else if (strncmp(mode, "anon_threads", 12) == 0) {
		p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p != MAP_FAILED && strcmp(mode, "anon_threads_hp") == 0)
			(void)madvise(p, n, MADV_HUGEPAGE);
		if (p != MAP_FAILED)
			rc = populate(p, n);
	} else if (strcmp(mode, "memfd_fallocate") == 0) {
		fd = memfd_create("bigarray_floor", MFD_CLOEXEC);
		if (fd >= 0 && (rc = posix_fallocate(fd, 0, (off_t)n)) == 0)
			p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	} else if (strcmp(mode, "file_threads") == 0 || strcmp(mode, "file_fault") == 0) {
		if (!path) {
			fprintf(stderr, "bigarray_floor: %s needs a PATH\n", mode);
			return 2;
		}
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 && ftruncate(fd, (off_t)n) == 0)
			p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED && strcmp(mode, "file_threads") == 0) {
			(void)madvise(p, n, MADV_HUGEPAGE);
			rc = populate(p, n);
		}
	} else {
		fprintf(stderr, "bigarray_floor: unknown mode '%s'\n", mode);
		return 2;
	}
	if (p == MAP_FAILED || rc) {
		fprintf(stderr, "bigarray_floor: %s of %zu bytes: %s\n", mode, n,
			strerror(rc ? rc : errno));
		rc = 1;
		goto out;
	}
	sample(&b);
	memset(p, 1, n);
	sample(&c);
	printf("{\"mode\": \"%s\", \"bytes\": %zu, \"again_gap_s\": %g, \"create_s\": %.4f, "
	       "\"fill_s\": %.4f, \"cpu_s\": %.4f, \"minflt\": %ld, \"steal_s\": %.2f, "
	       "\"thp_fault_alloc\": %lld, \"thp_file_alloc\": %lld, \"pgfault\": %lld}\n",
	       mode, n, gap, b.t - a.t, c.t - b.t, c.cpu - a.cpu, c.minflt - a.minflt,
	       c.steal - a.steal, c.thp_fault - a.thp_fault, c.thp_file - a.thp_file,
	       c.pgfault - a.pgfault);
	fflush(stdout);
out:
	if (p != MAP_FAILED)
		munmap(p, n);
	if (fd >= 0)
		close(fd);
	if (path)
		unlink(path);
	return rc;
}

int main(int argc, char **argv)
{
	const char *path = argc > 3 && argv[3][0] ? argv[3] : NULL;
	double gap = argc > 4 ? atof(argv[4]) : -1;
	size_t n;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: bigarray_floor MODE BYTES [PATH] [AGAIN_GAP_S]\n");
		return 2;
	}
	n = (size_t)strtoull(argv[2], NULL, 0);
	rc = once(argv[1], n, path, -1);
	if (rc || gap < 0)
		return rc;
	usleep((useconds_t)(gap * 1e6));
	return once(argv[1], n, path, gap);
}
