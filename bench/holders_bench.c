/*
 * holders_bench.c - the holders for bench/holders_bench.py: K processes
 * that each hold one shoal array (an attach: one ledger line) and map one
 * POSIX shm object (what a multiprocessing.shared_memory.SharedMemory
 * holder does), so the timing process measures attach + close with K
 * others holding. C children, not Python ones: 4096 forked interpreters
 * would cost gigabytes.
 *
 *   holders_bench HANDLE SHM_NAME K
 *
 * Prints "ready N" (N holders attached) once all are in place, then holds
 * until stdin reaches EOF; then every child closes and exits, and this
 * exits 0 if all of them attached and closed cleanly.
 *
 *   holders_bench --full-dead ROUNDS
 *
 * The other figure: an attach into a full ledger (SHOAL_ARRAY_HOLDERS_MAX
 * lines) whose lines are all dead processes' but the first, this
 * process's, which stops a release's sweep. Processes attach and exit
 * without releasing until the ledger is full; then a new process attaches
 * (it must take dead lines) while a thread here retains and releases
 * every 200 us, which waits for the ledger lock: its longest retain is the
 * longest lock hold the attach imposed on other holders. ROUNDS times,
 * the ledger topped up to full before each. Prints two JSON lines:
 * array.attach.full_dead_lock_wait (longest retain, ms) and
 * array.attach.full_dead (the attach itself, ms: median of the rounds).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shoal.h"

static int hold(const char *handle, const char *shm, int up, int down)
{
	struct shoal_array *a = NULL;
	struct stat st;
	void *p = MAP_FAILED;
	char c = 'k';
	int fd, rc;

	rc = shoal_array_attach(handle, 0, &a);
	fd = shm_open(shm, O_RDWR, 0);
	if (fd >= 0 && fstat(fd, &st) == 0)
		p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (rc || p == MAP_FAILED)
		c = 'e';
	if (write(up, &c, 1) != 1)
		return 1;
	while (read(down, &c, 1) > 0) /* until the parent closes its end */
		;
	if (p != MAP_FAILED)
		munmap(p, (size_t)st.st_size);
	if (fd >= 0)
		close(fd);
	return rc || shoal_array_close(a) != 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Fork processes that attach @handle and exit holding it until @a has
 * @want holders (lines in use); 64 at a time. */
static int fill_dead(struct shoal_array *a, const char *handle, int want)
{
	while (shoal_array_holders(a, NULL, 0) < want) {
		int n = want - shoal_array_holders(a, NULL, 0), st;
		pid_t kids[64];

		if (n > 64)
			n = 64;
		for (int i = 0; i < n; i++) {
			kids[i] = fork();
			if (kids[i] == 0) {
				struct shoal_array *b;

				_exit(shoal_array_attach(handle, 0, &b) != 0); /* dies holding */
			}
			if (kids[i] < 0)
				return -1;
		}
		for (int i = 0; i < n; i++)
			if (waitpid(kids[i], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
				return -1;
	}
	return 0;
}

static struct shoal_array *probed;
static atomic_bool probing;
static double probe_max_ms;

static void *prober(void *arg)
{
	const struct timespec gap = { 0, 200000 };

	(void)arg;
	while (atomic_load(&probing)) {
		double t0 = now_ms(), dt;

		if (shoal_array_retain(probed) != 0 || shoal_array_release(probed) != 0)
			abort();
		dt = now_ms() - t0;
		if (dt > probe_max_ms)
			probe_max_ms = dt;
		nanosleep(&gap, NULL);
	}
	return NULL;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return (a > b) - (a < b);
}

static int full_dead(int rounds)
{
	const size_t shape[] = { 4096 };
	char handle[SHOAL_HANDLE_MAX];
	double took[64], wait_max = 0;
	struct shoal_array *a;
	pthread_t th;

	if (rounds < 1 || rounds > 64 ||
	    shoal_array_create(NULL, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a) != 0 ||
	    shoal_array_handle(a, handle, sizeof(handle)) < 0)
		return 1;
	probed = a;
	for (int r = 0; r < rounds; r++) {
		int p[2], st;
		pid_t kid;

		if (fill_dead(a, handle, SHOAL_ARRAY_HOLDERS_MAX) != 0 || pipe(p) != 0)
			return 1;
		probe_max_ms = 0;
		atomic_store(&probing, true);
		if (pthread_create(&th, NULL, prober, NULL) != 0)
			return 1;
		kid = fork();
		if (kid == 0) {
			struct shoal_array *b;
			double t0 = now_ms(), dt;
			int rc = shoal_array_attach(handle, 0, &b);

			dt = now_ms() - t0;
			_exit(rc == 0 && write(p[1], &dt, sizeof(dt)) == (ssize_t)sizeof(dt) ? 0 : 1);
		}
		if (kid < 0 || waitpid(kid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) ||
		    read(p[0], &took[r], sizeof(took[r])) != (ssize_t)sizeof(took[r]))
			return 1;
		atomic_store(&probing, false);
		pthread_join(th, NULL);
		if (probe_max_ms > wait_max)
			wait_max = probe_max_ms;
		close(p[0]);
		close(p[1]);
	}
	qsort(took, (size_t)rounds, sizeof(took[0]), cmp_double);
	printf("{\"name\": \"array.attach.full_dead_lock_wait\", \"value\": %.3f, \"unit\": \"ms\", "
	       "\"peers\": {\"rounds\": %d}}\n", wait_max, rounds);
	printf("{\"name\": \"array.attach.full_dead\", \"value\": %.3f, \"unit\": \"ms\", "
	       "\"peers\": {\"rounds\": %d}}\n", took[rounds / 2], rounds);
	fflush(stdout);
	snprintf(handle, sizeof(handle), "%s", shoal_array_name(a));
	shoal_array_close(a);
	shoal_unlink(handle); /* its dead holders keep it */
	return 0;
}

int main(int argc, char **argv)
{
	int up[2], down[2], k, ok = 0, bad = 0;
	pid_t *kids;
	char c;

	if (argc == 3 && strcmp(argv[1], "--full-dead") == 0)
		return full_dead(atoi(argv[2]));
	if (argc != 4 || (k = atoi(argv[3])) < 0) {
		fprintf(stderr, "usage: holders_bench HANDLE SHM_NAME K | --full-dead ROUNDS\n");
		return 2;
	}
	kids = calloc((size_t)k + 1, sizeof(*kids));
	if (!kids || pipe(up) || pipe(down))
		return 1;
	for (int i = 0; i < k; i++) {
		kids[i] = fork();
		if (kids[i] < 0) {
			perror("fork");
			k = i;
			break;
		}
		if (kids[i] == 0) {
			close(up[0]);
			close(down[1]);
			_exit(hold(argv[1], argv[2], up[1], down[0]));
		}
	}
	close(up[1]);
	close(down[0]);
	for (int i = 0; i < k; i++) {
		if (read(up[0], &c, 1) != 1)
			break;
		ok += c == 'k';
	}
	printf("ready %d\n", ok);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	close(down[1]);
	for (int i = 0; i < k; i++) {
		int st;

		while (waitpid(kids[i], &st, 0) < 0 && errno == EINTR)
			;
		bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	return ok == k && !bad ? 0 : 1;
}
