/*
 * top_bench.c - what one refresh of `shoal top` costs the machine it
 * watches: PROCS processes holding OBJECTS arrays. Public API only.
 *
 *   top_bench OBJECTS PROCS ROUNDS SHOAL   (ROUNDS 0: hold the set until stdin ends)
 *     -> {"name": "top.refresh.OBJECTSobj.PROCSproc", "value": ms, "unit": "ms",
 *         "peers": {"procps top -b -n 1": ms, "ls -l": ms},
 *         "cpu_ms": ..., "in_process_ms": ..., "in_process_cpu_ms": ...}
 *
 * This process creates OBJECTS arrays of one page each (and holds them:
 * its mappings are OBJECTS VMAs for smaps_rollup to walk), then forks PROCS
 * children that each attach OBJECTS / PROCS of them and wait; every array
 * has two live holders, every process is in the view. The value is the
 * median over ROUNDS of `shoal top --once --json` run as a user runs it
 * (fork and exec included, output to /dev/null): one refresh, every
 * object's header read, every array mapped and its ledger read, every
 * process's /proc/PID/status and smaps_rollup read. cpu_ms is that
 * command's user + system time (wait4), the cost to the watched machine;
 * in_process_ms and in_process_cpu_ms are what the tool reports for
 * building the frame alone (its "refresh" line, without process start).
 * Peers, in the same run: `top -b -n 1` (procps: one refresh over every
 * process of the machine) and `ls -l` of the objects' directory (a stat
 * of each: the floor of any listing that looks at every object).
 */
#include <errno.h>
#include <shoal.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
	fprintf(stderr, "top_bench: %s: %s\n", what, shoal_strerror(rc));
	exit(1);
}

/* Run @cmd under sh, stdout to @out (a file, or /dev/null): wall ms,
 * and its CPU ms in @cpu. */
static double timed(const char *cmd, const char *out, double *cpu)
{
	struct rusage ru;
	double t0 = now();
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		if (!freopen(out, "w", stdout))
			_exit(127);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "top_bench: '%s' failed\n", cmd);
		exit(1);
	}
	*cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
	return (now() - t0) * 1e3;
}

/* The live view's second refresh (PSS then cached, as in steady use):
 * what the tool reports it cost, wall and CPU ms. */
static void steady(const char *shoal, double *wall, double *cpu)
{
	int fd[2], st;
	char *line = NULL;
	size_t cap = 0;
	FILE *f;
	pid_t pid;

	if (pipe(fd))
		exit(1);
	pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		if (!freopen("/dev/null", "r", stdin))
			_exit(127);
		execl(shoal, shoal, "top", "--json", "--interval", "0.1", (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	*wall = *cpu = -1;
	f = fdopen(fd[0], "r");
	if (f && getline(&line, &cap, f) > 0 && getline(&line, &cap, f) > 0) {
		char *p = strstr(line, "\"refresh_wall_ms\":");

		*wall = p ? atof(p + 18) : -1;
		p = strstr(line, "\"refresh_cpu_ms\":");
		*cpu = p ? atof(p + 17) : -1;
	}
	kill(pid, SIGINT);
	waitpid(pid, &st, 0);
	free(line);
	if (f)
		fclose(f);
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return v[n / 2];
}

int main(int argc, char **argv)
{
	int nobj, nproc, rounds, rc, go[2], ready[2];
	struct shoal_array **a;
	const char *shoal, *dir;
	char cmd[1024], handle[SHOAL_HANDLE_MAX], tag[64];
	double wall[64], cpu[64], inw[64], inc[64], topw[64], lsw[64], sw[3], sc[3], dummy;
	pid_t *kids;

	if (argc != 5 || (nobj = atoi(argv[1])) < 1 || (nproc = atoi(argv[2])) < 1 ||
	    (rounds = atoi(argv[3])) < 0 || rounds > 64) {
		fprintf(stderr, "usage: top_bench OBJECTS PROCS ROUNDS SHOAL\n");
		return 2;
	}
	shoal = argv[4];
	if ((rc = shoal_dir(&dir)))
		die("dir", rc);
	a = calloc((size_t)nobj, sizeof(*a));
	kids = calloc((size_t)nproc, sizeof(*kids));
	if (!a || !kids || pipe(go) || pipe(ready))
		return 1;
	for (int i = 0; i < nobj; i++) {
		size_t shape[1] = { 4096 };
		char name[64];

		snprintf(name, sizeof(name), "topb.%d.%d", (int)getpid(), i);
		if ((rc = shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a[i])))
			die("create", rc);
	}
	for (int k = 0; k < nproc; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			char c;

			close(go[1]);
			for (int i = k; i < nobj; i += nproc) {
				struct shoal_array *b;

				shoal_array_handle(a[i], handle, sizeof(handle));
				if (shoal_array_attach(handle, 0, &b))
					_exit(1);
			}
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			/* Until the parent closes its end: no busy wait. */
			while (read(go[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
	}
	close(go[0]);
	for (int k = 0; k < nproc; k++) {
		char c;

		if (read(ready[0], &c, 1) != 1)
			return 1;
	}
	if (rounds == 0) {
		/* Hold the set until stdin ends, for measuring by hand. */
		char c;

		printf("ready\n");
		fflush(stdout);
		while (read(0, &c, 1) > 0)
			;
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "'%s' top --once --json", shoal);
	snprintf(tag, sizeof(tag), "/tmp/top_bench.%d.json", (int)getpid());
	timed(cmd, "/dev/null", &dummy); /* warm: the directory, the binary */
	for (int r = 0; r < rounds; r++) {
		FILE *f;
		char *line = NULL;
		size_t cap = 0;
		char *p;

		/* Taking turns, so a noisy moment hits all three alike. */
		wall[r] = timed(cmd, tag, &cpu[r]);
		topw[r] = timed("top -b -n 1", "/dev/null", &dummy);
		snprintf(cmd + 512, 512, "ls -l '%s'", dir);
		lsw[r] = timed(cmd + 512, "/dev/null", &dummy);
		f = fopen(tag, "r");
		if (!f || getline(&line, &cap, f) < 0)
			return 1;
		fclose(f);
		p = strstr(line, "\"refresh_wall_ms\":");
		inw[r] = p ? atof(p + 18) : -1;
		p = strstr(line, "\"refresh_cpu_ms\":");
		inc[r] = p ? atof(p + 17) : -1;
		free(line);
	}
	unlink(tag);
	for (int r = 0; r < 3 && r < rounds; r++)
		steady(shoal, &sw[r], &sc[r]);
	printf("{\"name\": \"top.refresh.%dobj.%dproc\", \"value\": %.1f, \"unit\": \"ms\", "
	       "\"peers\": {\"procps top -b -n 1\": %.1f, \"ls -l\": %.1f}, \"cpu_ms\": %.1f, "
	       "\"in_process_ms\": %.1f, \"in_process_cpu_ms\": %.1f}\n",
	       nobj, nproc + 1, median(wall, rounds), median(topw, rounds), median(lsw, rounds),
	       median(cpu, rounds), median(inw, rounds), median(inc, rounds));
	printf("{\"name\": \"top.steady.%dobj.%dproc\", \"value\": %.1f, \"unit\": \"ms\", "
	       "\"peers\": {\"first refresh\": %.1f}, \"cpu_ms\": %.1f}\n",
	       nobj, nproc + 1, median(sw, rounds < 3 ? rounds : 3), median(inw, rounds),
	       median(sc, rounds < 3 ? rounds : 3));
out:
	close(go[1]);
	for (int k = 0; k < nproc; k++)
		waitpid(kids[k], NULL, 0);
	for (int i = 0; i < nobj; i++)
		shoal_array_release(a[i]);
	return 0;
}
