/*
 * share.c - one process fills a big shared segment; a forked child reads all
 * of it without copying, and shows where its memory went: the pages are in
 * its RssShmem (shared with the parent), not in its RssAnon (private).
 *
 *   share [--size MiB]      default 1024
 */
#include <errno.h>
#include <inttypes.h>
#include <shoal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* kB value of a "Key:" line in /proc/self/status, or -1. */
static long status_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

static int child(const char *name, size_t n)
{
	struct shoal_segment *s;
	const uint64_t *p;
	uint64_t sum = 0;
	double t0 = now();
	int rc = shoal_segment_open(name, SHOAL_RDONLY, &s);

	if (rc) {
		fprintf(stderr, "child: open: %s\n", shoal_strerror(rc));
		return 1;
	}
	p = shoal_segment_data(s);
	for (size_t i = 0; i < n / sizeof(*p); i++)
		sum += p[i];
	printf("child  %d: opened and summed %zu MiB in %.0f ms, sum %" PRIu64 " (expected %" PRIu64 ")\n",
	       (int)getpid(), n >> 20, (now() - t0) * 1e3, sum,
	       (uint64_t)(n / 8) * (n / 8 - 1) / 2);
	printf("child  memory: RssAnon %6ld MiB (private)   RssShmem %6ld MiB (the parent's pages)\n",
	       status_kb("RssAnon") / 1024, status_kb("RssShmem") / 1024);
	shoal_segment_close(s);
	return sum == (uint64_t)(n / 8) * (n / 8 - 1) / 2 ? 0 : 1;
}

int main(int argc, char **argv)
{
	size_t mib = 1024;
	char name[64];
	struct shoal_segment *s;
	uint64_t *p;
	double t0;
	int rc, st;
	pid_t pid;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
			mib = strtoul(argv[++i], NULL, 10);
		} else {
			printf("usage: %s [--size MiB]\n", argv[0]);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	if (mib == 0) {
		fprintf(stderr, "--size must be at least 1\n");
		return 2;
	}
	snprintf(name, sizeof(name), "demo.%d", (int)getpid());
	t0 = now();
	rc = shoal_segment_create(name, mib << 20, NULL, &s);
	if (rc) {
		fprintf(stderr, "create %zu MiB: %s\n", mib, shoal_strerror(rc));
		return 1;
	}
	p = shoal_segment_data(s);
	for (size_t i = 0; i < (mib << 20) / 8; i++)
		p[i] = i;
	printf("parent %d: created and filled %zu MiB of shared memory in %.0f ms\n", (int)getpid(), mib,
	       (now() - t0) * 1e3);
	fflush(stdout);

	pid = fork();
	if (pid == 0) {
		rc = child(name, mib << 20);
		fflush(stdout);
		_exit(rc);
	}
	waitpid(pid, &st, 0);
	shoal_segment_close(s);
	shoal_unlink(name);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "the child failed\n");
		return 1;
	}
	printf("no byte was copied: the child's private memory stayed small while it read %zu MiB\n", mib);
	return 0;
}
