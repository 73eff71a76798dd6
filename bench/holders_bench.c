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
 */
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

int main(int argc, char **argv)
{
	int up[2], down[2], k, ok = 0, bad = 0;
	pid_t *kids;
	char c;

	if (argc != 4 || (k = atoi(argv[3])) < 0) {
		fprintf(stderr, "usage: holders_bench HANDLE SHM_NAME K\n");
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
