/*
 * hello.c - the README's C example: a parent fills a shared array, hands it
 * to a worker through a queue, and lets go at once; the worker attaches the
 * same pages (nothing is copied) and the last release frees them.
 */
#include <shoal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static int check(int rc, const char *what)
{
	if (rc < 0)
		fprintf(stderr, "%s: %s\n", what, shoal_strerror(rc));
	return rc < 0;
}

static int worker(void)
{
	struct shoal_queue *q;
	struct shoal_array *a;
	const double *x;
	double sum = 0;

	if (check(shoal_queue_open("hello", 0, &q), "worker: open queue") ||
	    check(shoal_queue_pop_array(q, SHOAL_RDONLY, &a, -1), "worker: pop"))
		return 1;
	x = shoal_array_data(a);
	for (size_t i = 0; i < shoal_array_nbytes(a) / sizeof(*x); i++)
		sum += x[i];
	printf("worker %d: sum of %zu x %zu doubles = %.0f\n", (int)getpid(), shoal_array_shape(a)[0],
	       shoal_array_shape(a)[1], sum);
	shoal_array_close(a); /* the last reference: the memory goes back */
	shoal_queue_detach(q);
	return 0;
}

int main(void)
{
	const size_t shape[2] = { 1000, 1000 };
	struct shoal_queue *q;
	struct shoal_array *a;
	pid_t pid;
	int st;

	if (check(shoal_queue_create("hello", 16, SHOAL_HANDLE_MAX, NULL, &q), "create queue") ||
	    check(shoal_array_create(NULL, SHOAL_DTYPE_FLOAT64, 0, 2, shape, NULL, &a), "create array"))
		return 1;
	for (size_t i = 0; i < 1000 * 1000; i++)
		((double *)shoal_array_data(a))[i] = 1.0;
	if (check(shoal_queue_push_array(q, a, -1), "push")) /* a handle travels, not the data */
		return 1;
	shoal_array_close(a); /* safe: the queue holds a reference until it is popped */

	pid = fork();
	if (pid == 0) {
		st = worker();
		fflush(stdout);
		_exit(st);
	}
	waitpid(pid, &st, 0);
	shoal_queue_detach(q);
	shoal_queue_unlink("hello");
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
