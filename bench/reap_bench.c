/*
 * reap_bench.c - what shoal_reap() costs over many objects, beside `ls` of
 * the same directory, and what the ledger lock costs an attach. Public API
 * only, so the same source measures an older libshoal too.
 *
 *   reap_bench reap N      -> {"name": "reap.N", "value": s, "peers": {"ls": s, ...}}
 *   reap_bench unlink N    -> {"name": "reap.queue_unlink.N", "value": s}
 *   reap_bench attach ROUNDS -> {"name": "array.attach_release.1MiB", "value": us}
 *   reap_bench cli N SHOAL   -> {"name": "cli.ls.N", ...}, {"name": "cli.gc.N", ...}
 *
 * reap: N objects under a private prefix, a mix: 40% arrays held by this
 * process alone, 20% also held by a process that was then SIGKILLed,
 * 20% also held by one of the live queues, 10% held only by a queue that
 * was unlinked (they are freed by the reap), and 10% queues (the live
 * holders). The value is one shoal_reap() over the prepared set (the work:
 * dead lines dropped, a tenth of the objects freed); peers: `ls /dev/shm`
 * run after it (fork and exec included), a second shoal_reap() with nothing
 * left to do, and the number of entries /dev/shm had. Other programs'
 * objects in /dev/shm are walked too: the reaper only reclaims what dead
 * holders held, so theirs are safe.
 * unlink: shoal_queue_unlink() of a queue that alone holds N arrays: one
 * walk that frees all N.
 * attach: the median of ROUNDS timed attach + release + close of a 1 MiB
 * array that this process also holds (the ledger lock taken twice).
 * cli: the same mix of N objects; the command SHOAL (tools/shoal) run as
 * a user runs it, output to /dev/null, fork and exec included: `shoal ls`
 * (every object's header read, each array mapped and its ledger read),
 * then `shoal gc` (the reap, with the work above to do). Peers: `ls
 * /dev/shm` (names only) and `ls -l /dev/shm` (a stat of each: the floor
 * of any listing that looks at every object), and `shoal ls --json`;
 * for gc, a second `shoal gc` with nothing left to do.
 */
#include <dirent.h>
#include <errno.h>
#include <shoal.h>
#include <signal.h>
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

static void die(const char *what, int rc)
{
	fprintf(stderr, "reap_bench: %s: %s\n", what, shoal_strerror(rc));
	exit(1);
}

static struct shoal_array *make_array(const char *tag, int i)
{
	static const size_t shape[1] = { 16 };
	struct shoal_array *a;
	char name[96];
	int rc;

	snprintf(name, sizeof(name), "rb%d.%s%d", (int)getpid(), tag, i);
	rc = shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a);
	if (rc)
		die("shoal_array_create", rc);
	return a;
}

static struct shoal_queue *make_queue(int i, char *name, size_t cap)
{
	struct shoal_queue *q;
	int rc;

	snprintf(name, cap, "rb%d.q%d", (int)getpid(), i);
	rc = shoal_queue_create(name, 4, 64, NULL, &q);
	if (rc)
		die("shoal_queue_create", rc);
	return q;
}

static int count_entries(void)
{
	DIR *d = opendir("/dev/shm");
	int n = 0;

	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n - 2;
}

/* A child attaches every handle in @h, then is SIGKILLed: a dead holder
 * line in each. */
static void dead_holder(char (*h)[SHOAL_HANDLE_MAX], int n)
{
	int p[2];
	pid_t pid;
	char c;

	if (pipe(p) != 0)
		exit(1);
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < n; i++) {
			struct shoal_array *a;

			if (shoal_array_attach(h[i], 0, &a) != 0)
				_exit(1);
		}
		if (write(p[1], "x", 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	if (read(p[0], &c, 1) != 1) {
		fprintf(stderr, "reap_bench: the holder failed\n");
		exit(1);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(p[0]);
	close(p[1]);
}

/* The mix of N objects that bench_reap() and bench_cli() work on. */
struct mix {
	struct shoal_array **mine;
	char (*handles)[SHOAL_HANDLE_MAX];
	struct shoal_queue **qs;
	char (*qnames)[96];
	int m, nq;
};

static void mix_make(struct mix *x, int n)
{
	int plain = n * 4 / 10, deadp = n * 2 / 10, liveq = n * 2 / 10, deadq = n / 10;
	int nq = n - plain - deadp - liveq - deadq;
	struct shoal_array **mine = calloc((size_t)(plain + deadp + liveq), sizeof(*mine));
	char (*handles)[SHOAL_HANDLE_MAX] = calloc((size_t)deadp, SHOAL_HANDLE_MAX);
	struct shoal_queue **qs = calloc((size_t)nq, sizeof(*qs));
	char (*qnames)[96] = calloc((size_t)nq + 1, 96);
	struct shoal_queue *dq;
	int m = 0, rc;

	if (!mine || !handles || !qs || !qnames || nq < 1)
		exit(1);
	for (int i = 0; i < nq; i++)
		qs[i] = make_queue(i, qnames[i], sizeof(qnames[i]));
	for (int i = 0; i < plain; i++)
		mine[m++] = make_array("p", i);
	for (int i = 0; i < deadp; i++) {
		mine[m] = make_array("d", i);
		shoal_array_handle(mine[m++], handles[i], SHOAL_HANDLE_MAX);
	}
	dead_holder(handles, deadp);
	for (int i = 0; i < liveq; i++) {
		mine[m] = make_array("l", i);
		rc = shoal_queue_hold_array(qs[i % nq], mine[m++]);
		if (rc)
			die("shoal_queue_hold_array", rc);
	}
	dq = make_queue(nq, qnames[nq], sizeof(qnames[nq]));
	for (int i = 0; i < deadq; i++) {
		struct shoal_array *a = make_array("g", i);

		rc = shoal_queue_hold_array(dq, a);
		if (rc)
			die("shoal_queue_hold_array", rc);
		shoal_array_close(a); /* the queue's reference keeps it */
	}
	shoal_queue_detach(dq);
	shoal_unlink(qnames[nq]); /* gone without a reap: its arrays are orphans */
	x->mine = mine;
	x->handles = handles;
	x->qs = qs;
	x->qnames = qnames;
	x->m = m;
	x->nq = nq;
}

static void mix_free(struct mix *x)
{
	for (int i = 0; i < x->m; i++)
		shoal_array_close(x->mine[i]);
	for (int i = 0; i < x->nq; i++) {
		shoal_queue_detach(x->qs[i]);
		shoal_queue_unlink(x->qnames[i]);
	}
	free(x->mine);
	free(x->handles);
	free(x->qs);
	free(x->qnames);
}

static void bench_reap(int n)
{
	double t0, reap1, reap2, ls;
	int freed, entries, rc;
	struct mix x;

	mix_make(&x, n);
	entries = count_entries();
	t0 = now();
	freed = shoal_reap();
	reap1 = now() - t0;
	t0 = now();
	rc = system("ls /dev/shm > /dev/null");
	ls = now() - t0;
	if (rc != 0)
		exit(1);
	t0 = now();
	shoal_reap();
	reap2 = now() - t0;
	printf("{\"name\": \"reap.%d\", \"value\": %.4f, \"unit\": \"s\", \"peers\": {\"ls\": %.4f, "
	       "\"reap_again\": %.4f, \"shm_entries\": %d, \"freed\": %d}}\n",
	       n, reap1, ls, reap2, entries, freed);
	fflush(stdout);
	mix_free(&x);
}

/* Seconds @cmd takes as a shell command; exits if it fails. */
static double timed(const char *cmd)
{
	double t0 = now();

	if (system(cmd) != 0) {
		fprintf(stderr, "reap_bench: '%s' failed\n", cmd);
		exit(1);
	}
	return now() - t0;
}

static void bench_cli(int n, const char *shoal)
{
	char ls[512], lsj[512], gc[512];
	double t_ls, t_lsj, t_gc, t_gc2, floor, floor_l;
	int entries;
	struct mix x;

	snprintf(ls, sizeof(ls), "'%s' ls > /dev/null", shoal);
	snprintf(lsj, sizeof(lsj), "'%s' ls --json > /dev/null", shoal);
	snprintf(gc, sizeof(gc), "'%s' gc > /dev/null", shoal);
	mix_make(&x, n);
	entries = count_entries();
	timed("ls /dev/shm > /dev/null"); /* the directory warm for all */
	floor = timed("ls /dev/shm > /dev/null");
	floor_l = timed("ls -l /dev/shm > /dev/null");
	t_ls = timed(ls);
	t_lsj = timed(lsj);
	t_gc = timed(gc);
	t_gc2 = timed(gc);
	printf("{\"name\": \"cli.ls.%d\", \"value\": %.4f, \"unit\": \"s\", \"peers\": {\"ls\": %.4f, "
	       "\"ls_l\": %.4f, \"shoal_ls_json\": %.4f, \"shm_entries\": %d}}\n",
	       n, t_ls, floor, floor_l, t_lsj, entries);
	printf("{\"name\": \"cli.gc.%d\", \"value\": %.4f, \"unit\": \"s\", \"peers\": {\"ls\": %.4f, "
	       "\"ls_l\": %.4f, \"reap_again\": %.4f, \"shm_entries\": %d}}\n",
	       n, t_gc, floor, floor_l, t_gc2, entries);
	fflush(stdout);
	mix_free(&x);
}

static void bench_unlink(int n)
{
	struct shoal_queue *q;
	char qname[96];
	double t0, dt;
	int rc;

	q = make_queue(0, qname, sizeof(qname));
	for (int i = 0; i < n; i++) {
		struct shoal_array *a = make_array("u", i);

		rc = shoal_queue_hold_array(q, a);
		if (rc)
			die("shoal_queue_hold_array", rc);
		shoal_array_close(a);
	}
	shoal_queue_detach(q);
	t0 = now();
	rc = shoal_queue_unlink(qname);
	dt = now() - t0;
	if (rc)
		die("shoal_queue_unlink", rc);
	printf("{\"name\": \"reap.queue_unlink.%d\", \"value\": %.4f, \"unit\": \"s\", \"peers\": {}}\n",
	       n, dt);
}

static int dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void bench_attach(int rounds)
{
	static const size_t shape[1] = { 1 << 20 };
	struct shoal_array *a, *b;
	char h[SHOAL_HANDLE_MAX];
	double *t = calloc((size_t)rounds, sizeof(double));
	int rc;

	if (!t || rounds < 1)
		exit(1);
	rc = shoal_array_create(NULL, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a);
	if (rc)
		die("shoal_array_create", rc);
	shoal_array_handle(a, h, sizeof(h));
	for (int i = 0; i < rounds; i++) {
		double t0 = now();

		rc = shoal_array_attach(h, 0, &b);
		if (rc)
			die("shoal_array_attach", rc);
		((volatile unsigned char *)shoal_array_data(b))[0];
		shoal_array_close(b);
		t[i] = now() - t0;
	}
	qsort(t, (size_t)rounds, sizeof(double), dbl_cmp);
	printf("{\"name\": \"array.attach_close.1MiB\", \"value\": %.3f, \"unit\": \"us\", "
	       "\"peers\": {\"p10\": %.3f, \"p90\": %.3f}}\n",
	       t[rounds / 2] * 1e6, t[rounds / 10] * 1e6, t[rounds * 9 / 10] * 1e6);
	shoal_array_close(a);
	free(t);
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : 0;

	if (argc < 3 || n < 1) {
		fprintf(stderr, "usage: reap_bench reap|unlink|attach N | cli N SHOAL\n");
		return 2;
	}
	if (strcmp(argv[1], "cli") == 0 && argc == 4)
		bench_cli(n, argv[3]);
	else if (strcmp(argv[1], "reap") == 0)
		bench_reap(n);
	else if (strcmp(argv[1], "unlink") == 0)
		bench_unlink(n);
	else if (strcmp(argv[1], "attach") == 0)
		bench_attach(n);
	else
		return 2;
	return 0;
}
