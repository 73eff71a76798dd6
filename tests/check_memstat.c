/*
 * check_memstat.c - memory readings: shared pages land in RssShmem, not in
 * private memory; touched heap lands in anonymous memory; errors.
 */
#include "internal.h"
#include "testutil.h"

#include <sys/mman.h>

#define MiB (1024u * 1024u)

/* Keep the compiler from dropping stores to memory nobody reads. */
static void touch(void *p, int v, size_t n)
{
	memset(p, v, n);
	__asm__ __volatile__("" : : "r"(p) : "memory");
}

START_TEST(self_reading)
{
	struct shoal_memstat a, b;

	ck_assert_int_eq(shoal_memstat(0, 0, &a), 0);
	ck_assert_int_eq(shoal_memstat(getpid(), 0, &b), 0);
	ck_assert_uint_gt(a.rss, 0);
	ck_assert_uint_gt(a.anon, 0);
	ck_assert_uint_gt(a.peak, 0);
	ck_assert_uint_ge(a.peak, a.rss);
	ck_assert_uint_eq(a.private_bytes, a.anon + a.swap);
	ck_assert_uint_eq(a.rss, a.anon + a.file + a.shmem);
	/* smaps_rollup fields are left zero unless asked for. */
	ck_assert_uint_eq(a.pss, 0);
	ck_assert_uint_eq(a.uss, 0);
	ck_assert_uint_eq(a.flags, 0);
}
END_TEST

START_TEST(smaps_fields)
{
	struct shoal_memstat m;

	ck_assert_int_eq(shoal_memstat(0, SHOAL_MEMSTAT_SMAPS, &m), 0);
	ck_assert_uint_eq(m.flags, SHOAL_MEMSTAT_SMAPS);
	ck_assert_uint_gt(m.pss, 0);
	ck_assert_uint_gt(m.uss, 0);
	ck_assert_uint_ge(m.uss, m.private_dirty);
	/* PSS counts each page at most fully: never above RSS (+ slack for
	 * the two reads being moments apart). */
	ck_assert_uint_le(m.pss, m.rss + 4 * MiB);
}
END_TEST

START_TEST(anon_growth)
{
	struct shoal_memstat a, b;
	size_t n = 64 * MiB;
	char *p;

	ck_assert_int_eq(shoal_memstat(0, 0, &a), 0);
	p = malloc(n);
	ck_assert_ptr_nonnull(p);
	touch(p, 1, n);
	ck_assert_int_eq(shoal_memstat(0, 0, &b), 0);
	ck_assert_uint_ge(b.anon, a.anon + 60 * MiB);
	ck_assert_uint_ge(b.private_bytes, a.private_bytes + 60 * MiB);
	ck_assert_uint_lt(b.shmem, a.shmem + 4 * MiB);
	free(p);
}
END_TEST

/* A process that makes a large shm segment and reads all of it shows the
 * pages in RssShmem, and its private memory does not grow. (Measured from
 * before the create: a segment this big is populated by create itself.) */
START_TEST(shared_is_not_private)
{
	const char *name = t_name("ms");
	size_t n = 256 * MiB;
	struct shoal_segment *s;
	struct shoal_memstat a, b, c;
	volatile uint64_t sum = 0;
	const uint64_t *q;

	ck_assert_int_eq(shoal_memstat(0, 0, &a), 0);
	ck_assert_int_eq(shoal_segment_create(name, n, NULL, &s), 0);
	q = shoal_segment_data(s);
	for (size_t i = 0; i < n / 8; i += 512)
		sum += q[i];
	ck_assert_int_eq(shoal_memstat(0, SHOAL_MEMSTAT_SMAPS, &b), 0);
	ck_assert_uint_ge(b.shmem, a.shmem + 250 * MiB);
	ck_assert_uint_lt(b.private_bytes, a.private_bytes + 8 * MiB);
	ck_assert_uint_ge(b.rss, a.rss + 250 * MiB);
	/* We are the only mapper: the pages are all ours in PSS too. */
	ck_assert_uint_ge(b.pss, 250 * MiB);

	/* A forked child reading it too: each of us then holds half in PSS,
	 * and the child's private memory stays small. */
	pid_t pid = fork();
	if (pid == 0) {
		struct shoal_memstat m0, m1;
		int bad = 0;

		shoal_memstat(0, 0, &m0);
		for (size_t i = 0; i < n / 8; i += 512)
			sum += q[i];
		shoal_memstat(0, SHOAL_MEMSTAT_SMAPS, &m1);
		bad |= m1.shmem < m0.shmem + 250 * MiB;
		bad |= m1.private_bytes > m0.private_bytes + 8 * MiB;
		bad |= m1.uss > m0.private_bytes + 16 * MiB;
		_exit(bad);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(shoal_memstat(0, 0, &c), 0);
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	(void)sum;
}
END_TEST

START_TEST(other_process)
{
	int fds[2];
	pid_t pid;
	struct shoal_memstat m;
	char c;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		char *p = malloc(32 * MiB);

		touch(p, 7, 32 * MiB);
		close(fds[0]);
		ck_assert_int_eq(write(fds[1], "x", 1), 1);
		pause();
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	ck_assert_int_eq(shoal_memstat(pid, SHOAL_MEMSTAT_SMAPS, &m), 0);
	ck_assert_uint_ge(m.anon, 32 * MiB);
	ck_assert_uint_ge(m.uss, 32 * MiB);
	kill(pid, SIGKILL);
	/* A zombie holds nothing and runs nothing: gone. */
	for (int i = 0; i < 1000; i++) {
		if (shoal_memstat(pid, 0, &m) == -ESRCH)
			break;
		usleep(1000);
	}
	ck_assert_int_eq(shoal_memstat(pid, 0, &m), -ESRCH);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	/* Reaped: no such process at all. */
	ck_assert_int_eq(shoal_memstat(pid, 0, &m), -ESRCH);
	ck_assert_int_eq(shoal_memstat(pid, SHOAL_MEMSTAT_SMAPS, &m), -ESRCH);
	close(fds[0]);
}
END_TEST

START_TEST(errors)
{
	struct shoal_memstat m;

	ck_assert_int_eq(shoal_memstat(-1, 0, &m), -EINVAL);
	ck_assert_int_eq(shoal_memstat(0, 0, NULL), -EINVAL);
	ck_assert_int_eq(shoal_memstat(0, 0x10, &m), -EINVAL);
	/* Beyond PID_MAX_LIMIT: no such process can exist. */
	ck_assert_int_eq(shoal_memstat(1 << 23, 0, &m), -ESRCH);
	/* A kernel thread: no user memory, every field zero. */
	ck_assert_int_eq(shoal_memstat(2, 0, &m), 0);
	ck_assert_uint_eq(m.rss, 0);
	ck_assert_uint_eq(m.private_bytes, 0);
}
END_TEST

/* What /proc refuses or garbles: another user's smaps_rollup is -EACCES
 * (a process of another uid asks about this root one), and one without
 * the fields it must have is -EIO (a private /proc of files written by
 * hand). Needs root. */
START_TEST(proc_refused_or_garbled)
{
	pid_t parent = getpid(), pid;

	ck_assert_msg(geteuid() == 0, "this test needs root to be another user");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_memstat m;

		if (setgid(65534) || setuid(65534))
			_exit(10);
		if (shoal_memstat(parent, 0, &m) != 0)  /* status: anyone may read it */
			_exit(1);
		_exit(shoal_memstat(parent, SHOAL_MEMSTAT_SMAPS, &m) == -EACCES ? 0 : 2);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_memstat m;
		FILE *f;

		if (t_private_proc() != 0)
			_exit(10);
		mkdir("/proc/4242", 0755);
		f = fopen("/proc/4242/status", "w");
		fputs("Name:\tx\nState:\tS (sleeping)\nVmRSS:\t  100 kB\n", f);
		fclose(f);
		f = fopen("/proc/4242/smaps_rollup", "w");
		fputs("not what the kernel writes\n", f);
		fclose(f);
		if (shoal_memstat(4242, 0, &m) != 0 || m.rss != 100 * 1024)
			_exit(1);
		_exit(shoal_memstat(4242, SHOAL_MEMSTAT_SMAPS, &m) == -EIO ? 0 : 2);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("memstat");
	TCase *tc = tcase_create("memstat");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, self_reading);
	tcase_add_test(tc, smaps_fields);
	tcase_add_test(tc, anon_growth);
	tcase_add_test(tc, shared_is_not_private);
	tcase_add_test(tc, other_process);
	tcase_add_test(tc, errors);
	tcase_add_test(tc, proc_refused_or_garbled);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(suite());
}
