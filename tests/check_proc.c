/*
 * check_proc.c - process identity survives pid reuse; the dead are dead.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>

START_TEST(self_is_alive)
{
	struct shoal_proc me, again;

	ck_assert_int_eq(shoal_proc_self(&me), 0);
	ck_assert_int_eq(me.pid, getpid());
	ck_assert_uint_gt(me.start_time, 0);
	ck_assert(shoal_proc_is_alive(&me));
	ck_assert_int_eq(shoal_proc_get(getpid(), &again), 0);
	ck_assert_uint_eq(again.start_time, me.start_time);
	ck_assert_uint_ne(shoal__self_key(), 0);
}
END_TEST

START_TEST(bad_arguments)
{
	struct shoal_proc p = { 0 };

	ck_assert_int_eq(shoal_proc_self(NULL), -EINVAL);
	ck_assert_int_eq(shoal_proc_get(0, &p), -EINVAL);
	ck_assert_int_eq(shoal_proc_get(-5, &p), -EINVAL);
	ck_assert_int_eq(shoal_proc_get(1, NULL), -EINVAL);
	ck_assert(!shoal_proc_is_alive(NULL));
	ck_assert(!shoal_proc_is_alive(&p));
	p.pid = -1;
	ck_assert(!shoal_proc_is_alive(&p));
}
END_TEST

START_TEST(exited_child_is_dead)
{
	struct shoal_proc kid;
	pid_t pid = fork();
	int st;

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	ck_assert_int_eq(shoal_proc_get(pid, &kid), 0);
	ck_assert(shoal_proc_is_alive(&kid));
	kill(pid, SIGKILL);
	/* Not reaped yet: a zombie runs no code, so it is dead. */
	for (int i = 0; i < 1000 && shoal_proc_is_alive(&kid); i++)
		usleep(1000);
	ck_assert(!shoal_proc_is_alive(&kid));
	ck_assert_int_eq(shoal_proc_get(pid, &kid), -ESRCH);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(!shoal_proc_is_alive(&kid));
	ck_assert_int_eq(shoal_proc_get(pid, &kid), -ESRCH);
}
END_TEST

START_TEST(same_pid_other_start_is_dead)
{
	struct shoal_proc me, fake;

	ck_assert_int_eq(shoal_proc_self(&me), 0);
	fake = me;
	fake.start_time = me.start_time + 1;
	ck_assert(!shoal_proc_is_alive(&fake));
	fake.start_time = me.start_time - 1;
	ck_assert(!shoal_proc_is_alive(&fake));
	/* And the key round trip keeps it apart, too. */
	shoal__proc_unkey(shoal__proc_key(&fake), &fake);
	ck_assert(!shoal_proc_is_alive(&fake));
	shoal__proc_unkey(shoal__proc_key(&me), &fake);
	ck_assert_int_eq(fake.pid, me.pid);
	ck_assert(shoal_proc_is_alive(&fake));
}
END_TEST

START_TEST(no_such_pid)
{
	struct shoal_proc p;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(t_wait(pid), 0);
	/* Reaped: its pid is free (and not reused this soon on this machine). */
	ck_assert_int_eq(shoal_proc_get(pid, &p), -ESRCH);
}
END_TEST

START_TEST(fork_renews_self)
{
	struct shoal_proc parent;
	uint32_t gen = atomic_load(&shoal__fork_gen);
	pid_t pid;

	ck_assert_int_eq(shoal_proc_self(&parent), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_proc me;

		if (shoal_proc_self(&me) != 0 || me.pid != getpid() || me.pid == parent.pid)
			_exit(1);
		if (shoal__self_key() == shoal__proc_key(&parent))
			_exit(2);
		_exit(atomic_load(&shoal__fork_gen) == gen + 1 ? 0 : 3);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

static void *sleeper(void *arg)
{
	int *fd = arg;
	char c;

	(void)!read(*fd, &c, 1);
	_exit(0); /* the process ends here, skipping exit-time hooks */
}

/* A process whose main thread exited while another runs still runs code. */
START_TEST(leader_exited_threads_alive)
{
	int pipefd[2];
	struct shoal_proc kid;
	pid_t pid;

	ck_assert_int_eq(pipe(pipefd), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_t t;

		close(pipefd[1]);
		pthread_create(&t, NULL, sleeper, &pipefd[0]);
		pthread_exit(NULL);
	}
	close(pipefd[0]);
	ck_assert_int_eq(shoal_proc_get(pid, &kid), 0);
	usleep(100000);
	ck_assert(shoal_proc_is_alive(&kid));
	close(pipefd[1]); /* the thread returns, the process ends */
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert(!shoal_proc_is_alive(&kid));
}
END_TEST

/* /proc that cannot be read or parsed: -EIO, never a guess. Needs a mount
 * namespace of our own, so root (CI runs as root). */
START_TEST(unreadable_proc_is_eio)
{
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private /proc");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_proc p;
		struct shoal_segment *s = NULL;
		char path[64];
		FILE *f;

		if (t_private_proc() != 0)
			_exit(10);
		snprintf(path, sizeof(path), "/proc/%d", (int)getpid());
		mkdir(path, 0755);
		mkdir("/proc/4242", 0755);
		f = fopen("/proc/4242/stat", "w");
		fputs("4242 (x) R not numbers at all", f);
		fclose(f);
		if (shoal_proc_get(4242, &p) != -EIO)
			_exit(1);
		f = fopen("/proc/4242/stat", "w");
		fputs("4242 no parenthesis", f);
		fclose(f);
		if (shoal_proc_get(4242, &p) != -EIO)
			_exit(2);
		/* Our own stat file is missing: we cannot say who we are. */
		if (shoal_proc_self(&p) != -EIO)
			_exit(3);
		if (shoal_segment_create("never", 64, NULL, &s) != -EIO || s)
			_exit(4);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("proc");
	TCase *tc = tcase_create("proc");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, self_is_alive);
	tcase_add_test(tc, bad_arguments);
	tcase_add_test(tc, exited_child_is_dead);
	tcase_add_test(tc, same_pid_other_start_is_dead);
	tcase_add_test(tc, no_such_pid);
	tcase_add_test(tc, fork_renews_self);
	tcase_add_test(tc, leader_exited_threads_alive);
	tcase_add_test(tc, unreadable_proc_is_eio);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(suite());
}
