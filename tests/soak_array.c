/*
 * soak_array - many processes attach, retain and release one array while
 * they are SIGKILLed at random, from outside and from inside the ledger's
 * critical sections (the test hook). The books must balance at the end:
 * after a reap the parent's single reference is all that is left, the
 * array was never freed while the parent held it, and it is freed exactly
 * at the parent's release.
 *
 *   soak_array [seconds]     default 20; run by `make soak`
 */
#include "array.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 6

static unsigned int seed;

static void maybe_die(int point)
{
	(void)point;
	if (rand_r(&seed) % 4000 == 0)
		raise(SIGKILL);
}

static void worker(const char *handle, unsigned int s)
{
	seed = s;
	shoal__array_hook = maybe_die;
	for (;;) {
		struct shoal_array *a;
		int n = rand_r(&seed) % 4;
		int rc = shoal_array_attach(handle, rand_r(&seed) % 2 ? SHOAL_RDONLY : 0, &a);

		if (rc) {
			fprintf(stderr, "worker %d: attach: %s\n", (int)getpid(), shoal_strerror(rc));
			_exit(1);
		}
		for (int i = 0; i < n; i++)
			if (shoal_array_retain(a) != 0)
				_exit(2);
		for (int i = 0; i < n / 2; i++)
			if (shoal_array_release(a) != 0)
				_exit(3);
		if (shoal_array_close(a) < 0)
			_exit(4);
	}
}

static pid_t spawn(const char *handle, unsigned int s)
{
	pid_t pid = fork();

	if (pid == 0)
		worker(handle, s);
	return pid;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 20;
	size_t shape[] = { 1 << 16 };
	struct shoal_array *a;
	char name[64], handle[SHOAL_HANDLE_MAX], path[128];
	pid_t kids[WORKERS];
	long deaths = 0, reaps = 0;
	time_t end;
	int rc;

	snprintf(name, sizeof(name), "soak.%d", (int)getpid());
	snprintf(path, sizeof(path), "/dev/shm/shoal.%s", name);
	rc = shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a);
	if (rc) {
		fprintf(stderr, "create: %s\n", shoal_strerror(rc));
		return 1;
	}
	shoal_array_handle(a, handle, sizeof(handle));
	srand((unsigned int)getpid());
	for (int i = 0; i < WORKERS; i++)
		kids[i] = spawn(handle, (unsigned int)rand());
	end = time(NULL) + seconds;
	while (time(NULL) < end) {
		int st;
		pid_t dead;

		usleep(20000);
		if (rand() % 4 == 0)
			kill(kids[rand() % WORKERS], SIGKILL);
		while ((dead = waitpid(-1, &st, WNOHANG)) > 0) {
			if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
				fprintf(stderr, "FAIL: worker %d ended with status %#x\n", (int)dead, st);
				return 1;
			}
			deaths++;
			for (int i = 0; i < WORKERS; i++)
				if (kids[i] == dead)
					kids[i] = spawn(handle, (unsigned int)rand());
		}
		if (rand() % 10 == 0) {
			if (shoal_reap() < 0)
				return 1;
			reaps++;
		}
		if (access(path, F_OK) != 0 || shoal_array_is_freed(a) || shoal_array_refcount(a) < 1) {
			fprintf(stderr, "FAIL: the array was freed while the parent held it\n");
			return 1;
		}
	}
	for (int i = 0; i < WORKERS; i++)
		kill(kids[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	shoal_reap();
	if (shoal_array_refcount(a) != 1 || shoal_array_holders(a, NULL, 0) != 1) {
		fprintf(stderr, "FAIL: after reaping, refcount %llu over %d holders (want 1 over 1)\n",
			(unsigned long long)shoal_array_refcount(a), shoal_array_holders(a, NULL, 0));
		return 1;
	}
	rc = shoal_array_close(a);
	if (rc != 1 || access(path, F_OK) == 0) {
		fprintf(stderr, "FAIL: the last release did not free the array (%d)\n", rc);
		return 1;
	}
	printf("soak_array: %d s, %ld workers killed (from outside and inside the ledger), "
	       "%ld reaps, books balanced\n", seconds, deaths, reaps);
	return 0;
}
