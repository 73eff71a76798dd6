/*
 * check_pool.c - the task board and the supervisor, with forked C workers:
 * every recycling trigger, worker deaths, memory that really returns, and
 * a thousand recycles in a row without a leaked fd, object or zombie.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include <dirent.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>

#define MiB (1024u * 1024u)

/* ---- task functions: the task is a text command ---- */

static void *leaked[64];
static int nleaked;

static void touch(void *p, int v, size_t n)
{
	memset(p, v, n);
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

static int reply(const char *s, void **out, size_t *out_len)
{
	*out = strdup(s);
	*out_len = strlen(s);
	return *out ? 0 : -ENOMEM;
}

/*
 * Commands:
 *   echo X          -> X
 *   sq N            -> N*N
 *   sleep MS        -> "slept"
 *   leak MB         -> keep MB of touched heap for ever
 *   frag MB         -> MB of small blocks, freed, kept by the heap until trimmed
 *   grow MB         -> touch MB slowly (for the hard limit)
 *   segv            -> crash
 *   once PATH X     -> the first run SIGKILLs itself (PATH marks it), then X
 *   read NAME       -> read every page of segment NAME; its sum
 *   err             -> fails with -EDOM
 *   exit N          -> the worker exits with status N
 *   big N           -> N bytes of 'b'
 *   fds             -> the worker's open fds above 2: "<fd>=<target> ..."
 */
static int task_fn(void *arg, const void *in, size_t len, void **out, size_t *out_len)
{
	char cmd[256];
	long v;

	(void)arg;
	if (len >= sizeof(cmd)) {
		/* A large task: answer with its length and a checksum. */
		const unsigned char *b = in;
		unsigned long sum = 0;

		for (size_t i = 0; i < len; i++)
			sum += b[i];
		snprintf(cmd, sizeof(cmd), "%zu:%lu", len, sum);
		return reply(cmd, out, out_len);
	}
	memcpy(cmd, in, len);
	cmd[len] = '\0';
	if (strncmp(cmd, "echo ", 5) == 0)
		return reply(cmd + 5, out, out_len);
	if (sscanf(cmd, "sq %ld", &v) == 1) {
		snprintf(cmd, sizeof(cmd), "%ld", v * v);
		return reply(cmd, out, out_len);
	}
	if (sscanf(cmd, "sleep %ld", &v) == 1) {
		usleep((useconds_t)v * 1000);
		return reply("slept", out, out_len);
	}
	if (sscanf(cmd, "leak %ld", &v) == 1) {
		void *p = malloc((size_t)v * MiB);

		touch(p, 1, (size_t)v * MiB);
		if (nleaked < 64)
			leaked[nleaked++] = p;
		return reply("leaked", out, out_len);
	}
	if (sscanf(cmd, "frag %ld", &v) == 1) {
		size_t n = (size_t)v * MiB / 1024;
		void **blocks = malloc(n * sizeof(void *));
		void *top;

		for (size_t i = 0; i < n; i++) {
			blocks[i] = malloc(1000);
			touch(blocks[i], 2, 1000);
		}
		/* A live block above them keeps the heap from shrinking on
		 * free (an earlier hole may take the first tries). */
		for (int tries = 0; tries < 64; tries++) {
			top = malloc(1000);
			if (nleaked < 64)
				leaked[nleaked++] = top;
			if ((uintptr_t)top > (uintptr_t)blocks[n - 1])
				break;
		}
		for (size_t i = 0; i < n; i++)
			free(blocks[i]);
		free(blocks);
		return reply("fragged", out, out_len);
	}
	if (sscanf(cmd, "grow %ld", &v) == 1) {
		for (long i = 0; i < v; i++) {
			void *p = malloc(MiB);

			touch(p, 3, MiB);
			usleep(2000);
		}
		return reply("grew", out, out_len);
	}
	if (strcmp(cmd, "segv") == 0) {
		raise(SIGSEGV);
		return -EFAULT;
	}
	if (strncmp(cmd, "once ", 5) == 0) {
		char *sp = strchr(cmd + 5, ' ');
		int fd;

		*sp = '\0';
		fd = open(cmd + 5, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		if (fd >= 0) {
			close(fd);
			raise(SIGKILL);
		}
		return reply(sp + 1, out, out_len);
	}
	if (strncmp(cmd, "read ", 5) == 0) {
		struct shoal_segment *s;
		const volatile uint64_t *q;
		uint64_t sum = 0;

		if (shoal_segment_open(cmd + 5, SHOAL_RDONLY, &s) != 0)
			return -ENOENT;
		q = shoal_segment_data(s);
		for (size_t i = 0; i < shoal_segment_size(s) / 8; i += 512)
			sum += q[i];
		shoal_segment_close(s);
		snprintf(cmd, sizeof(cmd), "%llu", (unsigned long long)sum);
		return reply(cmd, out, out_len);
	}
	if (strcmp(cmd, "err") == 0)
		return -EDOM;
	if (strcmp(cmd, "fds") == 0) {
		/* Every fd above 2 but the listing's own: "<fd>=<target> ". */
		DIR *d = opendir("/proc/self/fd");
		struct dirent *e;
		size_t at = 0;

		cmd[0] = '\0';
		while (d && (e = readdir(d)) != NULL) {
			char path[300], to[128];
			ssize_t n;
			int fd = atoi(e->d_name);

			if (e->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
				continue;
			snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
			n = readlink(path, to, sizeof(to) - 1);
			to[n > 0 ? n : 0] = '\0';
			at += (size_t)snprintf(cmd + at, sizeof(cmd) - at, "%d=%s ", fd, to);
			if (at >= sizeof(cmd) - 1)
				break;
		}
		if (d)
			closedir(d);
		return reply(cmd, out, out_len);
	}
	if (sscanf(cmd, "exit %ld", &v) == 1)
		_exit((int)v);
	if (sscanf(cmd, "big %ld", &v) == 1) {
		*out = malloc((size_t)v);
		memset(*out, 'b', (size_t)v);
		*out_len = (size_t)v;
		return 0;
	}
	return -EINVAL;
}

/* ---- helpers ---- */

static struct shoal_pool_config conf(unsigned workers)
{
	struct shoal_pool_config c;

	memset(&c, 0, sizeof(c));
	c.workers = workers;
	c.fn = task_fn;
	c.check_ns = 5000000;
	c.grace_ns = 200000000;
	return c;
}

/* A fresh worker's private memory: limits in the tests are set above it,
 * so they hold under sanitizers too (an ASan process starts with a few
 * hundred MiB of its own). */
static uint64_t base;

static uint64_t worker_base(void);

/* Under ASan, a crash must stay a signal, as it is in production. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "handle_segv=0";
}

static struct shoal_pool *make(const struct shoal_pool_config *c)
{
	struct shoal_pool *p = NULL;
	struct shoal_pool_stats st[8];
	int rc = shoal_pool_create(c, &p);

	/* Until the first workers are forked, allocate nothing (Check's
	 * assertions do): under ASan, whose allocator has no fork handlers,
	 * a child forked while another thread is inside malloc can hang on
	 * its lock. glibc's malloc is fork-safe; see docs/pool.md. */
	for (int i = 0; rc == 0 && i < 5000; i++) {
		int n = shoal_pool_stats(p, st, 8), k = 0;

		while (k < n && k < 8 && st[k].pid > 0)
			k++;
		if (k == n || k == 8)
			break;
		usleep(200);
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(p);
	return p;
}

static uint64_t submit(struct shoal_pool *p, const char *cmd);
static struct shoal_pool_result one(struct shoal_pool *p);

static uint64_t worker_base(void)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct shoal_pool_stats st;
	struct shoal_pool_result r;

	submit(p, "echo x");
	r = one(p);
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_stats(p, &st, 1), 1);
	ck_assert_int_eq(shoal_memstat(st.pid, 0, &(struct shoal_memstat){ 0 }), 0);
	{
		struct shoal_memstat m;

		shoal_memstat(st.pid, 0, &m);
		base = m.private_bytes;
	}
	shoal_pool_destroy(p);
	return base;
}

static uint64_t submit(struct shoal_pool *p, const char *cmd)
{
	uint64_t id = 0;

	ck_assert_int_eq(shoal_pool_submit(p, cmd, strlen(cmd), &id), 0);
	ck_assert_uint_gt(id, 0);
	return id;
}

/* Wait for one result (10 s at most). */
static struct shoal_pool_result one(struct shoal_pool *p)
{
	struct shoal_pool_result r;
	struct shoal_pool_info info;
	int rc = shoal_pool_wait(p, 10000000000LL, &r, 1);

	if (rc != 1) {
		struct shoal_pool_stats st;

		shoal_pool_info(p, &info);
		shoal_pool_stats(p, &st, 1);
		ck_abort_msg("no result: %d; pending %llu running %llu spawn_error %d; pos 0: pid %d, "
			     "tasks %llu, trims %llu, recycles %llu/%llu/%llu",
			     rc, (unsigned long long)info.pending, (unsigned long long)info.running,
			     info.spawn_error, (int)st.pid, (unsigned long long)st.tasks,
			     (unsigned long long)st.trims, (unsigned long long)st.recycles[0],
			     (unsigned long long)st.recycles[1], (unsigned long long)st.recycles[4]);
	}
	return r;
}

/* Run @cmd alone and check its text result. */
static void run_expect(struct shoal_pool *p, const char *cmd, const char *want)
{
	uint64_t id = submit(p, cmd);
	struct shoal_pool_result r = one(p);

	ck_assert_uint_eq(r.id, id);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.len, strlen(want));
	ck_assert(memcmp(r.data, want, r.len) == 0);
	shoal_pool_result_free(&r);
}

/* A result's bytes as a C string (results are not NUL-terminated). */
static const char *text(const struct shoal_pool_result *r)
{
	static char buf[256];
	size_t n = r->len < sizeof(buf) - 1 ? r->len : sizeof(buf) - 1;

	memcpy(buf, r->data, n);
	buf[n] = '\0';
	return buf;
}

static void stats(struct shoal_pool *p, struct shoal_pool_stats *st, int n)
{
	ck_assert_int_eq(shoal_pool_stats(p, st, (size_t)n), n);
}

static uint64_t recycles(struct shoal_pool *p, int reason)
{
	struct shoal_pool_stats st[8];
	int n = shoal_pool_stats(p, st, 8);
	uint64_t sum = 0;

	for (int i = 0; i < n; i++)
		sum += st[i].recycles[reason];
	return sum;
}

/* Wait (5 s at most) until @reason recycles reach @want. */
static void wait_recycles(struct shoal_pool *p, int reason, uint64_t want)
{
	for (int i = 0; i < 5000 && recycles(p, reason) < want; i++)
		usleep(1000);
	ck_assert_uint_ge(recycles(p, reason), want);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1;
}

/* Children of ours that are zombies. */
static int count_zombies(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL) {
		char path[300], buf[512], *q;
		int ppid, fd;
		ssize_t len;
		char st;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		q = strrchr(buf, ')');
		if (q && sscanf(q + 2, "%c %d", &st, &ppid) == 2 && ppid == getpid() && st == 'Z')
			n++;
	}
	closedir(d);
	return n;
}

static int count_shm(const char *prefix)
{
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* ---- tests ---- */

START_TEST(runs_tasks)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p = make(&c);
	char seen[200] = { 0 };

	for (long i = 0; i < 200; i++) {
		char cmd[32];

		snprintf(cmd, sizeof(cmd), "sq %ld", i);
		ck_assert_uint_eq(submit(p, cmd), (uint64_t)i + 1);
	}
	for (int n = 0; n < 200; n++) {
		struct shoal_pool_result r = one(p);
		long i = (long)r.id - 1, got;

		ck_assert_int_eq(r.err, 0);
		ck_assert_uint_eq(r.attempts, 1);
		ck_assert(i >= 0 && i < 200 && !seen[i]);
		seen[i] = 1;
		ck_assert_int_eq(sscanf(text(&r), "%ld", &got), 1);
		ck_assert_int_eq(got, i * i);
		shoal_pool_result_free(&r);
	}
	/* A task's own error comes back as its result. */
	{
		uint64_t id = submit(p, "err");
		struct shoal_pool_result r = one(p);

		ck_assert_uint_eq(r.id, id);
		ck_assert_int_eq(r.err, -EDOM);
	}
	{
		struct shoal_pool_info info;
		struct shoal_pool_stats st[2];

		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		ck_assert_uint_eq(info.completed, 201);
		ck_assert_uint_eq(info.pending, 0);
		ck_assert_uint_eq(info.running, 0);
		ck_assert_uint_eq(info.lost, 0);
		stats(p, st, 2);
		ck_assert_uint_eq(st[0].tasks_total + st[1].tasks_total, 201);
		ck_assert_int_gt(st[0].pid, 0);
		ck_assert_int_gt(st[1].pid, 0);
		ck_assert_int_ne(st[0].pid, st[1].pid);
	}
	ck_assert_int_eq(shoal_pool_wait(p, 0, &(struct shoal_pool_result){ 0 }, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Many tasks in one call: consecutive ids, all or nothing. */
START_TEST(submit_many)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	const char data[] = "sq 1sq 2sq 3";
	size_t lens[3] = { 4, 4, 4 }, bad[2] = { SIZE_MAX, 2 };
	uint64_t first = 0;
	long sum = 0;

	c.inline_bytes = 64;
	p = make(&c);
	ck_assert_int_eq(shoal_pool_submit_many(p, data, lens, 3, &first), 0);
	ck_assert_uint_eq(first, 1);
	for (int i = 0; i < 3; i++) {
		struct shoal_pool_result r = one(p);
		long v;

		ck_assert(r.id >= first && r.id < first + 3);
		ck_assert_int_eq(sscanf(text(&r), "%ld", &v), 1);
		ck_assert_int_eq(v, (long)((r.id - first + 1) * (r.id - first + 1)));
		sum += v;
		shoal_pool_result_free(&r);
	}
	ck_assert_int_eq(sum, 1 + 4 + 9);
	ck_assert_int_eq(shoal_pool_submit_many(p, NULL, NULL, 0, &first), 0);
	ck_assert_uint_eq(first, 4);
	ck_assert_int_eq(shoal_pool_submit_many(p, data, bad, 2, &first), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit_many(p, data, NULL, 1, &first), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit_many(p, NULL, lens, 1, &first), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit_many(NULL, data, lens, 1, &first), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit_many(p, data, lens, 1, NULL), -EINVAL);
	/* Nothing was queued by the failed calls. */
	{
		struct shoal_pool_info info;

		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		ck_assert_uint_eq(info.pending + info.running, 0);
		ck_assert_uint_eq(info.completed, 3);
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A large task whose segment cannot be made fails the whole submission:
 * none is queued, and the segment made for an earlier large task of the
 * same call is removed. */
/* The voluntary context switches of process @pid so far (each is a
 * sleep: for a worker, a futex wait on its bell). */
static long voluntary_switches(pid_t pid)
{
	char path[64], line[256];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %ld", &v) == 1)
			break;
	fclose(f);
	ck_assert_int_ge(v, 0);
	return v;
}

/*
 * Many more workers than cores (at least 64, and 4 per core), tiny tasks:
 * every task's result comes back exactly once (a bit per id; the values
 * balance), and the workers sleep far less often than once per task. A
 * worker is rung once per supervisor pass that gave it tasks, after the
 * pass: rung per cell, each woke for its first cell, ran it before the
 * next was written, and slept again, about a wake-up per task.
 */
START_TEST(oversubscribed_runs_each_task_once)
{
	enum { N = 20000, BATCH = 1000 };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned workers = ncpu * 4 > 64 ? (unsigned)(ncpu * 4) : 64;
	struct shoal_pool_config c;
	struct shoal_pool *p;
	struct shoal_pool_stats *st;
	struct shoal_pool_info info;
	static unsigned char seen[N];
	static char data[BATCH * 16];
	static size_t lens[BATCH];
	struct shoal_pool_result r[256];
	long long sum = 0, want = 0;
	long sleeps = 0;
	uint64_t first = 0, base_id = 0;
	int got = 0, sent = 0, n;

	if (workers > SHOAL_POOL_WORKERS_MAX)
		workers = SHOAL_POOL_WORKERS_MAX;
	c = conf(workers);
	c.prefetch = 32;
	p = make(&c);
	memset(seen, 0, sizeof(seen));
	st = calloc(workers, sizeof(*st));
	ck_assert_ptr_nonnull(st);
	while (got < N) {
		/* A few batches ahead of the results, as a caller feeding it. */
		while (sent < N && sent - got < 4 * BATCH) {
			size_t off = 0;

			for (int i = 0; i < BATCH; i++) {
				int k = snprintf(data + off, 16, "sq %d", sent + i);

				lens[i] = (size_t)k;
				off += (size_t)k;
				want += (long long)(sent + i) * (sent + i);
			}
			ck_assert_int_eq(shoal_pool_submit_many(p, data, lens, BATCH, &first), 0);
			if (sent == 0)
				base_id = first;
			ck_assert_uint_eq(first, base_id + (uint64_t)sent);
			sent += BATCH;
		}
		n = shoal_pool_wait(p, 30000000000LL, r, 256);
		ck_assert_int_gt(n, 0);
		for (int i = 0; i < n; i++) {
			uint64_t k = r[i].id - base_id;
			long long v;

			ck_assert_int_eq(r[i].err, 0);
			ck_assert_uint_lt(k, N);
			ck_assert_msg(!seen[k], "task %llu came back twice", (unsigned long long)k);
			seen[k] = 1;
			ck_assert_int_eq(sscanf(text(&r[i]), "%lld", &v), 1);
			ck_assert_int_eq(v, (long long)k * (long long)k);
			sum += v;
			shoal_pool_result_free(&r[i]);
		}
		got += n;
	}
	ck_assert_int_eq(got, N);
	ck_assert(sum == want);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.completed, N);
	ck_assert_uint_eq(info.pending, 0);
	ck_assert_uint_eq(info.running, 0);
	ck_assert_uint_eq(info.lost, 0);
	ck_assert_int_eq(shoal_pool_stats(p, st, workers), (int)workers);
	for (unsigned i = 0; i < workers; i++) {
		ck_assert_int_gt(st[i].pid, 0);
		sleeps += voluntary_switches(st[i].pid);
	}
	/* Rung per cell: a sleep per task (0.95 to 1 measured); once per
	 * pass: about a tenth. */
	ck_assert_msg(sleeps < N / 2, "%u workers slept %ld times for %d tasks", workers, sleeps, N);
	free(st);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(submit_many_spill_fails)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_segment *taken;
	struct shoal_pool_info info;
	char name[200], pfx[200], data[3 * 300];
	size_t lens[3] = { 300, 300, 300 };
	uint64_t first = 0;

	c.inline_bytes = 64;
	p = make(&c);
	memset(data, 'x', sizeof(data));
	/* Ids start at 1: the third task would be id 3. */
	snprintf(name, sizeof(name), "%s.a3", shoal_pool_name(p));
	ck_assert_int_eq(shoal_segment_create(name, 16, NULL, &taken), 0);
	ck_assert_int_eq(shoal_pool_submit_many(p, data, lens, 3, &first), -EEXIST);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.pending + info.running + info.completed, 0);
	snprintf(pfx, sizeof(pfx), "shoal.%s.a", shoal_pool_name(p));
	ck_assert_int_eq(count_shm(pfx), 1); /* the one taken, only */
	shoal_segment_close(taken);
	ck_assert_int_eq(shoal_unlink(name), 0);
	/* The ids were not used: the next call gets them. */
	ck_assert_int_eq(shoal_pool_submit_many(p, data, lens, 3, &first), 0);
	ck_assert_uint_eq(first, 1);
	for (int i = 0; i < 3; i++) {
		struct shoal_pool_result r = one(p);

		ck_assert_int_eq(r.err, 0);
		ck_assert_str_eq(text(&r), "300:36000"); /* 300 'x' */
		shoal_pool_result_free(&r);
	}
	ck_assert_int_eq(count_shm(pfx), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

#if !defined(__SANITIZE_ADDRESS__)
/*
 * Out of memory while copying a submission's tasks: -ENOMEM, nothing queued,
 * what was copied freed, the ids left for the next call. The address space
 * is capped for the one call; ASan's allocator lives in a reservation made
 * at start-up, which such a cap does not reach, so this runs without it.
 */
START_TEST(submit_many_out_of_memory)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_info info;
	struct shoal_pool_result r;
	struct rlimit saved, capped;
	size_t n = 512, len = MiB, *lens = malloc(n * sizeof(*lens));
	unsigned long pages = 0;
	uint64_t first = 0;
	char *data;
	FILE *f;
	int rc;

	c.inline_bytes = MiB;
	p = make(&c);
	for (size_t i = 0; i < n; i++)
		lens[i] = len;
	/* 512 MiB of tasks, never touched here (the zero page is read). */
	data = mmap(NULL, n * len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ck_assert_ptr_ne(data, MAP_FAILED);
	f = fopen("/proc/self/statm", "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	getrlimit(RLIMIT_AS, &saved);
	capped = saved;
	capped.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + 64 * MiB;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &capped), 0);
	rc = shoal_pool_submit_many(p, data, lens, n, &first);
	setrlimit(RLIMIT_AS, &saved);
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.pending + info.running + info.completed, 0);
	/* The ids were not used, and the pool goes on. */
	ck_assert_int_eq(shoal_pool_submit(p, "sq 12", 5, &first), 0);
	ck_assert_uint_eq(first, 1);
	r = one(p);
	ck_assert_int_eq(r.err, 0);
	ck_assert_str_eq(text(&r), "144");
	shoal_pool_result_free(&r);
	munmap(data, n * len);
	free(lens);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST
#endif

START_TEST(large_tasks_and_results)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	size_t n = 3 * MiB;
	unsigned char *big = malloc(n);
	unsigned long sum = 0;
	char want[64];
	struct shoal_pool_result r;

	c.inline_bytes = 1024;
	p = make(&c);
	for (size_t i = 0; i < n; i++) {
		big[i] = (unsigned char)(i * 7);
		sum += big[i];
	}
	snprintf(want, sizeof(want), "%zu:%lu", n, sum);
	ck_assert_int_eq(shoal_pool_submit(p, big, n, &(uint64_t){ 0 }), 0);
	r = one(p);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.len, strlen(want));
	ck_assert(memcmp(r.data, want, r.len) == 0);
	shoal_pool_result_free(&r);

	submit(p, "big 2000000");
	r = one(p);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.len, 2000000);
	for (size_t i = 0; i < r.len; i++)
		ck_assert_int_eq(((char *)r.data)[i], 'b');
	shoal_pool_result_free(&r);
	/* Exactly at the inline size stays inline; the board alone is left. */
	submit(p, "big 1024");
	r = one(p);
	ck_assert_uint_eq(r.len, 1024);
	shoal_pool_result_free(&r);
	{
		char pfx[200];

		snprintf(pfx, sizeof(pfx), "shoal.%s", shoal_pool_name(p));
		ck_assert_int_eq(count_shm(pfx), 1);
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	free(big);
}
END_TEST

START_TEST(max_tasks_recycles)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	struct shoal_pool_stats st[2];

	c.max_tasks = 10;
	c.max_tasks_jitter = 50;
	p = make(&c);
	for (int i = 0; i < 100; i++)
		submit(p, "echo x");
	for (int i = 0; i < 100; i++) {
		struct shoal_pool_result r = one(p);

		ck_assert_int_eq(r.err, 0);
		shoal_pool_result_free(&r);
	}
	/* 100 tasks, at most 10 per worker: at least 8 recycles, and with
	 * jitter limits of 5..10, at most 18 (+2 in flight). */
	wait_recycles(p, SHOAL_POOL_TASKS, 8);
	ck_assert_uint_le(recycles(p, SHOAL_POOL_TASKS), 20);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 0);
	stats(p, st, 2);
	ck_assert_int_eq(st[0].last_reason, SHOAL_POOL_TASKS);
	ck_assert_uint_le(st[0].tasks, 10);
	run_expect(p, "echo still", "still");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(max_age_recycles)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;

	c.max_age_ns = 60000000; /* 60 ms */
	p = make(&c);
	for (int i = 0; i < 10; i++)
		run_expect(p, "sleep 20", "slept");
	wait_recycles(p, SHOAL_POOL_AGE, 2);
	run_expect(p, "echo ok", "ok");
	/* Idle workers age too. */
	{
		uint64_t before = recycles(p, SHOAL_POOL_AGE);

		usleep(200000);
		ck_assert_uint_gt(recycles(p, SHOAL_POOL_AGE), before);
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Over the soft limit with memory the heap only holds: a trim gives it
 * back, and the worker stays. */
START_TEST(soft_limit_trims_first)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_stats st;
	pid_t pid;

	worker_base();
	c.max_private = (base + 40 * MiB);
	p = make(&c);
	run_expect(p, "echo hi", "hi");
	stats(p, &st, 1);
	pid = st.pid;
	run_expect(p, "frag 100", "fragged");
	for (int i = 0; i < 3000; i++) {
		stats(p, &st, 1);
		if (st.trims > 0 && st.private_now < (base + 40 * MiB))
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.trims, 1);
	ck_assert_uint_gt(st.private_peak, (base + 40 * MiB));
#if defined(__SANITIZE_ADDRESS__)
	/* ASan's allocator keeps freed blocks in its quarantine, out of
	 * malloc_trim's reach: the trim happens, does not help, and the
	 * worker is recycled, after the trim and only then. */
	(void)pid;
	wait_recycles(p, SHOAL_POOL_MEMORY, 1);
	stats(p, &st, 1);
	ck_assert_uint_eq(st.trims, 1);
	run_expect(p, "echo again", "again");
#else
	ck_assert_uint_lt(st.private_now, (base + 40 * MiB));
	run_expect(p, "echo again", "again");
	stats(p, &st, 1);
	ck_assert_int_eq(st.pid, pid);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_MEMORY), 0);
#endif
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Over the soft limit with memory still in use: trimmed, still over,
 * recycled; and the memory really returns with the old worker. */
START_TEST(soft_limit_recycles_and_memory_returns)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_stats st;
	struct shoal_memstat m;
	pid_t old;

	worker_base();
	c.max_private = (base + 40 * MiB);
	p = make(&c);
	run_expect(p, "echo hi", "hi");
	stats(p, &st, 1);
	old = st.pid;
	run_expect(p, "leak 100", "leaked");
	wait_recycles(p, SHOAL_POOL_MEMORY, 1);
	stats(p, &st, 1);
	ck_assert_uint_eq(st.trims, 1);
	ck_assert_int_eq(st.last_reason, SHOAL_POOL_MEMORY);
	ck_assert_uint_ge(st.private_peak, (base + 100 * MiB));
	run_expect(p, "echo new", "new");
	stats(p, &st, 1);
	ck_assert_int_ne(st.pid, old);
	/* The pool's private memory is back to a fresh worker's. */
	ck_assert_int_eq(shoal_memstat(st.pid, 0, &m), 0);
	ck_assert_uint_lt(m.private_bytes, (base + 20 * MiB));
	ck_assert_int_eq(shoal_memstat(old, 0, &m), -ESRCH);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* With tasks prefetched, the soft limit still stops a worker between
 * tasks: what it was handed and had not started goes to another. */
START_TEST(soft_limit_takes_back_prefetched)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_stats st;

	worker_base();
	c.max_private = (base + 50 * MiB);
	c.prefetch = 4;
	p = make(&c);
	for (int i = 0; i < 12; i++)
		submit(p, "leak 30");
	for (int i = 0; i < 12; i++) {
		struct shoal_pool_result r = one(p);

		ck_assert_int_eq(r.err, 0);
		ck_assert_uint_eq(r.attempts, 1);
		shoal_pool_result_free(&r);
	}
	stats(p, &st, 1);
	/* Over the limit after its second task, at most one more had
	 * started: never four tasks' worth. */
	ck_assert_uint_lt(st.private_peak, (base + 100 * MiB));
	ck_assert_uint_ge(recycles(p, SHOAL_POOL_MEMORY), 3);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A worker that only reads a big shared segment is not over any limit. */
START_TEST(shared_reader_not_recycled)
{
	const char *name = t_name("big");
	struct shoal_pool_config c = conf(2);
	struct shoal_segment *s;
	struct shoal_pool *p;
	struct shoal_pool_stats st[2];
	char cmd[128];

	worker_base();
	ck_assert_int_eq(shoal_segment_create(name, 256 * MiB, NULL, &s), 0);
	memset(shoal_segment_data(s), 0, 256 * MiB);
	c.max_private = (base + 32 * MiB);
	c.hard_private = (base + 64 * MiB);
	p = make(&c);
	snprintf(cmd, sizeof(cmd), "read %s", name);
	for (int i = 0; i < 8; i++)
		run_expect(p, cmd, "0");
	stats(p, st, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(st[i].trims, 0);
		for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
			ck_assert_uint_eq(st[i].recycles[r], 0);
		ck_assert_uint_lt(st[i].private_peak, (base + 32 * MiB));
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	shoal_segment_close(s);
	ck_assert_int_eq(shoal_unlink(name), 0);
}
END_TEST

START_TEST(hard_limit_kills_and_reruns)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_result r;
	uint64_t id;

	worker_base();
	c.hard_private = (base + 60 * MiB);
	c.max_attempts = 2;
	c.check_ns = 2000000;
	p = make(&c);
	run_expect(p, "echo hi", "hi");
	id = submit(p, "grow 200");
	r = one(p);
	ck_assert_uint_eq(r.id, id);
	ck_assert_int_eq(r.err, -SHOAL_EWORKERLOST);
	ck_assert_int_eq(r.signal, SIGTERM);
	ck_assert_uint_eq(r.hard_limit, 1);
	ck_assert_uint_eq(r.attempts, 2);
	ck_assert_uint_ge(r.last_private, (base + 60 * MiB));
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_HARD), 2);
	/* A task under the limit still runs on the replacement. */
	run_expect(p, "grow 10", "grew");
	{
		struct shoal_pool_info info;

		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		ck_assert_uint_eq(info.lost, 1);
		/* The limit is above a fresh worker: none to report. */
		ck_assert_int_eq(info.config_reason, -1);
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(startup_over_limit_is_config_reason)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	struct shoal_pool_info info;
	struct shoal_pool_stats st[2];

	c.max_private = 4096; /* below any live process */
	p = make(&c);
	for (int i = 0; i < 20; i++)
		run_expect(p, "echo x", "x");
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_int_eq(info.config_reason, SHOAL_POOL_MEMORY);
	ck_assert_uint_gt(info.config_private, 4096);
	stats(p, st, 2);
	/* No restart loop: nobody recycled, nobody trimmed. */
	for (int i = 0; i < 2; i++) {
		ck_assert_uint_eq(st[i].recycles[SHOAL_POOL_MEMORY], 0);
		ck_assert_uint_eq(st[i].trims, 0);
	}
	ck_assert_uint_eq(st[0].tasks_total + st[1].tasks_total, 20);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* The worker SIGKILLs itself in the middle of the task, once: the task
 * runs again and its result is right. */
START_TEST(killed_mid_task_reruns)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p = make(&c);
	char path[64], cmd[128];
	struct shoal_pool_result r;
	uint64_t id;

	snprintf(path, sizeof(path), "/tmp/shoal-once.%d", (int)getpid());
	unlink(path);
	snprintf(cmd, sizeof(cmd), "once %s right", path);
	id = submit(p, cmd);
	r = one(p);
	ck_assert_uint_eq(r.id, id);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.attempts, 2);
	ck_assert_uint_eq(r.len, 5);
	ck_assert(memcmp(r.data, "right", 5) == 0);
	shoal_pool_result_free(&r);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 1);
	unlink(path);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Killed from outside while the task sleeps. */
START_TEST(killed_from_outside_reruns)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct shoal_pool_stats st;
	struct shoal_pool_result r;
	struct shoal_pool_info info;

	run_expect(p, "echo up", "up");
	stats(p, &st, 1);
	submit(p, "sleep 300");
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		if (info.running)
			break;
		usleep(1000);
	}
	usleep(50000);
	ck_assert_int_eq(kill(st.pid, SIGKILL), 0);
	r = one(p);
	ck_assert_int_eq(r.err, 0);
	ck_assert_uint_eq(r.attempts, 2);
	shoal_pool_result_free(&r);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 1);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(always_crashes_is_lost)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	struct shoal_pool_result r;
	uint64_t id;

	c.max_attempts = 3;
	p = make(&c);
	id = submit(p, "segv");
	for (int i = 0; i < 10; i++)
		submit(p, "echo fine");
	for (int i = 0; i < 11; i++) {
		r = one(p);
		if (r.id == id) {
			ck_assert_int_eq(r.err, -SHOAL_EWORKERLOST);
			ck_assert_int_eq(r.signal, SIGSEGV);
			ck_assert_uint_eq(r.exit_code, 0);
			ck_assert_uint_eq(r.hard_limit, 0);
			ck_assert_uint_eq(r.attempts, 3);
			ck_assert_uint_gt(r.last_private, 0);
		} else {
			ck_assert_int_eq(r.err, 0);
			ck_assert_uint_eq(r.len, 4);
		}
		shoal_pool_result_free(&r);
	}
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 3);
	/* Healthy afterwards. */
	for (int i = 0; i < 10; i++)
		run_expect(p, "sq 12", "144");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* 1000 recycles in a row: fds, /dev/shm entries and zombies stay flat. */
START_TEST(thousand_recycles_flat)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	int fds0, fds1, shm0, shm1, fds_mid = 0, shm_mid = 0;
	int n = 1000;

	char pfx[200];

	c.max_tasks = 1;
	fds0 = count_fds();
	p = make(&c);
	snprintf(pfx, sizeof(pfx), "shoal.%s", shoal_pool_name(p));
	shm0 = count_shm(pfx);
	for (int i = 0; i < n; i++) {
		char cmd[32];

		snprintf(cmd, sizeof(cmd), "sq %d", i);
		submit(p, cmd);
	}
	for (int i = 0; i < n; i++) {
		struct shoal_pool_result r = one(p);

		ck_assert_int_eq(r.err, 0);
		shoal_pool_result_free(&r);
		if (i == 100) {
			/* Midway, as many fds and objects as at the end. */
			fds_mid = count_fds();
			shm_mid = count_shm(pfx);
		}
	}
	wait_recycles(p, SHOAL_POOL_TASKS, 1000);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 0);
	fds1 = count_fds();
	shm1 = count_shm(pfx);
	/* The pool's own: an eventfd, the fork server's socket and one pidfd
	 * per live worker (at most one per seat, 2 * workers + 2); its
	 * objects: the board alone. A thousand recycles add nothing to that. */
	ck_assert_int_le(fds1 - fds0, 2 + 6);
	ck_assert_int_le(abs(fds1 - fds_mid), 6);
	ck_assert_int_eq(shm0, 1);
	ck_assert_int_eq(shm_mid, 1);
	ck_assert_int_eq(shm1, 1);
	ck_assert_int_le(count_zombies(), 6);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_fds(), fds0);
	ck_assert_int_eq(count_shm(pfx), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

START_TEST(destroy_with_pending)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p = make(&c);
	uint64_t t0;
	int fds0 = count_fds();

	for (int i = 0; i < 100; i++)
		submit(p, "sleep 50");
	usleep(20000);
	t0 = shoal__now_ns();
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	/* Running tasks finish (<= 50 ms), the rest are dropped. */
	ck_assert_uint_lt(shoal__now_ns() - t0, 1000000000u);
	ck_assert_int_le(count_fds(), fds0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

START_TEST(cancel)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_info info;
	uint64_t a, b, d;
	struct shoal_pool_result r;

	c.prefetch = 1;
	p = make(&c);
	a = submit(p, "sleep 1000");
	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		if (info.running)
			break;
		usleep(1000);
	}
	/* "running" counts a task handed to the worker, which cancel takes
	 * back until the worker claims it: give the claim time. */
	usleep(300000);
	b = submit(p, "echo b");
	d = submit(p, "echo d");
	ck_assert_int_eq(shoal_pool_cancel(p, a), -EBUSY);
	ck_assert_int_eq(shoal_pool_cancel(p, b), 0);
	ck_assert_int_eq(shoal_pool_cancel(p, b), -ENOENT);
	ck_assert_int_eq(shoal_pool_cancel(p, 9999), -ENOENT);
	ck_assert_int_eq(shoal_pool_cancel(NULL, 1), -EINVAL);
	r = one(p);
	ck_assert_uint_eq(r.id, a);
	shoal_pool_result_free(&r);
	r = one(p);
	ck_assert_uint_eq(r.id, d);
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_wait(p, 50000000, &r, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A task a worker was handed ahead of time (in its cells, behind a running
 * one) is cancelled in place: the cells after it go back and still run, in
 * order; the running one cannot be. */
START_TEST(cancel_prefetched)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_info info;
	struct shoal_pool_result r;
	uint64_t a, id[5];
	const char *want[] = { "b", "d" };

	c.prefetch = 8;
	p = make(&c);
	a = submit(p, "sleep 1000");
	id[0] = submit(p, "echo b");
	id[1] = submit(p, "echo c");
	id[2] = submit(p, "echo d");
	id[3] = submit(p, "echo e");
	/* All in the worker's cells, the first one started. */
	for (int i = 0; i < 2000; i++) {
		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		if (info.running == 5 && info.pending == 0)
			break;
		usleep(1000);
	}
	ck_assert_uint_eq(info.running, 5);
	ck_assert_uint_eq(info.pending, 0);
	usleep(300000); /* the first one claimed, as in cancel */
	ck_assert_int_eq(shoal_pool_cancel(p, id[1]), 0);  /* c, in the middle */
	ck_assert_int_eq(shoal_pool_cancel(p, id[3]), 0);  /* e, the newest */
	ck_assert_int_eq(shoal_pool_cancel(p, id[1]), -ENOENT);
	ck_assert_int_eq(shoal_pool_cancel(p, a), -EBUSY);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.running + info.pending, 3);
	r = one(p);
	ck_assert_uint_eq(r.id, a);
	ck_assert_str_eq(text(&r), "slept");
	shoal_pool_result_free(&r);
	for (int i = 0; i < 2; i++) {
		r = one(p);
		ck_assert_uint_eq(r.id, id[2 * i]);
		ck_assert_str_eq(text(&r), want[i]);
		shoal_pool_result_free(&r);
	}
	ck_assert_int_eq(shoal_pool_wait(p, 100000000, &r, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.running + info.pending, 0);
	ck_assert_uint_eq(info.completed, 3);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Until @n tasks are handed to workers (prefetched ones included), 2 s at
 * most. */
static void wait_running(struct shoal_pool *p, uint64_t n)
{
	struct shoal_pool_info info;

	for (int i = 0; i < 2000; i++) {
		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		if (info.running == n)
			return;
		usleep(1000);
	}
}

/*
 * A range, under one hold of the lock: a running task stays (its result
 * comes), done ones and ids outside the range are untouched, prefetched
 * ones and the backlog's go; the cells after a taken-back one that are
 * outside the range go back and still run. Then a range of 100,000 in the
 * backlog goes in one call.
 */
START_TEST(cancel_range)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_info info;
	struct shoal_pool_result r;
	uint64_t done, a, id[8], first;
	uint8_t got[8];
	static char many[100000 * 5];
	static size_t lens[100000];

	c.prefetch = 4;
	p = make(&c);
	done = submit(p, "echo done");
	r = one(p);
	ck_assert_uint_eq(r.id, done);
	shoal_pool_result_free(&r);
	a = submit(p, "sleep 1000");
	for (int i = 0; i < 8; i++) {
		char cmd[16];

		snprintf(cmd, sizeof(cmd), "echo %d", i);
		id[i] = submit(p, cmd);
	}
	/* a and id[0..2] in the cells (a started), id[3..7] in the backlog. */
	wait_running(p, 4);
	usleep(300000); /* a claimed, as in cancel */
	ck_assert_uint_eq(id[0], a + 1);
	/* done, a, id[0..5]: id[6], id[7] stay; so does a (started). */
	ck_assert_int_eq(shoal_pool_cancel_range(p, done, id[5] - done + 1, NULL), 6);
	ck_assert_int_eq(shoal_pool_cancel_range(p, id[0], 6, got), 0); /* gone before */
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(got[i], 0);
	ck_assert_int_eq(shoal_pool_cancel(p, id[7]), 0);
	ck_assert_int_eq(shoal_pool_cancel_range(p, id[7], 100, NULL), 0);
	r = one(p);
	ck_assert_uint_eq(r.id, a);
	shoal_pool_result_free(&r);
	r = one(p);
	ck_assert_uint_eq(r.id, id[6]);
	ck_assert_str_eq(text(&r), "6");
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_wait(p, 100000000, &r, 1), -ETIMEDOUT);
	/* The bytes say which: a range over the backlog, every other one
	 * cancelled before. */
	for (int i = 0; i < 8; i++) {
		char cmd[16];

		snprintf(cmd, sizeof(cmd), "sleep %d", i ? 0 : 500);
		id[i] = submit(p, cmd);
	}
	wait_running(p, 4);
	usleep(200000);
	ck_assert_int_eq(shoal_pool_cancel(p, id[2]), 0);
	ck_assert_int_eq(shoal_pool_cancel(p, id[5]), 0);
	ck_assert_int_eq(shoal_pool_cancel_range(p, id[0], 8, got), 5);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(got[i], i != 0 && i != 2 && i != 5);
	r = one(p);
	ck_assert_uint_eq(r.id, id[0]);
	shoal_pool_result_free(&r);
	/* 100,000 in the backlog, behind a running task. */
	a = submit(p, "sleep 300");
	for (int i = 0; i < 100000; i++) {
		memcpy(many + 5 * i, "sq 1 ", 5);
		lens[i] = 5;
	}
	ck_assert_int_eq(shoal_pool_submit_many(p, many, lens, 100000, &first), 0);
	wait_running(p, 4); /* three of them in the cells */
	ck_assert_int_eq(shoal_pool_cancel_range(p, first, 100000, NULL), 100000);
	r = one(p);
	ck_assert_uint_eq(r.id, a);
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_wait(p, 50000000, &r, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_uint_eq(info.running + info.pending, 0);
	/* Errors. */
	ck_assert_int_eq(shoal_pool_cancel_range(NULL, 1, 1, NULL), -EINVAL);
	ck_assert_int_eq(shoal_pool_cancel_range(p, UINT64_MAX, 2, NULL), -EINVAL);
	ck_assert_int_eq(shoal_pool_cancel_range(p, 0, (uint64_t)INT64_MAX + 1, NULL), -EINVAL);
	ck_assert_int_eq(shoal_pool_cancel_range(p, 1, 0, NULL), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A worker that exits (no signal) in the task: the result says its exit
 * status, and that no memory limit was the cause. */
START_TEST(lost_worker_exit_code)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_result r;
	uint64_t id;

	c.max_attempts = 2;
	p = make(&c);
	id = submit(p, "exit 7");
	r = one(p);
	ck_assert_uint_eq(r.id, id);
	ck_assert_int_eq(r.err, -SHOAL_EWORKERLOST);
	ck_assert_int_eq(r.signal, 0);
	ck_assert_uint_eq(r.exit_code, 7);
	ck_assert_uint_eq(r.hard_limit, 0);
	ck_assert_uint_eq(r.attempts, 2);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 2);
	run_expect(p, "sq 3", "9");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Wait (10 s at most) until task @id is in @state. */
static void wait_state(struct shoal_pool *p, uint64_t id, int state)
{
	for (int i = 0; i < 10000 && shoal_pool_task_state(p, id) != state; i++)
		usleep(1000);
	ck_assert_int_eq(shoal_pool_task_state(p, id), state);
}

/* A task's state through its life: pending, assigned (prefetched),
 * running, done until taken, then unknown; a cancelled one unknown. */
START_TEST(task_state)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_result r;
	uint64_t a, b, d;

	c.prefetch = 2;
	p = make(&c);
	a = submit(p, "sleep 300");
	wait_state(p, a, SHOAL_POOL_TASK_RUNNING);
	b = submit(p, "echo b");
	d = submit(p, "echo d");
	wait_state(p, b, SHOAL_POOL_TASK_ASSIGNED);
	/* The worker's two cells are full: d waits in the backlog. */
	ck_assert_int_eq(shoal_pool_task_state(p, d), SHOAL_POOL_TASK_PENDING);
	ck_assert_int_eq(shoal_pool_cancel(p, d), 0);
	ck_assert_int_eq(shoal_pool_task_state(p, d), -ENOENT);
	ck_assert_int_eq(shoal_pool_task_state(p, 9999), -ENOENT);
	ck_assert_int_eq(shoal_pool_task_state(NULL, a), -EINVAL);
	/* Nobody takes results here: they wait, done, in the pool. */
	wait_state(p, a, SHOAL_POOL_TASK_DONE);
	wait_state(p, b, SHOAL_POOL_TASK_DONE);
	r = one(p);
	ck_assert_uint_eq(r.id, a);
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_task_state(p, a), -ENOENT);
	r = one(p);
	ck_assert_uint_eq(r.id, b);
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_task_state(p, b), -ENOENT);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(errors)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = NULL;
	struct shoal_pool_worker *w = NULL;
	struct shoal_pool_result r;
	struct shoal_pool_task t;

/* -EINVAL, and the detail names the rule. */
#define BAD_CONFIG(cfg, out, rule)                                                     \
	do {                                                                           \
		ck_assert_int_eq(shoal_pool_create(cfg, out), -EINVAL);                \
		ck_assert_msg(strstr(shoal_errdetail(-EINVAL), rule), "detail '%s'", \
			      shoal_errdetail(-EINVAL));                               \
	} while (0)
	BAD_CONFIG(NULL, &p, "the config is NULL");
	BAD_CONFIG(&c, NULL, "out is NULL");
	c.workers = 0;
	BAD_CONFIG(&c, &p, "workers 0 must be in 1..256");
	c.workers = 257;
	BAD_CONFIG(&c, &p, "workers 257 must be in 1..256");
	c = conf(1);
	c.fn = NULL;
	BAD_CONFIG(&c, &p, "neither fn nor a spawn hook");
	c = conf(1);
	c.spawn = (shoal_pool_spawn_fn)1; /* a spawn hook without a join hook */
	BAD_CONFIG(&c, &p, "a spawn hook needs a join hook");
	c = conf(1);
	c.max_tasks_jitter = 101;
	BAD_CONFIG(&c, &p, "max_tasks_jitter 101 must be a percentage");
	c = conf(1);
	c.prefetch = 257;
	BAD_CONFIG(&c, &p, "prefetch 257 must be at most 256");
	c = conf(1);
	c.inline_bytes = (64u << 20) + 1;
	BAD_CONFIG(&c, &p, "inline_bytes 67108865 must be at most 67108864");
#undef BAD_CONFIG
	c = conf(1);
	c.name = "a/b";
	ck_assert_int_eq(shoal_pool_create(&c, &p), -EINVAL);
	ck_assert_ptr_null(p);

	c = conf(1);
	c.name = t_name("pool");
	p = make(&c);
	ck_assert_str_eq(shoal_pool_name(p), c.name);
	{
		struct shoal_pool *q = NULL;

		ck_assert_int_eq(shoal_pool_create(&c, &q), -EEXIST);
	}
	ck_assert_int_eq(shoal_pool_submit(NULL, "x", 1, &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit(p, NULL, 1, &(uint64_t){ 0 }), -EINVAL);
	ck_assert_int_eq(shoal_pool_submit(p, "x", 1, NULL), -EINVAL);
	ck_assert_int_eq(shoal_pool_wait(p, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(shoal_pool_wait(p, 0, &r, 0), -EINVAL);
	ck_assert_int_eq(shoal_pool_stats(NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_pool_stats(p, NULL, 0), 1);
	ck_assert_int_eq(shoal_pool_info(p, NULL), -EINVAL);
	/* Worker side: wrong generation, wrong seat, no such board. */
	ck_assert_int_eq(shoal_pool_worker_open(c.name, 0, 12345, &w), -ESTALE);
	ck_assert_int_eq(shoal_pool_worker_open(c.name, 99, 1, &w), -EINVAL);
	ck_assert_int_eq(shoal_pool_worker_open(t_name("none"), 0, 1, &w), -ENOENT);
	ck_assert_int_eq(shoal_pool_worker_open(NULL, 0, 1, &w), -EINVAL);
	ck_assert_int_eq(shoal_pool_worker_next(NULL, 0, &t), -EINVAL);
	ck_assert_int_eq(shoal_pool_worker_done(NULL, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_pool_worker_trimmed(NULL), -EINVAL);
	ck_assert_ptr_null(w);
	/* A segment of another kind is refused as a board. */
	{
		const char *n = t_name("seg");
		struct shoal_segment *s;

		ck_assert_int_eq(shoal_segment_create(n, 4096, NULL, &s), 0);
		ck_assert_int_eq(shoal_pool_worker_open(n, 0, 1, &w), -EPROTOTYPE);
		shoal_segment_close(s);
		shoal_unlink(n);
	}
	run_expect(p, "echo fine", "fine");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(shoal_pool_destroy(NULL), 0);
}
END_TEST

/* A spawn hook whose workers die before they are ready: the pool says so
 * (-ECHILD) instead of restarting them for ever. */
static pid_t bad_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid = fork();

	(void)arg;
	(void)board;
	(void)seat;
	(void)gen;
	if (pid == 0)
		_exit(3);
	return pid;
}

static int join_pid(void *arg, pid_t pid)
{
	int st;

	(void)arg;
	return waitpid(pid, &st, 0) == pid ? st : -errno;
}

/* A pool whose workers cannot start: either a task is queued and then
 * fails, or the pool already knows by the time it is submitted; later
 * submits are refused. */
static void expect_broken(struct shoal_pool *p)
{
	struct shoal_pool_result r;

	if (shoal_pool_submit(p, "echo x", 6, &(uint64_t){ 0 }) == 0) {
		r = one(p);
		ck_assert_int_eq(r.err, -ECHILD);
		free(r.data);
	}
	ck_assert_int_eq(shoal_pool_submit(p, "x", 1, &(uint64_t){ 0 }), -ECHILD);
	ck_assert_int_eq(shoal_pool_submit_many(p, "x", &(size_t){ 1 }, 1, &(uint64_t){ 0 }), -ECHILD);
}

/* A spawn hook that starts the pool's first workers and refuses the
 * others until the test opens the gate: a dead worker's tasks then wait
 * in the backlog. */
static atomic_int spawn_gate, spawns, spawns_free;

static pid_t gated_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	struct shoal_pool_worker *w;
	pid_t pid;

	(void)arg;
	if (atomic_fetch_add(&spawns, 1) >= atomic_load(&spawns_free) && !atomic_load(&spawn_gate))
		return -EAGAIN;
	pid = fork();
	if (pid == 0) {
		if (shoal_pool_worker_open(board, seat, gen, &w) != 0)
			_exit(2);
		shoal_pool_worker_run(w, task_fn, NULL);
		shoal_pool_worker_close(w);
		_exit(0);
	}
	return pid;
}

static void wait_pending(struct shoal_pool *p, uint64_t n)
{
	struct shoal_pool_info info;

	for (int i = 0; i < 2000; i++) {
		ck_assert_int_eq(shoal_pool_info(p, &info), 0);
		if (info.pending == n)
			return;
		usleep(500);
	}
	ck_abort_msg("pending %llu, not %llu", (unsigned long long)info.pending,
		     (unsigned long long)n);
}

/* A dead worker's tasks go back to the head of the backlog. Two deaths put
 * the second worker's tasks ahead of the first's: ids no longer ascend
 * there. Cancel finds every one all the same (its walk stops at a larger
 * id only in the part of the backlog where ids ascend). */
START_TEST(cancel_tasks_put_back_by_deaths)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool_stats st[2];
	struct shoal_pool_result r;
	struct shoal_pool *p;
	uint64_t id[4], f;

	atomic_store(&spawn_gate, 0);
	atomic_store(&spawns, 0);
	atomic_store(&spawns_free, 2);
	c.spawn = gated_spawn;
	c.join = join_pid;
	c.prefetch = 2;
	p = make(&c);
	id[0] = submit(p, "sleep 5000");
	id[1] = submit(p, "sleep 5000");
	usleep(100000); /* each worker inside one */
	id[2] = submit(p, "echo c");
	id[3] = submit(p, "echo d");
	wait_pending(p, 0);
	ck_assert_int_eq(shoal_pool_stats(p, st, 2), 2);
	ck_assert_int_eq(kill(st[1].pid, SIGKILL), 0);
	wait_pending(p, 2);
	ck_assert_int_eq(kill(st[0].pid, SIGKILL), 0);
	wait_pending(p, 4);
	f = submit(p, "echo f");
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(shoal_pool_cancel(p, id[i]), 0);
	ck_assert_int_eq(shoal_pool_cancel(p, id[1]), -ENOENT);
	wait_pending(p, 1);
	atomic_store(&spawn_gate, 1);
	r = one(p);
	ck_assert_uint_eq(r.id, f);
	ck_assert_str_eq(text(&r), "f");
	shoal_pool_result_free(&r);
	ck_assert_int_eq(shoal_pool_wait(p, 50000000, &r, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

START_TEST(workers_that_never_start)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_info info;

	c.spawn = bad_spawn;
	c.join = join_pid;
	p = make(&c);
	expect_broken(p);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_int_eq(count_zombies(), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A spawn hook that always fails (fork refused, say): the pool breaks
 * instead of leaving its tasks waiting for a worker that never comes. */
static pid_t failing_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	(void)arg;
	(void)board;
	(void)seat;
	(void)gen;
	return -EAGAIN;
}

START_TEST(spawn_that_always_fails_breaks_the_pool)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	struct shoal_pool_info info;

	c.spawn = failing_spawn;
	c.join = join_pid;
	ck_assert_int_eq(shoal_pool_create(&c, &p), 0);
	expect_broken(p);
	ck_assert_int_eq(shoal_pool_info(p, &info), 0);
	ck_assert_int_eq(info.spawn_error, -EAGAIN);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A host-started worker: the spawn hook forks and runs the worker API by
 * hand, as the Python binding does. */
static pid_t hand_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid = fork();

	(void)arg;
	if (pid == 0) {
		struct shoal_pool_worker *w;
		struct shoal_pool_task t;
		int rc;

		if (shoal_pool_worker_open(board, seat, gen, &w) != 0)
			_exit(2);
		while ((rc = shoal_pool_worker_next(w, -1, &t)) > 0) {
			char buf[64];
			int n;

			if (rc == SHOAL_POOL_TRIM) {
				shoal_pool_worker_trimmed(w);
				continue;
			}
			n = snprintf(buf, sizeof(buf), "hand:%.*s:%u", (int)t.len, (const char *)t.data,
				     t.attempt);
			shoal_pool_worker_done(w, 0, buf, (size_t)n);
			/* No ck_assert here: this child was forked from the
			 * pool's supervisor thread, and Check's assertions take
			 * a mutex another thread of the test may have held at
			 * that instant (the child then waits for ever). A died
			 * worker fails the test (recycles by SHOAL_POOL_DIED). */
			if (shoal_pool_worker_done(w, 0, NULL, 0) != -EINVAL)
				_exit(3);
		}
		shoal_pool_worker_close(w);
		_exit(rc == 0 ? 0 : 1);
	}
	return pid;
}

START_TEST(host_spawned_workers)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;

	c.spawn = hand_spawn;
	c.join = join_pid;
	c.max_tasks = 3;
	p = make(&c);
	/* However the two positions share them (that depends on how soon a
	 * replacement is ready), 11 tasks at 3 or fewer per worker make at
	 * least 3 recycles; 10 split 5 and 5 make only 2. */
	for (int i = 0; i < 12; i++)
		run_expect(p, "abc", "hand:abc:1");
	wait_recycles(p, SHOAL_POOL_TASKS, 3);
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* Hooks that try to destroy their own pool: refused, nothing done. */
struct self_destroy {
	struct shoal_pool *_Atomic p;
	_Atomic int spawn_rc, join_rc; /* 1: not tried yet */
};

static pid_t destroying_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	struct self_destroy *d = arg;
	struct shoal_pool *p = atomic_load(&d->p);

	if (p)
		atomic_store(&d->spawn_rc, shoal_pool_destroy(p));
	return hand_spawn(NULL, board, seat, gen);
}

static int destroying_join(void *arg, pid_t pid)
{
	struct self_destroy *d = arg;
	struct shoal_pool *p = atomic_load(&d->p);

	if (p)
		atomic_store(&d->join_rc, shoal_pool_destroy(p));
	return join_pid(NULL, pid);
}

START_TEST(destroy_from_a_hook_is_refused)
{
	struct shoal_pool_config c = conf(1);
	struct self_destroy d = { .spawn_rc = 1, .join_rc = 1 };
	struct shoal_pool *p;

	c.spawn = destroying_spawn;
	c.join = destroying_join;
	c.hook_arg = &d;
	c.max_tasks = 1; /* every task: a worker leaves, another starts */
	p = make(&c);
	atomic_store(&d.p, p);
	for (int i = 0; i < 3; i++)
		run_expect(p, "abc", "hand:abc:1");
	wait_recycles(p, SHOAL_POOL_TASKS, 2);
	ck_assert_int_eq(atomic_load(&d.spawn_rc), -EDEADLK);
	ck_assert_int_eq(atomic_load(&d.join_rc), -EDEADLK);
	/* The pool still works, and goes away when asked from outside. */
	run_expect(p, "abc", "hand:abc:1");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* Submissions while the pool is being destroyed (made from its join hook,
 * which destroy runs as its workers leave): -EPIPE, nothing queued. */
struct late_submit {
	struct shoal_pool *_Atomic p;
	_Atomic int one_rc, many_rc; /* 1: not tried yet */
};

static int submitting_join(void *arg, pid_t pid)
{
	struct late_submit *l = arg;
	struct shoal_pool *p = atomic_load(&l->p);

	if (p && atomic_load(&l->one_rc) == 1) {
		atomic_store(&l->one_rc, shoal_pool_submit(p, "x", 1, &(uint64_t){ 0 }));
		atomic_store(&l->many_rc, shoal_pool_submit_many(p, "x", &(size_t){ 1 }, 1,
								  &(uint64_t){ 0 }));
	}
	return join_pid(NULL, pid);
}

START_TEST(submit_while_destroyed_is_epipe)
{
	struct shoal_pool_config c = conf(2);
	struct late_submit l = { .one_rc = 1, .many_rc = 1 };
	struct shoal_pool *p;

	c.spawn = hand_spawn;
	c.join = submitting_join;
	c.hook_arg = &l;
	p = make(&c);
	run_expect(p, "abc", "hand:abc:1");
	atomic_store(&l.p, p);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(atomic_load(&l.one_rc), -EPIPE);
	ck_assert_int_eq(atomic_load(&l.many_rc), -EPIPE);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* A large task whose segment the mount has no room for: -ENOSPC from
 * submit and submit_many, nothing queued, and the pool goes on. In a
 * child with a private 256 KiB tmpfs on /dev/shm (needs root). */
START_TEST(submit_spill_without_room)
{
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private tmpfs");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_pool_config c = conf(1);
		struct shoal_pool_info info;
		struct shoal_pool *p = NULL;
		size_t len = 1u << 20;
		char *big = calloc(1, len);
		uint64_t id = 0;

		if (!big || unshare(CLONE_NEWNS) != 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=256k") != 0)
			_exit(10);
		c.inline_bytes = 64;
		c.prefetch = 1;
		if (shoal_pool_create(&c, &p) != 0)
			_exit(11);
		if (shoal_pool_submit(p, big, len, &id) != -ENOSPC)
			_exit(1);
		if (shoal_pool_submit_many(p, big, &len, 1, &id) != -ENOSPC)
			_exit(2);
		if (shoal_pool_info(p, &info) || info.pending + info.running + info.completed)
			_exit(3);
		if (shoal_pool_submit(p, "sq 3", 4, &id) != 0 || id != 1)
			_exit(4);
		_exit(shoal_pool_destroy(p) == 0 ? 0 : 5);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

/*
 * The worker side's errors, in a worker a spawn hook starts and that runs
 * a script: a poll with nothing to do (-ETIMEDOUT); a large task it
 * cannot map (its address space capped) is finished with -ENOMEM as its
 * result and the next task returned; a large result it cannot map
 * (-ENOMEM) or find room for (-ENOSPC, a private 64 KiB tmpfs of its own)
 * is its task's error; and once its supervisor's process is killed,
 * shoal_pool_worker_next() and _run() give -EPIPE. The pool lives in a
 * child (the supervisor to kill); this process becomes the worker's
 * reaper.
 */
struct wseen {
	int open, poll, next, done_nomem, next2, done_nospc, next_orphan, run_orphan;
	size_t len;
};
static int wpipe[2], polled[2];
static _Atomic int scripted;

static void scripted_worker(const char *board, uint32_t seat, uint64_t gen)
{
	const size_t big = 32u << 20;
	struct wseen s = { 1, 1, 1, 1, 1, 1, 1, 1, 0 };
	struct shoal_pool_worker *w = NULL;
	struct shoal_pool_task t;
	struct rlimit saved;
	void *res = mmap(NULL, big, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	s.open = shoal_pool_worker_open(board, seat, gen, &w);
	if (s.open || res == MAP_FAILED)
		goto out;
	s.poll = shoal_pool_worker_next(w, 0, &t);
	(void)!write(polled[1], "p", 1);
	getrlimit(RLIMIT_AS, &saved);
	if (t_cap_address_space(16u << 20))
		goto out;
	s.next = shoal_pool_worker_next(w, -1, &t);
	s.len = t.len;
	s.done_nomem = shoal_pool_worker_done(w, 0, res, big);
	setrlimit(RLIMIT_AS, &saved);
	s.next2 = shoal_pool_worker_next(w, -1, &t);
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0)
		goto out;
	s.done_nospc = shoal_pool_worker_done(w, 0, res, big);
	s.next_orphan = shoal_pool_worker_next(w, -1, &t);
	s.run_orphan = shoal_pool_worker_run(w, task_fn, NULL);
out:
	(void)!write(wpipe[1], &s, sizeof(s));
	_exit(0);
}

static pid_t scripted_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid;

	(void)arg;
	if (atomic_fetch_add(&scripted, 1))
		return -EAGAIN;  /* one worker, once */
	pid = fork();
	if (pid == 0)
		scripted_worker(board, seat, gen);
	return pid;
}

START_TEST(worker_side_errors)
{
	int up[2];
	struct wseen s;
	int errs[3];
	pid_t sup;
	char c;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private tmpfs");
	ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	ck_assert_int_eq(pipe(wpipe), 0);
	ck_assert_int_eq(pipe(polled), 0);
	ck_assert_int_eq(pipe(up), 0);
	sup = fork();
	ck_assert_int_ge(sup, 0);
	if (sup == 0) {
		struct shoal_pool_config cf = conf(1);
		struct shoal_pool *p = NULL;
		struct shoal_pool_result r;
		size_t len = 32u << 20;
		char *task = calloc(1, len);
		uint64_t id;

		cf.spawn = scripted_spawn;
		cf.join = join_pid;
		cf.inline_bytes = 64;
		if (!task || shoal_pool_create(&cf, &p) != 0 || read(polled[0], &c, 1) != 1)
			_exit(10);
		if (shoal_pool_submit(p, task, len, &id) || shoal_pool_submit(p, "b", 1, &id) ||
		    shoal_pool_submit(p, "c", 1, &id))
			_exit(11);
		for (int i = 0; i < 3; i++) {
			if (shoal_pool_wait(p, 60 * 1000000000ll, &r, 1) != 1 || r.id < 1 || r.id > 3)
				_exit(12);
			errs[r.id - 1] = r.err;
			shoal_pool_result_free(&r);
		}
		(void)!write(up[1], errs, sizeof(errs));
		pause();
		_exit(13);
	}
	ck_assert_int_eq(read(up[0], errs, sizeof(errs)), (ssize_t)sizeof(errs));
	ck_assert_int_eq(errs[0], -ENOMEM); /* the task it could not map */
	ck_assert_int_eq(errs[1], -ENOMEM); /* the result it could not map */
	ck_assert_int_eq(errs[2], -ENOSPC); /* the result it had no room for */
	kill(sup, SIGKILL);
	ck_assert_int_eq(t_wait(sup), 128 + SIGKILL);
	ck_assert_int_eq(read(wpipe[0], &s, sizeof(s)), (ssize_t)sizeof(s));
	ck_assert_int_eq(s.open, 0);
	ck_assert_int_eq(s.poll, -ETIMEDOUT);
	ck_assert_int_eq(s.next, SHOAL_POOL_TASK);
	ck_assert_uint_eq(s.len, 1);
	ck_assert_int_eq(s.done_nomem, -ENOMEM);
	ck_assert_int_eq(s.next2, SHOAL_POOL_TASK);
	ck_assert_int_eq(s.done_nospc, -ENOSPC);
	ck_assert_int_eq(s.next_orphan, -EPIPE);
	ck_assert_int_eq(s.run_orphan, -EPIPE);
	while (wait(NULL) > 0 || errno == EINTR)
		;  /* the worker, reparented here */
	ck_assert_int_ge(shoal_reap(), 1);  /* the dead supervisor's board */
	for (int i = 0; i < 2; i++) {
		close(wpipe[i]);
		close(polled[i]);
		close(up[i]);
	}
}
END_TEST

/* shoal_pool_hooks_hold(): a hook call under way outlasts a bounded hold
 * (-ETIMEDOUT, nothing held); no hook is called while it is held (a host
 * forks meanwhile); the calls wait and go on after the release. A hook may
 * not hold it, nor a thread twice; a release by a thread that holds
 * nothing is refused; a child forked under the hold starts with the gate
 * anew. */
struct gate_probe {
	_Atomic int calls;
	_Atomic int hold_rc; /* 1: not tried yet */
	_Atomic int linger;  /* 1: the next call waits until it is 0 */
};

static pid_t probing_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	struct gate_probe *g = arg;

	if (atomic_load(&g->hold_rc) == 1)
		atomic_store(&g->hold_rc, shoal_pool_hooks_hold(-1));
	atomic_fetch_add(&g->calls, 1);
	while (atomic_load(&g->linger))
		usleep(1000);
	return hand_spawn(NULL, board, seat, gen);
}

static int child_has_the_gate_anew(void)
{
	return shoal_pool_hooks_release() == -EPERM && shoal_pool_hooks_hold(0) == 0 &&
	       shoal_pool_hooks_release() == 0 && shoal_pool_hooks_release() == -EPERM;
}

static void *release_elsewhere(void *arg)
{
	*(int *)arg = shoal_pool_hooks_release();
	return NULL;
}

START_TEST(hooks_hold_gates_hook_calls)
{
	struct shoal_pool_config c = conf(1);
	struct gate_probe g = { .hold_rc = 1 };
	struct shoal_pool *p;
	pthread_t t;
	pid_t kid;
	int st, rc = 1;

	ck_assert_int_eq(shoal_pool_hooks_release(), -EPERM);
	c.spawn = probing_spawn;
	c.join = join_pid;
	c.hook_arg = &g;
	/* A hook under way outlasts a bounded hold. */
	g.linger = 1;
	g.hold_rc = 0;
	ck_assert_int_eq(shoal_pool_create(&c, &p), 0);
	while (atomic_load(&g.calls) == 0)
		usleep(1000);
	ck_assert_int_eq(shoal_pool_hooks_hold(100000000), -ETIMEDOUT);
	ck_assert_int_eq(shoal_pool_hooks_release(), -EPERM);
	atomic_store(&g.linger, 0);
	ck_assert_int_eq(shoal_pool_hooks_hold(-1), 0);
	ck_assert_int_eq(shoal_pool_hooks_hold(0), -EDEADLK);
	ck_assert_int_eq(shoal_pool_hooks_release(), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	atomic_store(&g.calls, 0);
	atomic_store(&g.hold_rc, 1);
	ck_assert_int_eq(shoal_pool_hooks_hold(-1), 0);
	ck_assert_int_eq(shoal_pool_create(&c, &p), 0);
	usleep(300000);
	ck_assert_int_eq(atomic_load(&g.calls), 0);
	kid = fork();
	if (kid == 0)
		_exit(child_has_the_gate_anew() ? 0 : 1);
	ck_assert_int_eq(waitpid(kid, &st, 0), kid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(atomic_load(&g.calls), 0);
	/* Only the holder releases. */
	ck_assert_int_eq(pthread_create(&t, NULL, release_elsewhere, &rc), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_int_eq(rc, -EPERM);
	ck_assert_int_eq(shoal_pool_hooks_release(), 0);
	run_expect(p, "abc", "hand:abc:1");
	ck_assert_int_ge(atomic_load(&g.calls), 1);
	ck_assert_int_eq(atomic_load(&g.hold_rc), -EDEADLK);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(shoal_pool_hooks_release(), -EPERM);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* The same by shoal_pool_worker_step(): one call hands back a result and
 * takes the next task. Its errors are checked in the worker (exit 3). */
static pid_t step_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid = fork();

	(void)arg;
	if (pid == 0) {
		struct shoal_pool_worker *w;
		struct shoal_pool_task t;
		char buf[64];
		size_t n = 0;
		int rc;

		if (shoal_pool_worker_open(board, seat, gen, &w) != 0)
			_exit(2);
		if (shoal_pool_worker_step(NULL, 0, NULL, 0, 0, &t) != -EINVAL ||
		    shoal_pool_worker_step(w, 0, NULL, 0, 0, NULL) != -EINVAL)
			_exit(3);
		/* No task open yet: the result arguments are ignored. */
		while ((rc = shoal_pool_worker_step(w, 0, NULL, 7, -1, &t)) > 0) {
			if (rc == SHOAL_POOL_TRIM) {
				shoal_pool_worker_trimmed(w);
				continue;
			}
			/* NULL bytes with a length: refused, the task stays open. */
			if (shoal_pool_worker_step(w, 0, NULL, 1, 0, &t) != -EINVAL)
				_exit(3);
			n = (size_t)snprintf(buf, sizeof(buf), "step:%.*s", (int)t.len,
					     (const char *)t.data);
			rc = shoal_pool_worker_step(w, 0, buf, n, -1, &t);
			if (rc != SHOAL_POOL_TASK)
				break;
			/* Every second task by the loop's call: no result
			 * there, so this one answers with nothing. */
			if (shoal_pool_worker_done(w, 0, NULL, 0) != 0)
				_exit(3);
		}
		shoal_pool_worker_close(w);
		_exit(rc == 0 ? 0 : 1);
	}
	return pid;
}

START_TEST(worker_step_and_wait_into)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool_result r[4];
	struct shoal_pool *p;
	char buf[64], big[16];
	uint64_t first;
	int got = 0, rc;
	size_t lens[4] = { 1, 1, 1, 1 };

	c.spawn = step_spawn;
	c.join = join_pid;
	p = make(&c);
	ck_assert_int_eq(shoal_pool_submit_many(p, "abcd", lens, 4, &first), 0);
	ck_assert_int_eq(shoal_pool_wait_into(p, 0, r, 4, NULL, 10), -EINVAL);
	ck_assert_int_eq(shoal_pool_wait_into(NULL, 0, r, 4, buf, sizeof(buf)), -EINVAL);
	/* Tasks a and c answer "step:a", "step:c"; b and d answer nothing. A
	 * buffer of 3 bytes is too small for the first that has bytes. */
	while (got < 4) {
		rc = shoal_pool_wait_into(p, 10000000000LL, r, 4, big, 3);
		if (rc == -ENOBUFS) {
			ck_assert_uint_eq(r[0].len, 6);
			rc = shoal_pool_wait_into(p, 0, r, 4, buf, sizeof(buf));
		}
		ck_assert_int_gt(rc, 0);
		for (int i = 0; i < rc; i++, got++) {
			uint64_t k = r[i].id - first;

			ck_assert_uint_lt(k, 4);
			ck_assert_int_eq(r[i].err, 0);
			if (k % 2) {
				ck_assert_uint_eq(r[i].len, 0);
				continue;
			}
			ck_assert_uint_eq(r[i].len, 6);
			ck_assert((const char *)r[i].data >= buf &&
				  (const char *)r[i].data + 6 <= buf + sizeof(buf));
			ck_assert(memcmp(r[i].data, k ? "step:c" : "step:a", 6) == 0);
		}
	}
	ck_assert_uint_eq(recycles(p, SHOAL_POOL_DIED), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* A result no larger than its task is kept in the task's own allocation,
 * a larger one in its own: both come out right through either wait, and
 * free as they should (the sanitizer build checks the frees). */
START_TEST(results_in_place_and_not)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct shoal_pool_result r[2];
	char buf[1024];

	for (int round = 0; round < 2; round++) {
		int got = 0;

		submit(p, "echo hi");
		submit(p, "big 300");
		while (got < 2) {
			int rc = round ? shoal_pool_wait(p, 10000000000LL, r, 2)
				       : shoal_pool_wait_into(p, 10000000000LL, r, 2, buf, sizeof(buf));

			ck_assert_int_gt(rc, 0);
			for (int i = 0; i < rc; i++, got++) {
				ck_assert_int_eq(r[i].err, 0);
				if (r[i].len == 2) {
					ck_assert(memcmp(r[i].data, "hi", 2) == 0);
				} else {
					ck_assert_uint_eq(r[i].len, 300);
					for (size_t k = 0; k < 300; k++)
						ck_assert_int_eq(((char *)r[i].data)[k], 'b');
				}
				if (round)
					shoal_pool_result_free(&r[i]);
				else
					ck_assert((char *)r[i].data >= buf &&
						  (char *)r[i].data + r[i].len <= buf + sizeof(buf));
			}
		}
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A supervisor SIGKILLed without destroying its pool: shoal_reap() takes its
 * board and the segments named after it; a live pool's stay. */
START_TEST(reap_takes_a_dead_supervisors_board)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *live = make(&c);
	char board[SHOAL_NAME_MAX + 1], child_seg[SHOAL_NAME_MAX + 8];
	char result_seg[SHOAL_NAME_MAX + 8], users[SHOAL_NAME_MAX + 8];
	struct shoal_segment *seg;
	int ready[2];
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_pool_config cc = conf(1);
		struct shoal_pool *p;

		if (shoal_pool_create(&cc, &p) != 0)
			_exit(1);
		(void)!write(ready[1], shoal_pool_name(p), strlen(shoal_pool_name(p)) + 1);
		pause();
		_exit(2);
	}
	n = read(ready[0], board, sizeof(board));
	ck_assert_int_gt(n, 1);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	/* What a task or result of that pool would have left: "<board>.a1". */
	snprintf(child_seg, sizeof(child_seg), "%s.a1", board);
	ck_assert_int_eq(shoal_segment_create(child_seg, 4096, NULL, &seg), 0);
	shoal_segment_close(seg);
	snprintf(result_seg, sizeof(result_seg), "%s.r7.2", board);
	ck_assert_int_eq(shoal_segment_create(result_seg, 4096, NULL, &seg), 0);
	shoal_segment_close(seg);
	/* A user's object that only shares the prefix is not the pool's. */
	snprintf(users, sizeof(users), "%s.data", board);
	ck_assert_int_eq(shoal_segment_create(users, 4096, NULL, &seg), 0);
	shoal_segment_close(seg);
	ck_assert_int_eq(access(t_path(board), F_OK), 0);

	ck_assert_int_ge(shoal_reap(), 3);
	ck_assert_int_eq(access(t_path(board), F_OK), -1);
	ck_assert_int_eq(access(t_path(child_seg), F_OK), -1);
	ck_assert_int_eq(access(t_path(result_seg), F_OK), -1);
	ck_assert_int_eq(access(t_path(users), F_OK), 0);
	ck_assert_int_eq(shoal_unlink(users), 0);
	ck_assert_int_eq(access(t_path(shoal_pool_name(live)), F_OK), 0); /* alive: kept */
	ck_assert_int_eq(shoal_pool_destroy(live), 0);
	close(ready[0]);
	close(ready[1]);
}
END_TEST

struct waiter {
	struct shoal_pool *p;
	pthread_t t;
	int rc;
};

static void *wait_forever(void *arg)
{
	struct waiter *w = arg;
	struct shoal_pool_result r;

	w->rc = shoal_pool_wait(w->p, -1, &r, 1);
	return NULL;
}

/* Threads blocked in shoal_pool_wait() while the pool is destroyed leave
 * with -EPIPE, and destroy waits for them before it frees the pool. */
START_TEST(destroy_while_waiting)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct waiter w[3];

	for (int i = 0; i < 3; i++) {
		w[i].p = p;
		w[i].rc = 0;
		ck_assert_int_eq(pthread_create(&w[i].t, NULL, wait_forever, &w[i]), 0);
	}
	usleep(50000);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(pthread_join(w[i].t, NULL), 0);
		ck_assert_int_eq(w[i].rc, -EPIPE);
	}
}
END_TEST

/* A worker the supervisor cannot watch (no descriptor left for its pidfd)
 * must not run unwatched: it is killed and collected, the error reported,
 * and the pool starts workers again once descriptors are back. The spawn
 * hook takes every free descriptor after forking (the first time only),
 * the join hook gives them back. */
static struct t_fds hoard;
static int starved;

static pid_t starving_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid = hand_spawn(arg, board, seat, gen);

	if (pid > 0 && !starved++)
		t_fds_take(&hoard, 256, 0);
	return pid;
}

static int starved_join(void *arg, pid_t pid)
{
	int st = join_pid(arg, pid);

	if (starved == 1 && hoard.n > 0)
		t_fds_back(&hoard);
	return st;
}

START_TEST(unwatchable_worker_is_not_left_running)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = NULL;
	struct shoal_pool_info info;

	c.spawn = starving_spawn;
	c.join = starved_join;
	ck_assert_int_eq(shoal_pool_create(&c, &p), 0);
	memset(&info, 0, sizeof(info));
	for (int i = 0; i < 500 && info.spawn_error != -EMFILE; i++) {
		usleep(10000);
		shoal_pool_info(p, &info);
	}
	ck_assert_int_eq(info.spawn_error, -EMFILE);
	ck_assert_int_eq(starved, 1);
	ck_assert_int_eq(count_zombies(), 0);
	/* Descriptors are back: the next worker is watched and works. */
	run_expect(p, "abc", "hand:abc:1");
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* ---- where workers come from: the fork server ---- */

static _Atomic bool churn_stop;
static _Atomic int churned;

/* Another thread of the pool's process, making pipes and fork-exec()ing
 * through them: a worker forked beside it would take its pipe fds along
 * (and a reader waiting for EOF would wait for that worker). */
static void *churn(void *arg)
{
	(void)arg;
	while (!atomic_load(&churn_stop)) {
		char buf[16];
		int pf[2];
		pid_t pid;

		if (pipe(pf) != 0)
			continue;
		pid = fork();
		if (pid == 0) {
			dup2(pf[1], 1);
			execl("/bin/true", "true", (char *)NULL);
			_exit(127);
		}
		close(pf[1]);
		while (read(pf[0], buf, sizeof(buf)) > 0)
			;
		close(pf[0]);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		atomic_fetch_add(&churned, 1);
	}
	return NULL;
}

/* Workers hold fds 0-2 and what they open themselves: not the pool's
 * eventfd or pidfds, not the fork server's socket, not another thread's
 * pipes, whenever they are forked (max_tasks 1: each task a new one). */
START_TEST(workers_hold_no_foreign_fds)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	pthread_t th;
	int pf[2];

	/* One of the caller's own, open without close-on-exec all along. */
	ck_assert_int_eq(pipe(pf), 0);
	c.max_tasks = 1;
	c.max_tasks_jitter = 0;
	atomic_store(&churn_stop, false);
	ck_assert_int_eq(pthread_create(&th, NULL, churn, NULL), 0);
	p = make(&c);
	for (int i = 0; i < 24; i++) {
		struct shoal_pool_result r;

		submit(p, "fds");
		r = one(p);
		ck_assert_int_eq(r.err, 0);
		ck_assert_msg(r.len == 0, "a worker holds %s", text(&r));
		shoal_pool_result_free(&r);
	}
	atomic_store(&churn_stop, true);
	pthread_join(th, NULL);
	ck_assert_int_gt(atomic_load(&churned), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	close(pf[0]);
	close(pf[1]);
	ck_assert_int_eq(count_zombies(), 0);
}
END_TEST

/* Whether @pid is gone (zombies count as gone) within @ms. */
static bool gone_within(pid_t pid, int ms)
{
	struct shoal_proc pr;

	for (int i = 0; i < ms / 10; i++) {
		if (shoal_proc_get(pid, &pr) == -ESRCH)
			return true;
		usleep(10000);
	}
	return shoal_proc_get(pid, &pr) == -ESRCH;
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *q, st;
	int fd, ppid = -1;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	q = strrchr(buf, ')');
	if (!q || sscanf(q + 2, "%c %d", &st, &ppid) != 2)
		return -1;
	return ppid;
}

/* A spawn hook that forks a plain worker: no PR_SET_PDEATHSIG, so only
 * the worker's own look at its supervisor can end it. */
static pid_t orphan_spawn(void *arg, const char *board, uint32_t seat, uint64_t gen)
{
	pid_t pid = fork();

	(void)arg;
	if (pid == 0) {
		struct shoal_pool_worker *w;

		if (shoal_pool_worker_open(board, seat, gen, &w) != 0)
			_exit(2);
		_exit(shoal_pool_worker_run(w, task_fn, NULL) ? 1 : 0);
	}
	return pid;
}

struct orphaned {
	char board[SHOAL_NAME_MAX + 1];
	pid_t workers[2];
};

/* In a child: a pool of @workers with 32 prefetched 200 ms tasks each,
 * started; report the board and worker pids on @fd, then wait to die. */
static void busy_pool_then_pause(int fd, unsigned workers, bool hooks)
{
	struct shoal_pool_config c = conf(workers);
	struct shoal_pool_stats st[2];
	struct orphaned o;
	struct shoal_pool *p;
	int n = 0;

	c.prefetch = 32;
	if (hooks) {
		c.spawn = orphan_spawn;
		c.join = join_pid;
	}
	if (shoal_pool_create(&c, &p) != 0)
		_exit(1);
	for (unsigned i = 0; i < 32 * workers; i++)
		if (shoal_pool_submit(p, "sleep 200", 9, &(uint64_t){ 0 }) != 0)
			_exit(1);
	for (int i = 0; i < 1000; i++) {
		n = shoal_pool_stats(p, st, 2);
		if (n == (int)workers && st[0].pid > 0 && (workers < 2 || st[1].pid > 0))
			break;
		usleep(10000);
	}
	memset(&o, 0, sizeof(o));
	snprintf(o.board, sizeof(o.board), "%s", shoal_pool_name(p));
	for (int i = 0; i < n && i < 2; i++)
		o.workers[i] = st[i].pid;
	usleep(300000); /* into their first tasks */
	(void)!write(fd, &o, sizeof(o));
	pause();
	_exit(2);
}

/* The pool's process SIGKILLed: its workers (children of the fork server)
 * are gone within 2 s, the server too, and the next pool takes the board. */
START_TEST(dead_parent_takes_its_workers)
{
	struct orphaned o;
	pid_t pid, server;
	int pf[2];

	ck_assert_int_eq(pipe(pf), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		busy_pool_then_pause(pf[1], 2, false);
	ck_assert_int_eq(read(pf[0], &o, sizeof(o)), (ssize_t)sizeof(o));
	ck_assert_int_gt(o.workers[0], 0);
	ck_assert_int_gt(o.workers[1], 0);
	server = parent_of(o.workers[0]);
	ck_assert_int_gt(server, 0);
	ck_assert_int_ne(server, pid); /* forked by the server, not the pool */
	ck_assert_int_eq(parent_of(server), pid);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert(gone_within(o.workers[0], 2000));
	ck_assert(gone_within(o.workers[1], 2000));
	ck_assert(gone_within(server, 2000));
	/* The next pool's creation takes a dead pool's board (or another
	 * program's shoal_reap() on this shared /dev/shm did already). */
	ck_assert_int_eq(shoal_pool_destroy(make(&(struct shoal_pool_config){ .workers = 1,
									   .fn = task_fn })), 0);
	ck_assert_int_eq(access(t_path(o.board), F_OK), -1);
	close(pf[0]);
	close(pf[1]);
}
END_TEST

/* A child the caller forked holds a copy of the fork server's socket: the
 * pool's destroy still ends the server at once (EXIT, not only EOF), and a
 * pool process that dies while such a child lives still takes its workers
 * (the server sees its parent change). */
START_TEST(forked_child_holds_the_server_socket)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct orphaned o;
	pid_t holder, pid, server;
	uint64_t t0;
	int pf[2];

	run_expect(p, "sq 3", "9");
	holder = fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		sleep(30);
		_exit(0);
	}
	t0 = shoal__now_ns();
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	ck_assert_uint_lt(shoal__now_ns() - t0, 3000000000u);
	kill(holder, SIGKILL);
	t_wait(holder);

	/* The pool's process forks a long sleeper, then is killed. */
	ck_assert_int_eq(pipe(pf), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (fork() == 0) {
			sleep(8);
			_exit(0);
		}
		busy_pool_then_pause(pf[1], 1, false);
	}
	ck_assert_int_eq(read(pf[0], &o, sizeof(o)), (ssize_t)sizeof(o));
	ck_assert_int_gt(o.workers[0], 0);
	server = parent_of(o.workers[0]);
	ck_assert_int_gt(server, 0);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert(gone_within(o.workers[0], 4000));
	ck_assert(gone_within(server, 4000));
	close(pf[0]);
	close(pf[1]);
}
END_TEST

/* A worker whose supervisor died looks at it between tasks too: 32
 * prefetched 200 ms tasks (6.4 s) do not keep it running. */
START_TEST(orphan_stops_between_tasks)
{
	struct orphaned o;
	pid_t pid;
	int pf[2];

	ck_assert_int_eq(pipe(pf), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		busy_pool_then_pause(pf[1], 1, true);
	ck_assert_int_eq(read(pf[0], &o, sizeof(o)), (ssize_t)sizeof(o));
	ck_assert_int_gt(o.workers[0], 0);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	/* One task (200 ms) and one look (500 ms), with room for a slow box. */
	ck_assert(gone_within(o.workers[0], 2500));
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_int_eq(access(t_path(o.board), F_OK), -1);
	close(pf[0]);
	close(pf[1]);
}
END_TEST

/* No fds for the fork server's socketpair: -EMFILE, and nothing left. */
START_TEST(fork_server_without_fds)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_pool_config c = conf(1);
		struct rlimit rl = { 64, 64 };
		struct shoal_pool *p = NULL;
		char pfx[64];
		int last = -1, rc;

		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			_exit(10);
		while ((rc = dup(0)) >= 0)
			last = rc;
		/* One free fd: the board's create opens and closes it, the
		 * eventfd keeps it, and the socketpair needs two. */
		close(last);
		rc = shoal_pool_create(&c, &p);
		if (rc != -EMFILE)
			_exit(11);
		snprintf(pfx, sizeof(pfx), "shoal.pool.%d.", (int)getpid());
		close(3);
		close(4);
		_exit(count_shm(pfx) == 0 ? 0 : 12);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

/*
 * A pool the system will not start: no process or thread may be made
 * (another user, its RLIMIT_NPROC reached) is -EAGAIN, from the fork
 * server's fork and from the threads of a pool without one; no memory
 * (the heap used up under a capped address space; not under ASan, whose
 * allocator a cap does not reach) is -ENOMEM. Nothing is left behind.
 * Needs root (to be another user).
 */
START_TEST(create_refused_by_the_system)
{
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root to be another user");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_pool_config c = conf(1), h = conf(1);
		struct rlimit one = { 1, 1 };
		struct shoal_pool *p = NULL;
		char pfx[64];

		h.fn = NULL;
		h.spawn = hand_spawn;
		h.join = join_pid;
		if (setgid(65534) || setuid(65534) || setrlimit(RLIMIT_NPROC, &one))
			_exit(10);
		if (shoal_pool_create(&c, &p) != -EAGAIN || p)
			_exit(1);
		if (shoal_pool_create(&h, &p) != -EAGAIN || p)
			_exit(2);
		snprintf(pfx, sizeof(pfx), "shoal.pool.%d.", (int)getpid());
		_exit(count_shm(pfx) == 0 ? 0 : 3);
	}
	ck_assert_int_eq(t_wait(pid), 0);
#if !defined(__SANITIZE_ADDRESS__)
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_pool_config c = conf(1);
		struct shoal_pool *p = NULL;
		void *last = NULL, *q;
		char pfx[64];

		if (t_cap_address_space(1u << 20))
			_exit(10);
		while ((q = malloc(32)) != NULL) {
			*(void **)q = last;
			last = q;
		}
		if (shoal_pool_create(&c, &p) != -ENOMEM || p)
			_exit(1);
		while (last) {
			q = *(void **)last;
			free(last);
			last = q;
		}
		snprintf(pfx, sizeof(pfx), "shoal.pool.%d.", (int)getpid());
		_exit(count_shm(pfx) == 0 ? 0 : 3);
	}
	ck_assert_int_eq(t_wait(pid), 0);
#endif
}
END_TEST

/* Kill seat 0's worker, which holds a planted "shoal..tmp.<pid>.*" (what
 * a worker killed inside a create leaves), and wait for its replacement. */
static void kill_with_tmp(struct shoal_pool *p, char *tmp, size_t cap)
{
	struct shoal_pool_stats st;
	pid_t old;

	ck_assert_int_eq(shoal_pool_stats(p, &st, 1), 1);
	old = st.pid;
	ck_assert_int_gt(old, 0);
	snprintf(tmp, cap, ".tmp.%d.%s", (int)old, "00000000deadbeef");
	t_plant(tmp, "x", 1, 0600);
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	for (int i = 0; i < 5000; i++) {
		ck_assert_int_eq(shoal_pool_stats(p, &st, 1), 1);
		if (st.pid != old && st.pid > 0)
			break;
		usleep(1000);
	}
	ck_assert_int_ne(st.pid, old);
}

/* Destroy (or before it, the joining of the worker) removes what a killed
 * worker left in /dev/shm; a live process's tmp file is not touched. */
START_TEST(killed_workers_tmp_files_removed)
{
	for (int hooks = 0; hooks < 2; hooks++) {
		struct shoal_pool_config c = conf(1);
		char tmp[64], mine[64];
		struct shoal_pool *p;

		if (hooks) {
			c.spawn = hand_spawn;
			c.join = join_pid;
		}
		p = make(&c);
		snprintf(mine, sizeof(mine), ".tmp.%d.%s", (int)getpid(), "00000000cafef00d");
		t_plant(mine, "x", 1, 0600);
		kill_with_tmp(p, tmp, sizeof(tmp));
		ck_assert_int_eq(shoal_pool_destroy(p), 0);
		ck_assert_msg(access(t_path(tmp), F_OK) == -1, "%s left (hooks %d)", tmp, hooks);
		ck_assert_int_eq(access(t_path(mine), F_OK), 0);
		ck_assert_int_eq(unlink(t_path(mine)), 0);
	}
}
END_TEST

/* The pool as any process sees it: the figures the owner's stats give,
 * read from the board without changing a byte of it. */
/* The prefetch a board gets when its caller leaves it to the pool: deeper
 * with no more workers than CPUs the caller may run on, the usual one
 * with more, and never in place of one the caller gives. */
static uint32_t board_prefetch(unsigned workers, unsigned prefetch)
{
	struct shoal_pool_config c = conf(workers);
	struct shoal_pool *p = NULL;
	struct shoal_pool_view v;

	c.prefetch = prefetch;
	ck_assert_int_eq(shoal_pool_create(&c, &p), 0);
	ck_assert_int_ge(shoal_pool_observe(shoal_pool_name(p), &v, NULL, 0), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	return v.prefetch;
}

/* Run this process on one of the CPUs it may use (a test runs in a
 * process of its own). */
static void pin_to_one_cpu(void)
{
	cpu_set_t set;
	int cpu;

	ck_assert_int_eq(sched_getaffinity(0, sizeof(set), &set), 0);
	for (cpu = 0; !CPU_ISSET(cpu, &set); cpu++)
		;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	ck_assert_int_eq(sched_setaffinity(0, sizeof(set), &set), 0);
}

START_TEST(prefetch_default_follows_the_cpus)
{
	/* On one CPU whatever the host has (this test runs in a process of
	 * its own): 1 worker is "few", 2 are not. */
	pin_to_one_cpu();
	ck_assert_uint_eq(board_prefetch(1, 0), SHOAL_POOL_PREFETCH_FEW_DEFAULT);
	ck_assert_uint_eq(board_prefetch(2, 0), SHOAL_POOL_PREFETCH_DEFAULT);
	ck_assert_uint_eq(board_prefetch(1, 5), 5);
}
END_TEST

/* Nanoseconds process @pid has run (/proc/<pid>/schedstat). */
static uint64_t cpu_ns(pid_t pid)
{
	char path[64];
	unsigned long long ns = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%llu", &ns), 1);
	fclose(f);
	return ns;
}

/* @n tasks "sq <i>", each result checked once. */
static void run_squares(struct shoal_pool *p, int n)
{
	char *seen = calloc((size_t)n, 1);
	uint64_t first = 0;

	ck_assert_ptr_nonnull(seen);
	for (long i = 0; i < n; i++) {
		char cmd[32];
		uint64_t id;

		snprintf(cmd, sizeof(cmd), "sq %ld", i);
		id = submit(p, cmd);
		if (i == 0)
			first = id;
		ck_assert_uint_eq(id, first + (uint64_t)i);
	}
	for (int k = 0; k < n; k++) {
		struct shoal_pool_result r = one(p);
		long i = (long)(r.id - first), got;

		ck_assert_int_eq(r.err, 0);
		ck_assert(i >= 0 && i < n && !seen[i]);
		seen[i] = 1;
		ck_assert_int_eq(sscanf(text(&r), "%ld", &got), 1);
		ck_assert_int_eq(got, i * i);
		shoal_pool_result_free(&r);
	}
	free(seen);
}

/*
 * More C workers than CPUs: a worker out of tasks yields its CPU once
 * before it sleeps (pool_worker.c). Once: an idle pool of 16 workers on
 * one CPU uses next to no CPU (a yield in a loop would take all of it),
 * and the tasks before and after the idle time all come back.
 */
START_TEST(oversubscribed_workers_sleep_when_idle)
{
	enum { W = 16, N = 4000 };
	struct shoal_pool_config c = conf(W);
	struct shoal_pool_stats st[W];
	struct shoal_pool *p;
	uint64_t before = 0, after = 0;

	pin_to_one_cpu();
	p = make(&c);
	for (int round = 0; round < 2; round++) {
		run_squares(p, N);
		if (round)
			break;
		usleep(100000); /* every worker has run dry and settled */
		ck_assert_int_eq(shoal_pool_stats(p, st, W), W);
		for (int i = 0; i < W; i++)
			before += cpu_ns(st[i].pid);
		usleep(400000);
		for (int i = 0; i < W; i++)
			after += cpu_ns(st[i].pid);
		/* Each worker looks at its supervisor once a second: a few
		 * microseconds. Spinning would be 400 ms. */
		ck_assert_msg(after - before < 20000000ull, "%d idle workers ran %llu ns in 400 ms", W,
			      (unsigned long long)(after - before));
	}
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

START_TEST(observe_sees_workers_and_recycles)
{
	struct shoal_pool_config c = conf(2);
	struct shoal_pool *p;
	struct shoal_pool_view v;
	struct shoal_pool_worker_view wv[8];
	struct shoal_pool_stats st[2];
	uint64_t done = 0, rec = 0;
	int n;

	c.max_tasks = 5;
	p = make(&c);
	/* 22 tasks need not retire 4 workers (5, 5, 5, 4, 3 is 3): more
	 * rounds until 4 have, each given 50 ms to be counted. */
	for (int round = 0; round < 40 && recycles(p, SHOAL_POOL_TASKS) < 4; round++) {
		int k = round ? 5 : 22;

		for (int i = 0; i < k; i++)
			submit(p, "echo x");
		for (int i = 0; i < k; i++) {
			struct shoal_pool_result r = one(p);

			ck_assert_int_eq(r.err, 0);
			shoal_pool_result_free(&r);
		}
		for (int i = 0; i < 50 && recycles(p, SHOAL_POOL_TASKS) < 4; i++)
			usleep(1000);
	}
	wait_recycles(p, SHOAL_POOL_TASKS, 4);
	/* Until the replacements are ready and the retired seats freed, and
	 * the supervisor's books name the replacements too (a position's pid
	 * is 0 from its old worker's exit until its next pass staffs it). */
	for (int i = 0; i < 2000; i++) {
		n = shoal_pool_observe(shoal_pool_name(p), &v, wv, 8);
		stats(p, st, 2);
		if (n == 2 && wv[0].state == SHOAL_POOL_SEAT_READY &&
		    wv[1].state == SHOAL_POOL_SEAT_READY && v.recycles[SHOAL_POOL_TASKS] ==
		    recycles(p, SHOAL_POOL_TASKS) && wv[0].position >= 0 && wv[0].position <= 1 &&
		    wv[1].position >= 0 && wv[1].position <= 1 &&
		    st[wv[0].position].pid == wv[0].pid && st[wv[1].position].pid == wv[1].pid)
			break;
		usleep(1000);
	}
	ck_assert_int_eq(n, 2);
	ck_assert(v.published);
	ck_assert(v.supervisor_alive);
	ck_assert_int_eq(v.supervisor.pid, getpid());
	ck_assert_uint_eq(v.seats, 6);
	ck_assert_uint_eq(v.workers, 2);
	stats(p, st, 2);
	for (int i = 0; i < 2; i++) {
		const struct shoal_pool_worker_view *w = &wv[i];

		ck_assert(w->alive);
		ck_assert_int_ge(w->position, 0);
		ck_assert_int_le(w->position, 1);
		ck_assert_int_eq(w->pid, st[w->position].pid);
		ck_assert_uint_eq(w->tasks, st[w->position].tasks);
		ck_assert_uint_eq(w->recycles[SHOAL_POOL_TASKS],
				  st[w->position].recycles[SHOAL_POOL_TASKS]);
		ck_assert_uint_gt(w->private_bytes, 0);
		done += w->tasks;
		rec += w->recycles[SHOAL_POOL_TASKS];
	}
	ck_assert_uint_eq(v.tasks_done, done);
	ck_assert_uint_eq(v.recycles[SHOAL_POOL_TASKS], rec);
	ck_assert_uint_eq(rec, recycles(p, SHOAL_POOL_TASKS));
	ck_assert_uint_eq(v.recycles[SHOAL_POOL_DIED], 0);
	/* @cap 0 counts; fewer entries than workers fills what fits. */
	ck_assert_int_eq(shoal_pool_observe(shoal_pool_name(p), &v, NULL, 0), 2);
	ck_assert_int_eq(shoal_pool_observe(shoal_pool_name(p), &v, wv, 1), 2);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* A worker killed from outside: seen as a DIED replacement. */
START_TEST(observe_sees_a_death)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p = make(&c);
	struct shoal_pool_view v;
	struct shoal_pool_worker_view wv[4];
	int n = 0;

	run_expect(p, "echo a", "a");
	ck_assert_int_eq(shoal_pool_observe(shoal_pool_name(p), &v, wv, 4), 1);
	ck_assert_uint_eq(wv[0].tasks, 1);
	ck_assert_int_eq(kill(wv[0].pid, SIGKILL), 0);
	wait_recycles(p, SHOAL_POOL_DIED, 1);
	for (int i = 0; i < 2000; i++) {
		n = shoal_pool_observe(shoal_pool_name(p), &v, wv, 4);
		if (n == 1 && wv[0].state == SHOAL_POOL_SEAT_READY)
			break;
		usleep(1000);
	}
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(v.recycles[SHOAL_POOL_DIED], 1);
	ck_assert_uint_eq(wv[0].tasks, 0);
	ck_assert(wv[0].alive);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
}
END_TEST

/* Errors, and a hostile board: geometry that fails its check is refused;
 * any bytes in the seats give an answer, never a crash. */
START_TEST(observe_errors_and_hostile_board)
{
	struct shoal_pool_config c = conf(1);
	struct shoal_pool *p;
	struct shoal_pool_view v;
	struct shoal_pool_worker_view wv[8];
	struct shoal_segment *seg;
	const char *seg_name = t_name("seg"), *board;
	char path[512];
	struct stat sb;
	uint64_t x = 99;
	int fd;

	ck_assert_int_eq(shoal_pool_observe("x", NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_pool_observe("x", &v, NULL, 1), -EINVAL);
	ck_assert_int_eq(shoal_pool_observe("../x", &v, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_pool_observe(t_name("none"), &v, NULL, 0), -ENOENT);
	ck_assert_int_eq(shoal_segment_create(seg_name, 4096, NULL, &seg), 0);
	ck_assert_int_eq(shoal_pool_observe(seg_name, &v, NULL, 0), -EPROTOTYPE);
	ck_assert_int_eq(shoal_segment_close(seg), 0);
	ck_assert_int_eq(shoal_unlink(seg_name), 0);
	t_plant(seg_name, "junk", 4, 0622);
	ck_assert_int_eq(shoal_pool_observe(seg_name, &v, NULL, 0), -EACCES);
	ck_assert_int_eq(shoal_unlink(seg_name), 0);

	c.name = t_name("obspool");
	p = make(&c);
	board = shoal_pool_name(p);
	snprintf(path, sizeof(path), "%s", t_path(board));
	fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_int_eq(shoal_pool_destroy(p), 0);
	/* The destroyed pool's board, kept by our descriptor: plant a copy. */
	{
		size_t len = (size_t)sb.st_size;
		unsigned char *img = malloc(len), *work = malloc(len);
		const char *copy = t_name("obscopy");
		uint32_t bad = 0;

		ck_assert_ptr_nonnull(img);
		ck_assert_ptr_nonnull(work);
		ck_assert_int_eq(pread(fd, img, len, 0), (ssize_t)len);
		close(fd);
		/* nseats 0, then more than 2 * 256 + 2: -EBADMSG. */
		memcpy(work, img, len);
		memcpy(work + SHOAL__HDR_SIZE, &bad, 4);
		t_plant(copy, work, len, 0600);
		ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EBADMSG);
		bad = 1000;
		memcpy(work + SHOAL__HDR_SIZE, &bad, 4);
		t_plant(copy, work, len, 0600);
		ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EBADMSG);
		/* Cells of 60 more bytes than a multiple of 64, in a geometry
		 * otherwise consistent: the cells' atomics would be
		 * misaligned. */
		{
			uint64_t g[4]; /* inline_bytes, cell_size, seat_size; prefetch */
			uint32_t pf;

			memcpy(work, img, len);
			memcpy(&pf, work + SHOAL__HDR_SIZE + 4, 4);
			memcpy(g, work + SHOAL__HDR_SIZE + 8, 24);
			g[0] -= 4;
			g[1] -= 4; /* a cell: 64 + inline_bytes */
			g[2] -= 4 * (uint64_t)pf;
			memcpy(work + SHOAL__HDR_SIZE + 8, g, 24);
			t_plant(copy, work, len, 0600);
			ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EBADMSG);
			/* A worker refuses it as well. */
			{
				struct shoal_pool_worker *w = NULL;

				ck_assert_int_eq(shoal_pool_worker_open(copy, 0, 1, &w), -EBADMSG);
				ck_assert_ptr_null(w);
			}
		}
		/* A board of the older layout (its cells held the result
		 * after the task): -EBADMSG, as to a worker. */
		memcpy(work, img, len);
		bad = 0;
		/* The pool header's layout word: offset 56 (lib/pool.h). */
		memcpy(work + SHOAL__HDR_SIZE + 56, &bad, 4);
		t_plant(copy, work, len, 0600);
		ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EBADMSG);
		/* Truncated. */
		t_plant(copy, img, len / 2, 0600);
		ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EBADMSG);
		/* A common header of a later layout. */
		memcpy(work, img, len);
		bad = 99;
		memcpy(work + 8, &bad, 4);
		t_plant(copy, work, len, 0600);
		ck_assert_int_eq(shoal_pool_observe(copy, &v, wv, 8), -EPROTO);
		/* The intact copy reads; then random bytes in the seats. */
		t_plant(copy, img, len, 0600);
		ck_assert_int_ge(shoal_pool_observe(copy, &v, wv, 8), 0);
		{
			/* Without a descriptor to read it with: -EMFILE. */
			pid_t kid = fork();

			ck_assert_int_ge(kid, 0);
			if (kid == 0)
				_exit(t_no_more_fds() == 0 &&
				      shoal_pool_observe(copy, &v, wv, 8) == -EMFILE ? 0 : 1);
			ck_assert_int_eq(t_wait(kid), 0);
		}
		for (int i = 0; i < 200; i++) {
			size_t off;
			int rc;

			x = x * 6364136223846793005ull + 1442695040888963407ull;
			off = 4096 + (size_t)(x >> 20) % (len - 4096);
			memcpy(work, img, len);
			for (int k = 0; k < 16; k++)
				work[(off + (size_t)k * 61) % (len - 4096) + 4096] = (unsigned char)(x >> (k * 4));
			t_plant(copy, work, len, 0600);
			rc = shoal_pool_observe(copy, &v, wv, 8);
			ck_assert_msg(rc >= 0 && rc <= 4, "flip %d: %d", i, rc);
			for (int k = 0; k < rc && k < 8; k++)
				ck_assert_int_lt(wv[k].position, 256);
		}
		free(img);
		free(work);
		ck_assert_int_eq(shoal_unlink(copy), 0);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("pool");

	/* One case per test, so CK_RUN_CASE=<test> runs one alone. */
#define ADD(t)                                      \
	do {                                        \
		TCase *tc = tcase_create(#t);       \
		tcase_set_timeout(tc, 60);          \
		tcase_add_test(tc, t);              \
		suite_add_tcase(s, tc);             \
	} while (0)
	ADD(runs_tasks);
	ADD(submit_many);
	ADD(oversubscribed_runs_each_task_once);
	ADD(submit_many_spill_fails);
#if !defined(__SANITIZE_ADDRESS__)
	ADD(submit_many_out_of_memory);
#endif
	ADD(large_tasks_and_results);
	ADD(max_tasks_recycles);
	ADD(max_age_recycles);
	ADD(soft_limit_trims_first);
	ADD(soft_limit_recycles_and_memory_returns);
	ADD(soft_limit_takes_back_prefetched);
	ADD(shared_reader_not_recycled);
	ADD(hard_limit_kills_and_reruns);
	ADD(startup_over_limit_is_config_reason);
	ADD(killed_mid_task_reruns);
	ADD(killed_from_outside_reruns);
	ADD(always_crashes_is_lost);
	ADD(thousand_recycles_flat);
	ADD(destroy_with_pending);
	ADD(cancel);
	ADD(cancel_prefetched);
	ADD(cancel_range);
	ADD(cancel_tasks_put_back_by_deaths);
	ADD(errors);
	ADD(lost_worker_exit_code);
	ADD(task_state);
	ADD(workers_that_never_start);
	ADD(spawn_that_always_fails_breaks_the_pool);
	ADD(host_spawned_workers);
	ADD(destroy_from_a_hook_is_refused);
	ADD(submit_while_destroyed_is_epipe);
	ADD(submit_spill_without_room);
	ADD(worker_side_errors);
	ADD(create_refused_by_the_system);
	ADD(hooks_hold_gates_hook_calls);
	ADD(worker_step_and_wait_into);
	ADD(results_in_place_and_not);
	ADD(reap_takes_a_dead_supervisors_board);
	ADD(destroy_while_waiting);
	ADD(unwatchable_worker_is_not_left_running);
	ADD(workers_hold_no_foreign_fds);
	ADD(dead_parent_takes_its_workers);
	ADD(orphan_stops_between_tasks);
	ADD(forked_child_holds_the_server_socket);
	ADD(killed_workers_tmp_files_removed);
	ADD(fork_server_without_fds);
	ADD(prefetch_default_follows_the_cpus);
	ADD(oversubscribed_workers_sleep_when_idle);
	ADD(observe_sees_workers_and_recycles);
	ADD(observe_sees_a_death);
	ADD(observe_errors_and_hostile_board);
#undef ADD
	return s;
}

int main(void)
{
	return t_run(suite());
}
