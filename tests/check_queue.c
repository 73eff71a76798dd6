/*
 * check_queue.c - the queue: every error code, FIFO and capacity, close and
 * drain, hostile headers, cross-process stress (4x4 with 10 million
 * messages, 1x1, 8x1), and crash runs that SIGKILL producers and consumers
 * hundreds of times, at random and at the kill points inside push, pop and
 * recovery, and check that nothing acknowledged is lost, duplicated or torn.
 *
 * SHOAL_QUEUE_SOAK=<seconds> makes the crash run last that long (make soak).
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

static struct shoal_queue *mkq(const char *name, uint32_t cap, uint32_t max_msg)
{
	struct shoal_queue *q = NULL;

	ck_assert_int_eq(shoal_queue_create(name, cap, max_msg, NULL, &q), 0);
	ck_assert_ptr_nonnull(q);
	return q;
}

static void done(struct shoal_queue *q, const char *name)
{
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(name), 0);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *shared_mem(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(p, MAP_FAILED);
	return p;
}

/* ---- unit -------------------------------------------------------------------- */

START_TEST(fifo_and_stats)
{
	const char *name = t_name("fifo");
	struct shoal_queue *q = mkq(name, 8, 100), *o = NULL;
	struct shoal_queue_stats st;
	char buf[100];
	size_t len;

	ck_assert_str_eq(shoal_queue_name(q), name);
	for (int i = 0; i < 5; i++) {
		snprintf(buf, sizeof(buf), "message %d", i);
		ck_assert_int_eq(shoal_queue_push(q, buf, strlen(buf) + 1, 0), 0);
	}
	ck_assert_int_eq(shoal_queue_open(name, 0, &o), 0);
	ck_assert_int_eq(shoal_queue_stats(o, &st), 0);
	ck_assert_uint_eq(st.depth, 5);
	ck_assert_uint_eq(st.capacity, 8);
	ck_assert_uint_eq(st.max_msg, 100);
	ck_assert_uint_eq(st.pushes, 5);
	ck_assert_uint_eq(st.pops, 0);
	ck_assert_uint_eq(st.participants, 1);
	for (int i = 0; i < 5; i++) {
		char want[32];

		snprintf(want, sizeof(want), "message %d", i);
		ck_assert_int_eq(shoal_queue_pop(o, buf, sizeof(buf), &len, 0), 0);
		ck_assert_uint_eq(len, strlen(want) + 1);
		ck_assert_str_eq(buf, want);
	}
	ck_assert_int_eq(shoal_queue_pop(o, buf, sizeof(buf), &len, 0), -EAGAIN);
	/* Zero-length messages are messages. */
	ck_assert_int_eq(shoal_queue_push(o, NULL, 0, 0), 0);
	ck_assert_int_eq(shoal_queue_pop(q, NULL, 0, &len, 0), 0);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.depth, 0);
	ck_assert_uint_eq(st.pushes, 6);
	ck_assert_uint_eq(st.pops, 6);
	ck_assert_uint_eq(st.participants, 2);
	ck_assert_int_eq(shoal_queue_detach(o), 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.participants, 1);
	ck_assert_int_eq(shoal_queue_detach(NULL), 0);
	done(q, name);
}
END_TEST

START_TEST(wraps_many_laps)
{
	const char *name = t_name("laps");
	struct shoal_queue *q = mkq(name, 4, 8);
	uint64_t v, got;
	size_t len;

	for (uint64_t i = 0; i < 10000; i++) {
		v = i * 7919;
		ck_assert_int_eq(shoal_queue_push(q, &v, sizeof(v), 0), 0);
		if (i % 3 == 2) {
			for (int k = 0; k < 3; k++) {
				ck_assert_int_eq(shoal_queue_pop(q, &got, sizeof(got), &len, 0), 0);
				ck_assert_uint_eq(got, (i - 2 + (uint64_t)k) * 7919);
			}
		}
	}
	done(q, name);
}
END_TEST

START_TEST(capacity_boundary_and_timeouts)
{
	const char *name = t_name("cap");
	struct shoal_queue *q = mkq(name, 16, 4);
	uint32_t v;
	size_t len;
	double t0;

	for (uint32_t i = 0; i < 16; i++)
		ck_assert_int_eq(shoal_queue_push(q, &i, 4, 0), 0);
	v = 99;
	ck_assert_int_eq(shoal_queue_push(q, &v, 4, 0), -EAGAIN);
	t0 = now_s();
	ck_assert_int_eq(shoal_queue_push(q, &v, 4, 30000000), -ETIMEDOUT);
	ck_assert(now_s() - t0 >= 0.029);
	ck_assert(now_s() - t0 < 1.0);
	ck_assert_int_eq(shoal_queue_pop(q, &v, 4, &len, 0), 0);
	ck_assert_uint_eq(v, 0);
	v = 16;
	ck_assert_int_eq(shoal_queue_push(q, &v, 4, 0), 0);
	for (uint32_t i = 1; i <= 16; i++) {
		ck_assert_int_eq(shoal_queue_pop(q, &v, 4, &len, 0), 0);
		ck_assert_uint_eq(v, i);
	}
	ck_assert_int_eq(shoal_queue_pop(q, &v, 4, &len, 0), -EAGAIN);
	t0 = now_s();
	ck_assert_int_eq(shoal_queue_pop(q, &v, 4, &len, 120000000), -ETIMEDOUT);
	ck_assert(now_s() - t0 >= 0.119);
	done(q, name);
}
END_TEST

START_TEST(bad_arguments)
{
	const char *name = t_name("args");
	struct shoal_queue *q = NULL;
	struct shoal_opts o = { .mode = 0666 };
	struct shoal_queue_stats st;
	char buf[16];
	size_t len, lens[2] = { 1, 1 };

	ck_assert_int_eq(shoal_queue_create(name, 0, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 1, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 12, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, SHOAL_QUEUE_CAPACITY_MAX * 2u, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 8, 0, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 8, SHOAL_QUEUE_MSG_MAX + 1, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 8, 8, NULL, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(name, 8, 8, &o, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create("a/b", 8, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create("..", 8, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_create(NULL, 8, 8, NULL, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_open("a/b", 0, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_open(name, 0, &q), -ENOENT);
	ck_assert_int_eq(shoal_queue_unlink(name), -ENOENT);
	ck_assert_int_eq(shoal_queue_unlink(".x"), -EINVAL);
	ck_assert_ptr_null(q);

	q = mkq(name, 8, 8);
	ck_assert_int_eq(shoal_queue_create(name, 8, 8, NULL, &q), -EEXIST);
	ck_assert_int_eq(shoal_queue_open(name, SHOAL_RDONLY, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_open(name, 0x100, &q), -EINVAL);
	ck_assert_int_eq(shoal_queue_open(name, 0, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_push(NULL, buf, 1, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push(q, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push(q, buf, 9, 0), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_push(q, buf, SIZE_MAX, -1), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_pop(NULL, buf, 8, &len, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop(q, NULL, 8, &len, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_many(NULL, buf, lens, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_many(q, NULL, lens, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_many(q, buf, NULL, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_many(q, NULL, NULL, 0, 0), 0);
	ck_assert_int_eq(shoal_queue_pop_many(NULL, buf, 8, lens, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, 8, NULL, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, 8, lens, 0, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_many(q, NULL, 8, lens, 2, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_stats(NULL, &st), -EINVAL);
	ck_assert_int_eq(shoal_queue_stats(q, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_close(NULL), -EINVAL);
	ck_assert(!shoal_queue_is_closed(NULL));
	done(q, name);
}
END_TEST

START_TEST(wrong_kind)
{
	const char *name = t_name("kind");
	struct shoal_segment *s;
	struct shoal_queue *q = NULL;

	ck_assert_int_eq(shoal_segment_create(name, 4096, NULL, &s), 0);
	ck_assert_int_eq(shoal_queue_open(name, 0, &q), -EPROTOTYPE);
	ck_assert_int_eq(shoal_queue_unlink(name), -EPROTOTYPE);
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	q = mkq(name, 2, 1);
	ck_assert_int_eq(shoal_segment_open(name, 0, &s), -EPROTOTYPE);
	done(q, name);
}
END_TEST

START_TEST(msgsize_keeps_message)
{
	const char *name = t_name("size");
	struct shoal_queue *q = mkq(name, 8, 64);
	char big[64], buf[64];
	size_t len = 0, lens[4];

	memset(big, 'b', sizeof(big));
	ck_assert_int_eq(shoal_queue_push(q, big, 40, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "tail", 4, 0), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 39, &len, 0), -EMSGSIZE);
	ck_assert_uint_eq(len, 40);
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, 10, lens, 4, 0), -EMSGSIZE);
	ck_assert_uint_eq(lens[0], 40);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 40, &len, 0), 0);
	ck_assert_uint_eq(len, 40);
	ck_assert_int_eq(memcmp(buf, big, 40), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 64, &len, 0), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert_int_eq(memcmp(buf, "tail", 4), 0);
	done(q, name);
}
END_TEST

START_TEST(many_in_one_call)
{
	const char *name = t_name("many");
	struct shoal_queue *q = mkq(name, 8, 16);
	unsigned char data[200], out[200];
	size_t lens[12], got[12], off = 0;
	ssize_t n;

	for (size_t i = 0; i < 12; i++) {
		lens[i] = i % 5 + 1;
		for (size_t j = 0; j < lens[i]; j++)
			data[off + j] = (unsigned char)(i * 16 + j);
		off += lens[i];
	}
	/* Only 8 fit: the rest times out, and the count says so. */
	ck_assert_int_eq(shoal_queue_push_many(q, data, lens, 12, 10000000), 8);
	ck_assert_int_eq(shoal_queue_push_many(q, data, lens, 12, 0), -EAGAIN);
	ck_assert_int_eq(shoal_queue_push_many(q, data, lens, 1, 1000000), -ETIMEDOUT);
	/* A buffer that holds the first three only. */
	n = shoal_queue_pop_many(q, out, lens[0] + lens[1] + lens[2] + 1, got, 12, 0);
	ck_assert_int_eq(n, 3);
	n = shoal_queue_pop_many(q, out + 6, sizeof(out) - 6, got + 3, 12, 0);
	ck_assert_int_eq(n, 5);
	for (size_t i = 0; i < 8; i++)
		ck_assert_uint_eq(got[i], lens[i]);
	ck_assert_int_eq(memcmp(out, data, 6), 0);
	ck_assert_int_eq(memcmp(out + 6, data + 6, off - 6 - (lens[8] + lens[9] + lens[10] + lens[11])), 0);
	ck_assert_int_eq(shoal_queue_pop_many(q, out, sizeof(out), got, 12, 0), -EAGAIN);
	ck_assert_int_eq(shoal_queue_pop_many(q, out, sizeof(out), got, 12, 2000000), -ETIMEDOUT);
	/* Any length over max_msg: nothing is pushed. */
	lens[3] = 17;
	ck_assert_int_eq(shoal_queue_push_many(q, data, lens, 5, 0), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_pop_many(q, out, sizeof(out), got, 12, 0), -EAGAIN);
	done(q, name);
}
END_TEST

START_TEST(close_and_drain)
{
	const char *name = t_name("close");
	struct shoal_queue *q = mkq(name, 4, 8);
	char buf[8];
	size_t len, lens[2] = { 1, 1 };

	ck_assert(!shoal_queue_is_closed(q));
	ck_assert_int_eq(shoal_queue_push(q, "a", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "b", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert(shoal_queue_is_closed(q));
	ck_assert_int_eq(shoal_queue_push(q, "c", 1, 0), -EPIPE);
	ck_assert_int_eq(shoal_queue_push(q, "c", 1, -1), -EPIPE);
	ck_assert_int_eq(shoal_queue_push_many(q, "cd", lens, 2, -1), -EPIPE);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, -1), 0);
	ck_assert_int_eq(buf[0], 'a');
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, 8, lens, 2, -1), 1);
	ck_assert_int_eq(buf[0], 'b');
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EPIPE);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, -1), -EPIPE);
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, 8, lens, 2, -1), -EPIPE);
	done(q, name);
}
END_TEST

/* Sleepers on both sides wake when the queue is closed. */
START_TEST(close_wakes_sleepers)
{
	const char *name = t_name("cwake");
	struct shoal_queue *e = mkq(name, 2, 8), *f;
	const char *fname = t_name("cwakef");
	pid_t c, p;

	f = mkq(fname, 2, 8);
	ck_assert_int_eq(shoal_queue_push(f, "x", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_push(f, "y", 1, 0), 0);
	c = fork();
	if (c == 0) {
		char buf[8];
		size_t len;

		_exit(shoal_queue_pop(e, buf, 8, &len, -1) == -EPIPE ? 0 : 1);
	}
	p = fork();
	if (p == 0)
		_exit(shoal_queue_push(f, "z", 1, -1) == -EPIPE ? 0 : 1);
	usleep(100000);
	ck_assert_int_eq(shoal_queue_close(e), 0);
	ck_assert_int_eq(shoal_queue_close(f), 0);
	ck_assert_int_eq(t_wait(c), 0);
	ck_assert_int_eq(t_wait(p), 0);
	done(e, name);
	done(f, fname);
}
END_TEST

/* A consumer asleep in another process wakes for a push, and fast. */
START_TEST(cross_process_wake)
{
	const char *name = t_name("wake");
	struct shoal_queue *q = mkq(name, 8, 32);
	struct shoal_queue_stats st;
	pid_t kid = fork();

	if (kid == 0) {
		struct shoal_queue *o;
		char buf[32];
		size_t len;

		if (shoal_queue_open(name, 0, &o) != 0)
			_exit(2);
		if (shoal_queue_pop(o, buf, sizeof(buf), &len, 5000000000LL) != 0)
			_exit(3);
		if (len != 5 || memcmp(buf, "hello", 5) != 0)
			_exit(4);
		/* Answer on the same queue: the parent waits for it. */
		_exit(shoal_queue_push(o, "back", 4, -1) == 0 ? 0 : 5);
	}
	usleep(200000);
	ck_assert_int_eq(shoal_queue_push(q, "hello", 5, 0), 0);
	ck_assert_int_eq(t_wait(kid), 0);
	{
		char buf[32];
		size_t len;

		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
		ck_assert_int_eq(memcmp(buf, "back", 4), 0);
	}
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_ge(st.sleeps, 1);
	done(q, name);
}
END_TEST

static void on_usr1(int sig)
{
	(void)sig;
}

/* A blocking call of kind @op on @q (empty for the takers, full for the
 * pushers), as a child would make it: its result. */
static int blocking_call(int op, struct shoal_queue *q)
{
	struct shoal_queue_ticket t;
	char buf[8];
	size_t len = 1;

	switch (op) {
	case 0: return shoal_queue_pop(q, buf, 8, &len, -1);
	case 1: return shoal_queue_push(q, "x", 1, -1);
	case 2: return shoal_queue_claim(q, buf, 8, &len, -1, &t);
	case 3: return (int)shoal_queue_push_many(q, "x", &len, 1, -1);
	default: return (int)shoal_queue_pop_many(q, buf, 8, &len, 1, -1);
	}
}

/* Every blocking call returns -EINTR when a signal interrupts its sleep
 * (nothing pushed or taken). */
START_TEST(signal_interrupts_wait)
{
	static const char *const calls[] = { "pop", "push", "claim", "push_many", "pop_many" };
	const char *name = t_name("intr"), *fname = t_name("intrfull");
	struct shoal_queue *q = mkq(name, 2, 8), *full = mkq(fname, 2, 8);
	struct shoal_queue_stats st;

	ck_assert_int_eq(shoal_queue_push(full, "a", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_push(full, "b", 1, 0), 0);
	for (int op = 0; op < 5; op++) {
		struct shoal_queue *on = op == 1 || op == 3 ? full : q;
		int ready[2], status = 0;
		bool reaped = false;
		pid_t kid;
		char c;

		ck_assert_int_eq(pipe(ready), 0);
		kid = fork();
		if (kid == 0) {
			struct sigaction sa = { .sa_handler = on_usr1 }; /* no SA_RESTART */

			sigaction(SIGUSR1, &sa, NULL);
			(void)!write(ready[1], "r", 1);
			_exit(blocking_call(op, on) == -EINTR ? 0 : 1);
		}
		ck_assert_int_eq(read(ready[0], &c, 1), 1);
		/* A signal that lands before the child sleeps is handled and
		 * forgotten (only a sleep is interrupted), so keep sending
		 * until it returns. */
		for (int i = 0; i < 200 && !reaped; i++) {
			kill(kid, SIGUSR1);
			usleep(20000);
			reaped = waitpid(kid, &status, WNOHANG) == kid;
		}
		if (!reaped)
			kill(kid, SIGKILL);
		ck_assert_msg(reaped, "the %s was not interrupted", calls[op]);
		ck_assert(WIFEXITED(status));
		ck_assert_msg(WEXITSTATUS(status) == 0, "the %s: not -EINTR", calls[op]);
		close(ready[0]);
		close(ready[1]);
	}
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.depth, 0);
	ck_assert_int_eq(shoal_queue_stats(full, &st), 0);
	ck_assert_uint_eq(st.depth, 2);
	ck_assert_uint_eq(st.pushes, 2);
	done(full, fname);
	done(q, name);
}
END_TEST

/* A handle inherited over fork registers the child as its own participant. */
START_TEST(fork_inherits_handle)
{
	const char *name = t_name("fork");
	struct shoal_queue *q = mkq(name, 8, 8);
	struct shoal_queue_stats st;
	char buf[8];
	size_t len;
	pid_t kid;

	ck_assert_int_eq(shoal_queue_push(q, "p", 1, 0), 0);
	kid = fork();
	if (kid == 0) {
		struct shoal_queue_stats s2;

		if (shoal_queue_push(q, "c", 1, 0) != 0 || shoal_queue_stats(q, &s2) != 0)
			_exit(1);
		_exit(s2.participants == 2 ? 0 : 2); /* not the parent's entry */
	}
	ck_assert_int_eq(t_wait(kid), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), 0);
	ck_assert_int_eq(buf[0], 'p');
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), 0);
	ck_assert_int_eq(buf[0], 'c');
	/* The child exited without detaching: a sweep frees its entry. */
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 120000000), -ETIMEDOUT);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.participants, 1);
	done(q, name);
}
END_TEST

START_TEST(participants_run_out)
{
	const char *name = t_name("users");
	struct shoal_queue *q = mkq(name, 2, 8), *h[SHOAL_QUEUE_PARTICIPANTS];
	char buf[8];
	size_t len;

	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN);
	for (int i = 0; i < SHOAL_QUEUE_PARTICIPANTS - 1; i++) {
		ck_assert_int_eq(shoal_queue_open(name, 0, &h[i]), 0);
		ck_assert_int_eq(shoal_queue_pop(h[i], buf, 8, &len, 0), -EAGAIN);
	}
	ck_assert_int_eq(shoal_queue_open(name, 0, &h[SHOAL_QUEUE_PARTICIPANTS - 1]), 0);
	ck_assert_int_eq(shoal_queue_push(h[SHOAL_QUEUE_PARTICIPANTS - 1], "x", 1, 0), -EUSERS);
	ck_assert_int_eq(shoal_queue_detach(h[0]), 0);
	ck_assert_int_eq(shoal_queue_push(h[SHOAL_QUEUE_PARTICIPANTS - 1], "x", 1, 0), 0);
	for (int i = 1; i < SHOAL_QUEUE_PARTICIPANTS; i++)
		ck_assert_int_eq(shoal_queue_detach(h[i]), 0);
	done(q, name);
}
END_TEST

/* A table sized at create: its size is the limit, the entries of the dead
 * go back when it is full, and sizes out of range are refused. */
START_TEST(participants_sized_at_create)
{
	const char *name = t_name("sized");
	struct shoal_queue *q = NULL, *h[2];
	char buf[8];
	size_t len;
	pid_t kid;
	int status;

	ck_assert_int_eq(shoal__queue_create(name, 2, 8, 0, NULL, &q), -EINVAL);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EINVAL), "participants 0 must be in 1..16383"));
	ck_assert_int_eq(shoal__queue_create(name, 2, 8, SHOAL_QUEUE_PARTICIPANTS_MAX + 1, NULL, &q),
			 -EINVAL);
	ck_assert_ptr_null(q);
	ck_assert_int_eq(shoal__queue_create(name, 2, 8, 3, NULL, &q), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN);
	/* A child takes the second entry and dies without detaching. */
	kid = fork();
	if (kid == 0)
		_exit(shoal_queue_push(q, "k", 1, 0) == 0 ? 0 : 1);
	ck_assert_int_eq(waitpid(kid, &status, 0), kid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(shoal_queue_open(name, 0, &h[0]), 0);
	ck_assert_int_eq(shoal_queue_pop(h[0], buf, 8, &len, 0), 0);
	ck_assert_int_eq(shoal_queue_open(name, 0, &h[1]), 0);
	/* Full (3 entries: ours, the dead child's, h[0]): the dead child's
	 * goes back. */
	ck_assert_int_eq(shoal_queue_push(h[1], "x", 1, 0), 0);
	{
		struct shoal_queue *more;

		struct shoal_queue_ticket t;
		size_t one = 1;

		ck_assert_int_eq(shoal_queue_open(name, 0, &more), 0);
		ck_assert_int_eq(shoal_queue_push(more, "y", 1, 0), -EUSERS);
		ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EUSERS), "table full (3 handles"));
		/* Every call that needs an entry. */
		ck_assert_int_eq(shoal_queue_pop(more, buf, 8, &len, 0), -EUSERS);
		ck_assert_int_eq(shoal_queue_push_many(more, "y", &one, 1, 0), -EUSERS);
		ck_assert_int_eq(shoal_queue_pop_many(more, buf, 8, &len, 1, 0), -EUSERS);
		ck_assert_int_eq(shoal_queue_claim(more, buf, 8, &len, 0, &t), -EUSERS);
		ck_assert_int_eq(shoal_queue_detach(more), 0);
	}
	ck_assert_int_eq(shoal_queue_detach(h[0]), 0);
	ck_assert_int_eq(shoal_queue_detach(h[1]), 0);
	done(q, name);
	/* The largest table. */
	ck_assert_int_eq(shoal__queue_create(name, 2, 8, SHOAL_QUEUE_PARTICIPANTS_MAX, NULL, &q), 0);
	ck_assert_int_eq(shoal_queue_push(q, "z", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_open(name, 0, &h[0]), 0);
	ck_assert_int_eq(shoal_queue_pop(h[0], buf, 8, &len, 0), 0);
	ck_assert_int_eq(shoal_queue_detach(h[0]), 0);
	done(q, name);
}
END_TEST

/* A sweep judges a bounded number of processes; one that reaches a dead
 * entry past them in a later turn still frees it. */
START_TEST(sweep_in_turns)
{
	const char *name = t_name("sweep");
	struct shoal_queue *q = mkq(name, 2, 8);
	struct shoal_queue_stats st;
	enum { LIVE = 100 };
	pid_t kids[LIVE], dead;
	int go[2], up[2], status;
	char buf[8], c;
	size_t len;
	double t0;

	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN);
	/* LIVE sleeping processes with an entry each, then one that dies:
	 * its entry comes after theirs, past one sweep's share. */
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(up), 0);
	for (int i = 0; i < LIVE; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			close(go[1]);
			if (shoal_queue_pop(q, buf, 8, &len, 0) != -EAGAIN)
				_exit(1);
			(void)!write(up[1], "u", 1);
			(void)!read(go[0], &c, 1);
			_exit(0);
		}
	}
	close(go[0]);
	for (int i = 0; i < LIVE; i++)
		ck_assert_int_eq(read(up[0], &c, 1), 1);
	dead = fork();
	if (dead == 0)
		_exit(shoal_queue_push(q, "d", 1, 0) == 0 ? 0 : 1);
	ck_assert_int_eq(waitpid(dead, &status, 0), dead);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.participants, LIVE + 2);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), 0);
	/* Try calls on an empty queue sweep, at most once per 50 ms. */
	t0 = now_s();
	while (now_s() - t0 < 5) {
		ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		if (st.participants == LIVE + 1)
			break;
		usleep(20000);
	}
	/* Ours and the live ones; the dead one's entry went back, within a
	 * few sweeps. */
	ck_assert_uint_eq(st.participants, LIVE + 1);
	ck_assert_double_lt(now_s() - t0, 1.0);
	close(go[1]);
	close(up[0]);
	close(up[1]);
	for (int i = 0; i < LIVE; i++) {
		ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
		ck_assert_int_eq(WEXITSTATUS(status), 0);
	}
	done(q, name);
}
END_TEST
static void expect(struct shoal_queue *q, const char *want, int64_t timeout);
static void expect_claim(struct shoal_queue *q, const char *want, uint32_t redelivered,
			 int64_t timeout, struct shoal_queue_ticket *t);
static uint64_t mix(uint64_t x);

/* ---- hostile headers ------------------------------------------------------------ */

/* Offsets inside a queue object, from its headers. */
#define KOFF SHOAL__HDR_SIZE
static void poke(const char *name, off_t off, const void *v, size_t len)
{
	int fd = open(t_path(name), O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, v, len, off), (ssize_t)len);
	close(fd);
}

static void poke32(const char *name, off_t off, uint32_t v)
{
	poke(name, off, &v, 4);
}

static void poke64(const char *name, off_t off, uint64_t v)
{
	poke(name, off, &v, 8);
}

static uint64_t data_off(const char *name)
{
	struct shoal__hdr h;
	int fd = open(t_path(name), O_RDONLY);

	ck_assert_int_eq(pread(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	close(fd);
	return h.data_off;
}

START_TEST(corrupt_headers)
{
	static const struct {
		off_t off;
		uint32_t val;
	} bad[] = {
		{ 0, 0x12345678 },    /* magic */
		{ 4, 0 },             /* capacity */
		{ 4, 6 },             /* not a power of two */
		{ 4, 1u << 31 },      /* too big */
		{ 4, 16 },            /* more slots than data */
		{ 8, 0 },             /* max_msg */
		{ 8, 4000 },          /* stride no longer matches */
		{ 8, 0xffffffff },    /* max_msg too big */
		{ 12, 64 },           /* stride */
		{ 12, 0 },
		{ 16, 5000 },         /* participants: more than the data holds */
		{ 16, SHOAL_QUEUE_PARTICIPANTS + 2 }, /* one entry more than it holds */
		{ 16, 0 },            /* no table */
		{ 16, 1 },            /* only entry 0, "nobody" */
		{ 16, (1u << 14) + 1 }, /* more than a slot's owner field names */
		{ 16, 0xffffffff },
		{ 20, 3 },            /* a layout after this library's */
	};
	struct shoal_queue *q = NULL, *o = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *name = t_name("corrupt");

		q = mkq(name, 8, 64);
		poke32(name, KOFF + bad[i].off, bad[i].val);
		ck_assert_msg(shoal_queue_open(name, 0, &o) == -EBADMSG, "field at %d = %u",
			      (int)bad[i].off, bad[i].val);
		ck_assert_int_eq(shoal_queue_unlink(name), -EBADMSG);
		ck_assert_int_eq(shoal_queue_detach(q), 0);
		ck_assert_int_eq(shoal_unlink(name), 0);
	}
	/* The older layouts (0: a glibc mutex where the lock word is; 1: a
	 * fixed table of 1024 entries in the header, slot claims without
	 * spans, whose state words this library would misread): refused as
	 * such, not read. */
	for (uint32_t layout = 0; layout < 2; layout++) {
		const char *name = t_name("layout0");

		q = mkq(name, 8, 64);
		poke32(name, KOFF + 20, layout);
		if (layout == 1)
			poke32(name, KOFF + 16, 1024);
		ck_assert_int_eq(shoal_queue_open(name, 0, &o), -EPROTO);
		ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EPROTO), "made by an older libshoal"));
		ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EPROTO),
					     layout ? "without spans" : "glibc mutex"));
		ck_assert_int_eq(shoal_queue_detach(q), 0);
		ck_assert_int_eq(shoal_unlink(name), 0);
	}
	/* Cursors further apart than the ring. */
	{
		const char *name = t_name("cursors");

		q = mkq(name, 8, 64);
		poke64(name, KOFF + 192, 1000);
		ck_assert_int_eq(shoal_queue_open(name, 0, &o), -EBADMSG);
		ck_assert_int_eq(shoal_queue_detach(q), 0);
		ck_assert_int_eq(shoal_unlink(name), 0);
	}
	ck_assert_ptr_null(o);
}
END_TEST

/* Corruption that happens while the queue is open: errors, not a crash or
 * a read outside the ring, and never a hang. */
START_TEST(corrupt_while_open)
{
	const char *name = t_name("live");
	struct shoal_queue *q = mkq(name, 8, 64);
	uint64_t doff = data_off(name);
	char buf[64];
	size_t len;

	/* A length beyond max_msg in a published slot. */
	ck_assert_int_eq(shoal_queue_push(q, "ok", 2, 0), 0);
	poke32(name, (off_t)doff + 8, 1u << 30);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EBADMSG);
	ck_assert_int_eq(shoal_queue_pop(q, buf, 1u << 31, &len, 0), -EBADMSG);
	ck_assert_int_eq(shoal_queue_pop_many(q, buf, sizeof(buf), &len, 1, 0), -EBADMSG);
	{
		struct shoal_queue_ticket t;

		ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t), -EBADMSG);
	}
	poke32(name, (off_t)doff + 8, 2);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
	/* A tail cursor far from every slot's position. */
	poke64(name, KOFF + 192, 1ull << 40);
	ck_assert_int_eq(shoal_queue_push(q, "x", 1, -1), -EBADMSG);
	ck_assert_int_eq(shoal_queue_push_many(q, "x", &len, 1, -1), -EBADMSG);
	poke64(name, KOFF + 256, 5ull << 40);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, -1), -EBADMSG);
	/* Garbage slot states: masked positions keep us inside the ring. */
	for (int i = 0; i < 8; i++)
		poke64(name, (off_t)(doff + (uint64_t)i * 128), 0xdeadbeefcafef00dull + (uint64_t)i);
	poke64(name, KOFF + 192, 3);
	poke64(name, KOFF + 256, 3);
	ck_assert_int_eq(shoal_queue_push(q, "x", 1, 0), -EBADMSG);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EBADMSG);
	done(q, name);
}
END_TEST

/* ---- kill points: processes that die exactly inside push, pop, recovery ---- */

static enum shoal__queue_point kill_at;
static int kill_after; /* hits to let pass first */

static void kill_hook(enum shoal__queue_point where)
{
	if (where == kill_at && kill_after-- == 0)
		raise(SIGKILL);
}

/* Fork a child that sets the hook and runs @what; it must die by SIGKILL. */
static void die_inside(struct shoal_queue *q, enum shoal__queue_point at, int skip, int what)
{
	pid_t kid = fork();

	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		char buf[64];
		size_t len, lens[3] = { 3, 3, 3 };

		kill_at = at;
		kill_after = skip;
		shoal__queue_hook = kill_hook;
		switch (what) {
		case 0:
			shoal_queue_push(q, "DEAD", 4, -1);
			break;
		case 1:
			shoal_queue_pop(q, buf, sizeof(buf), &len, -1);
			break;
		case 2:
			shoal_queue_push_many(q, "D1.D2.D3.", lens, 3, -1);
			break;
		case 3:
			shoal_queue_pop_many(q, buf, sizeof(buf), lens, 3, -1);
			break;
		default: {
			/* 4: claim and die; 5: claim and ack; 6: claim and nack */
			struct shoal_queue_ticket t;

			if (shoal_queue_claim(q, buf, sizeof(buf), &len, -1, &t) != 0)
				_exit(1);
			if (what == 4)
				raise(SIGKILL);
			if (what == 5)
				shoal_queue_ack(q, &t);
			else
				shoal_queue_nack(q, &t);
			break;
		}
		}
		_exit(0);
	}
	ck_assert_int_eq(t_wait(kid), 128 + SIGKILL);
}

static void expect(struct shoal_queue *q, const char *want, int64_t timeout)
{
	char buf[64];
	size_t len = 0;
	int rc = shoal_queue_pop(q, buf, sizeof(buf), &len, timeout);

	ck_assert_msg(rc == 0, "pop for %s: %s", want, shoal_strerror(rc));
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_msg(memcmp(buf, want, len) == 0, "got %.*s, want %s", (int)len, buf, want);
}

/* Modes 0, 1: push; 2, 3, 4: push_many of D1. D2. D3., which is delivered
 * whole or not at all: nothing once claimed or half written, everything once
 * its last slot is published. */
START_TEST(producer_dies_claimed_or_written)
{
	static const enum shoal__queue_point at[] = { SHOAL__QP_PUSH_CLAIMED, SHOAL__QP_PUSH_WRITTEN,
						      SHOAL__QP_PUSH_CLAIMED, SHOAL__QP_PUSH_WRITTEN,
						      SHOAL__QP_PUSH_SPAN_PUBLISHED };

	for (int mode = 0; mode < 5; mode++) {
		const char *name = t_name("pdie");
		struct shoal_queue *q = mkq(name, 8, 64);
		struct shoal_queue_stats st;
		char buf[64];
		size_t len;
		double t0;

		ck_assert_int_eq(shoal_queue_push(q, "before", 6, 0), 0);
		die_inside(q, at[mode], 0, mode < 2 ? 0 : 2);
		ck_assert_int_eq(shoal_queue_push(q, "after", 5, 0), 0);
		expect(q, "before", 0);
		t0 = now_s();
		if (mode == 4) {
			/* Recovery publishes the first slot, then all flow. */
			expect(q, "D1.", 2000000000);
			expect(q, "D2.", 0);
			expect(q, "D3.", 0);
		}
		/* The dead claim blocks the head until a survivor notices. */
		expect(q, "after", 2000000000);
		ck_assert_msg(now_s() - t0 < 0.5, "took %.3f s", now_s() - t0);
		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.dropped, mode < 2 ? 1 : mode < 4 ? 3 : 0);
		ck_assert_uint_eq(st.pushes, mode < 4 ? 2 : 5);
		ck_assert_uint_ge(st.recoveries, 1);
		ck_assert_uint_eq(st.participants, 1);
		/* Laps later everything still lines up. */
		for (int i = 0; i < 20; i++) {
			ck_assert_int_eq(shoal_queue_push(q, "lap", 3, 0), 0);
			expect(q, "lap", 0);
		}
		done(q, name);
	}
}
END_TEST

/* A consumer asleep behind a dead claim wakes to the message after it. */
START_TEST(consumer_unblocked_by_dead_producer)
{
	const char *name = t_name("pfull");
	struct shoal_queue *q = mkq(name, 2, 64);
	double t0;

	die_inside(q, SHOAL__QP_PUSH_WRITTEN, 0, 0);
	ck_assert_int_eq(shoal_queue_push(q, "one", 3, 0), 0);
	/* Slot of the dead claim is next for the tail: full until recovered
	 * and the tombstone is consumed, which pop does. */
	t0 = now_s();
	expect(q, "one", 2000000000);
	ck_assert(now_s() - t0 < 0.5);
	ck_assert_int_eq(shoal_queue_push(q, "two", 3, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "three", 5, 0), 0);
	expect(q, "two", 0);
	expect(q, "three", 0);
	done(q, name);
}
END_TEST

/* Modes 0, 1: pop; 2, 3, 4: pop_many of m1 m2 m3. A message whose slot the
 * dead consumer had released is its own; every other comes back. */
START_TEST(consumer_dies_claimed_or_copied)
{
	static const enum shoal__queue_point at[] = { SHOAL__QP_POP_CLAIMED, SHOAL__QP_POP_COPIED,
						      SHOAL__QP_POP_CLAIMED, SHOAL__QP_POP_COPIED,
						      SHOAL__QP_POP_SPAN_RELEASED };

	for (int mode = 0; mode < 5; mode++) {
		const char *name = t_name("cdie");
		struct shoal_queue *q = mkq(name, 8, 64);
		struct shoal_queue_stats st;
		char buf[64];
		size_t len, lens[3] = { 2, 2, 2 };
		double t0;

		if (mode < 2) {
			ck_assert_int_eq(shoal_queue_push(q, "m1", 2, 0), 0);
			ck_assert_int_eq(shoal_queue_push(q, "m2", 2, 0), 0);
		} else {
			ck_assert_int_eq(shoal_queue_push_many(q, "m1m2m3", lens, 3, 0), 3);
		}
		die_inside(q, at[mode], 0, mode < 2 ? 1 : 3);
		t0 = now_s();
		if (mode < 2) {
			/* m2 is at the head; m1 comes back once the death is seen. */
			expect(q, "m2", 0);
			expect(q, "m1", 2000000000);
		} else if (mode == 4) {
			/* m2 and m3 were released: consumed by the dead. */
			expect(q, "m1", 2000000000);
		} else {
			expect(q, "m1", 2000000000);
			expect(q, "m2", 0);
			expect(q, "m3", 0);
		}
		ck_assert_msg(now_s() - t0 < 0.5, "took %.3f s", now_s() - t0);
		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 20000000), -ETIMEDOUT);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.redelivered, mode < 2 || mode == 4 ? 1 : 3);
		ck_assert_uint_eq(st.dropped, 0);
		ck_assert_uint_eq(st.pops, mode < 2 ? 2 : 3);
		done(q, name);
	}
}
END_TEST

/* A consumer that died holding the one message a blocked producer waits
 * for: the producer's recovery makes an orphan and wakes consumers. */
START_TEST(orphan_frees_full_queue)
{
	const char *name = t_name("orph");
	struct shoal_queue *q = mkq(name, 2, 64);
	pid_t kid;

	ck_assert_int_eq(shoal_queue_push(q, "a", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "b", 1, 0), 0);
	die_inside(q, SHOAL__QP_POP_COPIED, 0, 1); /* holds "a" */
	kid = fork();
	if (kid == 0) {
		/* A consumer asleep on an empty queue after taking "b". */
		char buf[64];
		size_t len;

		if (shoal_queue_pop(q, buf, sizeof(buf), &len, 0) != 0 || buf[0] != 'b')
			_exit(1);
		if (shoal_queue_pop(q, buf, sizeof(buf), &len, 3000000000LL) != 0 || buf[0] != 'a')
			_exit(2);
		if (shoal_queue_pop(q, buf, sizeof(buf), &len, 3000000000LL) != 0 || buf[0] != 'c')
			_exit(3);
		_exit(0);
	}
	usleep(20000);
	/* Full while "a" is held; these pushes wait for the orphan's pop. */
	ck_assert_int_eq(shoal_queue_push(q, "c", 1, 2000000000), 0);
	ck_assert_int_eq(shoal_queue_push(q, "d", 1, 2000000000), 0);
	ck_assert_int_eq(t_wait(kid), 0);
	expect(q, "d", 0);
	done(q, name);
}
END_TEST

/* The recoverer itself dies with the lock held, after repairing one of two
 * slots: the next locker sees EOWNERDEAD and finishes the job. */
START_TEST(recoverer_dies_inside)
{
	const char *name = t_name("rdie");
	struct shoal_queue *q = mkq(name, 8, 64);
	struct shoal_queue_stats st;
	double t0;

	die_inside(q, SHOAL__QP_PUSH_CLAIMED, 0, 0);
	die_inside(q, SHOAL__QP_PUSH_CLAIMED, 0, 0);
	ck_assert_int_eq(shoal_queue_push(q, "live", 4, 0), 0);
	die_inside(q, SHOAL__QP_RECOVER_FIXED, 0, 1);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.dropped, 1);
	t0 = now_s();
	expect(q, "live", 2000000000);
	ck_assert(now_s() - t0 < 0.5);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.dropped, 2);
	ck_assert_uint_eq(st.participants, 1);
	ck_assert_int_eq(shoal_queue_push(q, "again", 5, 0), 0);
	expect(q, "again", 0);
	done(q, name);
}
END_TEST

/* A recoverer killed halfway through a dead batch's span (its last slot
 * repaired, the others and the first not): the next recovery finishes it,
 * and each message is dropped or given back exactly once. */
START_TEST(recoverer_dies_inside_span)
{
	for (int side = 0; side < 2; side++) {
		const char *name = t_name("rspan");
		struct shoal_queue *q = mkq(name, 8, 64);
		struct shoal_queue_stats st;
		size_t lens[3] = { 2, 2, 2 };
		char buf[64];
		size_t len;
		double t0;

		if (side == 0) {
			/* A producer dead with a span of 3 claimed, nothing
			 * written; a live push goes after it. */
			die_inside(q, SHOAL__QP_PUSH_CLAIMED, 0, 2);
			ck_assert_int_eq(shoal_queue_push(q, "live", 4, 0), 0);
		} else {
			/* A consumer dead with a span of 3 copied, none released. */
			ck_assert_int_eq(shoal_queue_push_many(q, "m1m2m3", lens, 3, 0), 3);
			die_inside(q, SHOAL__QP_POP_COPIED, 0, 3);
		}
		die_inside(q, SHOAL__QP_RECOVER_FIXED, 0, 1);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.dropped, side == 0 ? 1 : 0);
		t0 = now_s();
		if (side == 0) {
			expect(q, "live", 2000000000);
		} else {
			/* Orphans go in ring order. */
			expect(q, "m1", 2000000000);
			expect(q, "m2", 0);
			expect(q, "m3", 0);
		}
		ck_assert_msg(now_s() - t0 < 0.5, "took %.3f s", now_s() - t0);
		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.dropped, side == 0 ? 3 : 0);
		ck_assert_uint_eq(st.redelivered, side == 0 ? 0 : 3);
		ck_assert_uint_eq(st.pushes, side == 0 ? 1 : 3);
		ck_assert_uint_eq(st.participants, 1);
		for (int i = 0; i < 20; i++) {
			ck_assert_int_eq(shoal_queue_push_many(q, "lap", lens, 1, 0), 1);
			expect(q, "la", 0);
		}
		done(q, name);
	}
}
END_TEST

/* The fair wake-up's words (lib/queue.c, wait_for()): line 1's urgent
 * turns and each side's stamp. */
#define URGENT_OFF(side) (KOFF + 72 + 8 * (side))
#define STAMP_OFF(side) (KOFF + 320 + 64 * (side) + 16)

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t peek64(const char *name, off_t off)
{
	uint64_t v = 0;
	int fd = open(t_path(name), O_RDONLY);

	ck_assert_int_eq(pread(fd, &v, 8, off), 8);
	close(fd);
	return v;
}

/* An urgent turn that nobody refreshes (its holder died or stopped, or the
 * bytes are garbage) holds the others back at most HANDOFF_NS (30 ms): try
 * calls defer while it is fresh, then it is cleared; a stamp in the future
 * is stale at once. */
START_TEST(urgent_turn_goes_stale)
{
	const char *name = t_name("urgent");
	struct shoal_queue *q = mkq(name, 4, 8);
	char buf[8];
	size_t len;
	double t0;

	for (int side = 0; side < 2; side++) {
		/* Consumers: a message waits. Producers: room waits. */
		if (side == 0)
			ck_assert_int_eq(shoal_queue_push(q, "m", 1, 0), 0);
		poke64(name, URGENT_OFF(side), 0x123456789abc0005ull);
		poke64(name, STAMP_OFF(side), mono_ns());
		if (side == 0)
			ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN);
		else
			ck_assert_int_eq(shoal_queue_push(q, "p", 1, 0), -EAGAIN);
		t0 = now_s();
		if (side == 0) {
			ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 2000000000), 0);
			ck_assert_int_eq(buf[0], 'm');
		} else {
			ck_assert_int_eq(shoal_queue_push(q, "p", 1, 2000000000), 0);
			expect(q, "p", 0);
		}
		ck_assert_double_gt(now_s() - t0, 0.01);
		ck_assert_double_lt(now_s() - t0, 0.3);
		ck_assert_uint_eq(peek64(name, URGENT_OFF(side)), 0);
	}
	/* Garbage: a stamp in the future, all 0xff. */
	poke64(name, URGENT_OFF(0), UINT64_MAX);
	poke64(name, STAMP_OFF(0), UINT64_MAX);
	ck_assert_int_eq(shoal_queue_push(q, "g", 1, 0), 0);
	expect(q, "g", 0);
	ck_assert_uint_eq(peek64(name, URGENT_OFF(0)), 0);
	done(q, name);
}
END_TEST

/* A sleeper on the urgent futex killed there leaves usleep one too high for
 * good, and a dropped turn's stamp stays fresh for 30 ms: a publish then
 * wakes nobody on that futex and must go on to wake the ordinary sleepers,
 * not leave them a whole sleep slice (50 ms) with a message in the ring. */
#define USLEEP_OFF(side) (KOFF + 320 + 64 * (side) + 12)
#define WAITERS_OFF(side) (KOFF + 320 + 64 * (side) + 4)

START_TEST(dead_urgent_sleeper_swallows_no_wakeup)
{
	const char *name = t_name("usleep");
	struct shoal_queue *q = mkq(name, 4, 8);
	double best = 1e9;

	for (int trial = 0; trial < 5; trial++) {
		int fds[2];
		double t_push, t_got = 0;
		pid_t kid;

		ck_assert_int_eq(pipe(fds), 0);
		kid = fork();
		if (kid == 0) {
			struct shoal_queue *c = NULL;
			char buf[8];
			size_t len;
			double t;

			if (shoal_queue_open(name, 0, &c) != 0 ||
			    shoal_queue_pop(c, buf, sizeof(buf), &len, 2000000000) != 0)
				_exit(1);
			t = now_s();
			_exit(write(fds[1], &t, sizeof(t)) == sizeof(t) ? 0 : 2);
		}
		/* Once the consumer sleeps: a dead urgent sleeper and a fresh
		 * stamp with no turn held. */
		for (int i = 0; i < 2000 && peek64(name, KOFF + 320) >> 32 == 0; i++)
			usleep(1000);
		ck_assert_uint_ne(peek64(name, KOFF + 320) >> 32, 0);
		poke32(name, USLEEP_OFF(0), 1);
		poke64(name, STAMP_OFF(0), mono_ns());
		t_push = now_s();
		ck_assert_int_eq(shoal_queue_push(q, "m", 1, 0), 0);
		ck_assert_int_eq(t_wait(kid), 0);
		ck_assert_int_eq(read(fds[0], &t_got, sizeof(t_got)), (ssize_t)sizeof(t_got));
		close(fds[0]);
		close(fds[1]);
		if (t_got - t_push < best)
			best = t_got - t_push;
		poke32(name, USLEEP_OFF(0), 0);
		poke32(name, WAITERS_OFF(0), 0);
	}
	/* Woken by the push, not by the end of its slice (about 50 ms). */
	ck_assert_msg(best < 0.025, "fastest pop after the push took %.3f s", best);
	done(q, name);
}
END_TEST

/* The spin seats (line32.seat): held by live spinners, by dead ones, or
 * garbage, they never stall a caller. Seats held fresh: the caller sleeps
 * at once and the publish wakes it. Stamps from long ago (a spinner
 * killed in its spin) or in the future (garbage) free the seat: the
 * caller takes seat 0 and gives it back, 0. */
#define SEAT_OFF(side, k) (KOFF + 320 + 64 * (side) + 32 + 8 * (k))

START_TEST(spin_seats_held_or_garbage)
{
	const char *name = t_name("seats");
	struct shoal_queue *q = mkq(name, 4, 8);
	char buf[8];
	size_t len;
	int status;
	double t0;
	pid_t kid;

	/* Held: a producer 30 ms later wakes the consumer. */
	kid = fork();
	if (kid == 0) {
		usleep(30000);
		_exit(shoal_queue_push(q, "w", 1, 0) == 0 ? 0 : 1);
	}
	for (int k = 0; k < 4; k++)
		poke64(name, SEAT_OFF(0, k), mono_ns());
	t0 = now_s();
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 2000000000), 0);
	ck_assert_int_eq(buf[0], 'w');
	ck_assert_double_lt(now_s() - t0, 0.3);
	ck_assert_int_eq(waitpid(kid, &status, 0), kid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* Held, nothing comes: the timeout still holds. */
	for (int k = 0; k < 4; k++)
		poke64(name, SEAT_OFF(0, k), mono_ns());
	ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 20000000), -ETIMEDOUT);
	/* Stale (a spinner killed 1 s ago) and garbage (in the future). */
	for (int g = 0; g < 2; g++) {
		for (int side = 0; side < 2; side++)
			for (int k = 0; k < 4; k++)
				poke64(name, SEAT_OFF(side, k), g ? UINT64_MAX : mono_ns() - 1000000000ull);
		ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 1000000), -ETIMEDOUT);
		ck_assert_uint_eq(peek64(name, SEAT_OFF(0, 0)), 0);
		for (int i = 0; i < 4; i++)
			ck_assert_int_eq(shoal_queue_push(q, "f", 1, 0), 0);
		ck_assert_int_eq(shoal_queue_push(q, "x", 1, 1000000), -ETIMEDOUT);
		ck_assert_uint_eq(peek64(name, SEAT_OFF(1, 0)), 0);
		for (int i = 0; i < 4; i++)
			expect(q, "f", 0);
	}
	done(q, name);
}
END_TEST

/* A consumer that lost a wake-up holds the urgent turn and is SIGKILLed
 * (or SIGSTOPped) there: the others go on within the turn's bound. The
 * turn must name it (its entry is 2: ours is 1). */
START_TEST(urgent_holder_killed)
{
	for (int sig = 0; sig < 2; sig++) {
		const char *name = t_name("urgkill");
		struct shoal_queue *q = mkq(name, 4, 8);
		char buf[8];
		size_t len;
		struct shoal_queue_stats st;
		uint64_t u = 0;
		double t0;
		int status;
		pid_t kid;

		ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), -EAGAIN); /* entry 1 */
		kid = fork();
		if (kid == 0) {
			for (;;)
				shoal_queue_pop(q, buf, 8, &len, -1);
		}
		/* Make it lose a wake-up: stopped in its sleep (not in its
		 * spin, which a loaded machine can stretch), it is woken for a
		 * message that we take before it can run. A few rounds, in
		 * case a slice ran out while it was stopped. */
		for (int round = 0; round < 5 && u == 0; round++) {
			uint64_t slept;

			ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
			slept = st.sleeps;
			for (int i = 0; i < 2000 && st.sleeps == slept; i++) {
				usleep(1000);
				ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
			}
			ck_assert_uint_gt(st.sleeps, slept);
			usleep(5000); /* a turn is claimed after 1 ms of waiting */
			ck_assert_int_eq(kill(kid, SIGSTOP), 0);
			ck_assert_int_eq(waitpid(kid, &status, WUNTRACED), kid);
			ck_assert_int_eq(shoal_queue_push(q, "b", 1, 0), 0);
			ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 0), 0);
			ck_assert_int_eq(kill(kid, SIGCONT), 0);
			for (int i = 0; i < 200 && u == 0; i++) {
				usleep(1000);
				u = peek64(name, URGENT_OFF(0));
			}
		}
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_msg(u != 0, "no urgent turn (round %d, sleeps %llu, pops %llu)", sig,
			      (unsigned long long)st.sleeps, (unsigned long long)st.pops);
		ck_assert_uint_eq(u & ((1u << 14) - 1), 2);
		ck_assert_int_eq(kill(kid, sig ? SIGSTOP : SIGKILL), 0);
		if (!sig)
			t_wait(kid);
		/* Blocking calls: a try call defers to the fresh turn. What
		 * the barging left comes first (the ring holds 4). */
		t0 = now_s();
		ck_assert_int_eq(shoal_queue_push(q, "n", 1, 2000000000), 0);
		for (int i = 0; i < 5; i++) {
			ck_assert_int_eq(shoal_queue_pop(q, buf, 8, &len, 2000000000), 0);
			if (buf[0] == 'n')
				break;
		}
		ck_assert_int_eq(buf[0], 'n');
		ck_assert_double_lt(now_s() - t0, 0.3);
		if (sig) {
			kill(kid, SIGKILL);
			t_wait(kid);
		}
		done(q, name);
	}
}
END_TEST

/* The recovery lock's bytes are untrusted (issue 15, point 2): it is
 * shoal's own lock word, so whatever they hold, a try call returns at once,
 * nothing aborts, a blocking call ends within its timeout plus a bounded
 * time, and a lock naming a dead process (or none) is taken over. With the
 * robust pthread mutex it replaces, the "held" patterns hung the try pop and
 * the owner/kind patterns made glibc abort. */
START_TEST(hostile_lock)
{
	enum { LIVE_SELF, LIVE_INIT, DEAD, GLIBC_HELD, GLIBC_KIND, ALL_FF, RANDOM, NPAT = RANDOM + 4 };
	struct shoal_proc init;
	uint64_t dead_key = 0;
	int fds[2];
	pid_t kid;

	ck_assert_int_eq(shoal_proc_get(1, &init), 0);
	ck_assert_int_eq(pipe(fds), 0);
	kid = fork();
	if (kid == 0) {
		uint64_t k = shoal__self_key();

		_exit(write(fds[1], &k, sizeof(k)) == sizeof(k) ? 0 : 1);
	}
	ck_assert_int_eq(t_wait(kid), 0);
	ck_assert_int_eq(read(fds[0], &dead_key, sizeof(dead_key)), (ssize_t)sizeof(dead_key));
	close(fds[0]);
	close(fds[1]);

	for (int pat = 0; pat < NPAT; pat++) {
		const char *name = t_name("hlock");
		struct shoal_queue *q = mkq(name, 4, 8);
		unsigned char bytes[128] = { 0 };
		uint64_t owner = 0, rng = 0x9e3779b97f4a7c15ull * (uint64_t)(pat + 1);
		struct shoal_queue_ticket t;
		bool live = pat == LIVE_SELF || pat == LIVE_INIT;
		char buf[8];
		size_t len;
		double t0;
		int rc;

		switch (pat) {
		case LIVE_SELF: owner = shoal__self_key(); break;
		case LIVE_INIT: owner = shoal__proc_key(&init); break;
		case DEAD: owner = dead_key; break;
		case GLIBC_HELD: owner = 0x80000000u | (uint32_t)getpid(); break; /* __lock */
		case GLIBC_KIND: owner = 0; bytes[16] = 0x93; bytes[8] = 0xff; break; /* __kind, __owner */
		case ALL_FF: memset(bytes, 0xff, sizeof(bytes)); break;
		default:
			for (size_t i = 0; i < sizeof(bytes); i++) {
				rng = mix(rng + i);
				bytes[i] = (unsigned char)rng;
			}
		}
		if (owner)
			memcpy(bytes, &owner, 8);
		if (pat == DEAD || pat == LIVE_SELF)
			bytes[12] = 5; /* waiters that will never wake */
		ck_assert_int_eq(shoal_queue_push(q, "m", 1, 0), 0);
		poke(name, KOFF + 448, bytes, sizeof(bytes));
		/* A stale orphan count: every pop now wants the lock. */
		poke32(name, KOFF + 68, 1);

		t0 = now_s();
		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
		ck_assert_int_eq(shoal_queue_push(q, "x", 1, 0), 0);
		expect(q, "x", 100000000);
		ck_assert_msg(now_s() - t0 < 0.5, "pattern %d: try calls took %.3f s", pat, now_s() - t0);
		t0 = now_s();
		rc = shoal_queue_pop(q, buf, sizeof(buf), &len, 100000000);
		ck_assert_int_eq(rc, -ETIMEDOUT);
		ck_assert_msg(now_s() - t0 < 1.0, "pattern %d: pop(100 ms) took %.3f s", pat, now_s() - t0);

		/* nack waits for a live holder, boundedly; takes over the rest. */
		if (pat != LIVE_INIT) {
			ck_assert_int_eq(shoal_queue_push(q, "n", 1, 0), 0);
			ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t), 0);
			t0 = now_s();
			rc = shoal_queue_nack(q, &t);
			if (live) {
				ck_assert_int_eq(rc, -EDEADLK);
				ck_assert(now_s() - t0 < 5.0);
				ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
			} else if (rc == 0) {
				expect_claim(q, "n", 1, 0, &t);
				ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
			} else {
				/* Random bytes that name a live process. */
				ck_assert_int_eq(rc, -EDEADLK);
				ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
			}
		}
		if (pat == DEAD || pat == GLIBC_HELD || pat == GLIBC_KIND || pat == ALL_FF) {
			/* Taken over, repaired (the orphan count recounted), freed. */
			struct shoal_queue_stats st;
			int fd = open(t_path(name), O_RDONLY);
			uint64_t now_owner = 1;
			uint32_t orphans = 1;

			ck_assert_int_eq(pread(fd, &now_owner, 8, KOFF + 448), 8);
			ck_assert_int_eq(pread(fd, &orphans, 4, KOFF + 68), 4);
			close(fd);
			ck_assert_msg(now_owner == 0, "pattern %d: owner %llx", pat,
				      (unsigned long long)now_owner);
			ck_assert_uint_eq(orphans, 0);
			ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
			ck_assert_uint_eq(st.redelivered, pat == DEAD || pat >= GLIBC_HELD ? 1 : 0);
		}
		/* A full lap still goes through. */
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(shoal_queue_push(q, "lap", 3, 0), 0);
		for (int k = 0; k < 4; k++)
			expect(q, "lap", 0);
		done(q, name);
	}
}
END_TEST

/* ---- acknowledged delivery ----------------------------------------------------- */

static void expect_claim(struct shoal_queue *q, const char *want, uint32_t redelivered,
			 int64_t timeout, struct shoal_queue_ticket *t)
{
	char buf[64];
	size_t len = 0;
	int rc = shoal_queue_claim(q, buf, sizeof(buf), &len, timeout, t);

	ck_assert_msg(rc == 0, "claim for %s: %s", want, shoal_strerror(rc));
	ck_assert_msg(len == strlen(want) && memcmp(buf, want, len) == 0, "got %.*s, want %s",
		      (int)len, buf, want);
	ck_assert_msg(t->redelivered == redelivered, "%s: redelivered %u, want %u", want,
		      t->redelivered, redelivered);
}

START_TEST(claim_ack_nack)
{
	const char *name = t_name("claim");
	struct shoal_queue *q = mkq(name, 4, 64), *o;
	struct shoal_queue_ticket t, t2, bad;
	struct shoal_queue_stats st;
	char buf[64];
	size_t len;
	pid_t kid;

	/* Arguments. */
	ck_assert_int_eq(shoal_queue_claim(NULL, buf, 8, &len, 0, &t), -EINVAL);
	ck_assert_int_eq(shoal_queue_claim(q, buf, 8, NULL, 0, &t), -EINVAL);
	ck_assert_int_eq(shoal_queue_claim(q, buf, 8, &len, 0, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_claim(q, NULL, 8, &len, 0, &t), -EINVAL);
	ck_assert_int_eq(shoal_queue_ack(NULL, &t), -EINVAL);
	ck_assert_int_eq(shoal_queue_ack(q, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_nack(NULL, &t), -EINVAL);
	ck_assert_int_eq(shoal_queue_nack(q, NULL), -EINVAL);
	/* A ticket before this handle ever claimed: not ours, nothing taken. */
	bad = (struct shoal_queue_ticket){ .id = 3 | (1u << 2) };
	ck_assert_int_eq(shoal_queue_ack(q, &bad), -EINVAL);
	ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t), -EAGAIN);

	/* Claim, ack; a second ack and a nack after it fail. */
	ck_assert_int_eq(shoal_queue_push(q, "one", 3, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "too long for 2", 14, 0), 0);
	expect_claim(q, "one", 0, 0, &t);
	ck_assert_int_eq(shoal_queue_claim(q, buf, 2, &len, 0, &t2), -EMSGSIZE);
	ck_assert_uint_eq(len, 14);
	ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
	ck_assert_int_eq(shoal_queue_ack(q, &t), -ENOENT);
	ck_assert_int_eq(shoal_queue_nack(q, &t), -ENOENT);
	/* Garbage: not a claim state, another handle's owner. */
	bad = t;
	bad.id &= ~3ull;
	ck_assert_int_eq(shoal_queue_ack(q, &bad), -EINVAL);
	bad = t;
	bad.id ^= 1u << 2;
	ck_assert_int_eq(shoal_queue_ack(q, &bad), -EINVAL);
	ck_assert_int_eq(shoal_queue_nack(q, &bad), -EINVAL);

	/* Nack: the message comes back first, with its count, to anyone. */
	expect_claim(q, "too long for 2", 0, 0, &t);
	ck_assert_int_eq(shoal_queue_push(q, "two", 3, 0), 0);
	ck_assert_int_eq(shoal_queue_nack(q, &t), 0);
	ck_assert_int_eq(shoal_queue_nack(q, &t), -ENOENT);
	ck_assert_int_eq(shoal_queue_open(name, 0, &o), 0);
	ck_assert_int_eq(shoal_queue_ack(o, &t), -EINVAL); /* q's ticket */
	expect_claim(o, "too long for 2", 1, 0, &t2);
	ck_assert_int_eq(shoal_queue_ack(q, &t2), -EINVAL); /* o's ticket */
	ck_assert_int_eq(shoal_queue_nack(o, &t2), 0);
	expect_claim(q, "too long for 2", 2, 0, &t);
	ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
	/* A plain pop takes a nacked message too. */
	expect_claim(q, "two", 0, 0, &t);
	ck_assert_int_eq(shoal_queue_nack(q, &t), 0);
	expect(o, "two", 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.redelivered, 3);
	ck_assert_uint_eq(st.depth, 0);

	/* Capacity: an open claim holds its slot, the ring wraps onto it. */
	ck_assert_int_eq(shoal_queue_push(q, "c", 1, 0), 0);
	expect_claim(q, "c", 0, 0, &t);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(shoal_queue_push(q, "d", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.depth, 3);
	ck_assert_int_eq(shoal_queue_push(q, "e", 1, 0), -EAGAIN); /* 3 messages, 4 slots */
	ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
	ck_assert_int_eq(shoal_queue_push(q, "e", 1, 0), 0);
	/* Many claims open at once, acked out of order. */
	{
		struct shoal_queue_ticket ts[4];

		for (int i = 0; i < 3; i++)
			expect_claim(q, "d", 0, 0, &ts[i]);
		expect_claim(q, "e", 0, 0, &ts[3]);
		for (int i = 3; i >= 0; i--)
			ck_assert_int_eq(shoal_queue_ack(q, &ts[i]), 0);
	}

	/* A forked child cannot ack its parent's claim. */
	ck_assert_int_eq(shoal_queue_push(q, "f", 1, 0), 0);
	expect_claim(q, "f", 0, 0, &t);
	kid = fork();
	if (kid == 0)
		_exit(shoal_queue_ack(q, &t) == -EINVAL && shoal_queue_nack(q, &t) == -EINVAL ? 0 : 1);
	ck_assert_int_eq(t_wait(kid), 0);

	/* End of stream waits for open claims: a nack could bring one back. */
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_pop(o, buf, sizeof(buf), &len, 0), -EAGAIN);
	ck_assert_int_eq(shoal_queue_claim(o, buf, sizeof(buf), &len, 20000000, &t2), -ETIMEDOUT);
	ck_assert_int_eq(shoal_queue_nack(q, &t), 0);
	expect(o, "f", 0);
	ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t), -EPIPE);
	ck_assert_int_eq(shoal_queue_detach(o), 0);
	done(q, name);
}
END_TEST

/* Detaching with claims open gives them back, at detach or, if the lock
 * was busy then, when a consumer reaches the end of the stream. */
START_TEST(detach_gives_claims_back)
{
	for (int busy = 0; busy < 2; busy++) {
		const char *name = t_name("cldet");
		struct shoal_queue *q = mkq(name, 4, 64), *o, *n = NULL;
		struct shoal_queue_ticket t, t2;
		struct shoal_queue_stats st;
		char buf[64];
		size_t len;
		double t0;

		ck_assert_int_eq(shoal_queue_open(name, 0, &o), 0);
		ck_assert_int_eq(shoal_queue_push(q, "held", 4, 0), 0);
		if (busy)
			ck_assert_int_eq(shoal_queue_push(q, "next", 4, 0), 0);
		expect_claim(o, "held", 0, 0, &t);
		ck_assert_int_eq(shoal_queue_close(q), 0);
		if (busy) {
			/* A live holder of the recovery lock (this process):
			 * detach cannot recover. */
			uint64_t me = shoal__self_key();

			poke(name, KOFF + 448, &me, 8);
		}
		ck_assert_int_eq(shoal_queue_detach(o), 0);
		if (busy) {
			/* A handle that registers now must not get the entry the
			 * detached claim still names (it would then look alive,
			 * and "held" would never come back). */
			ck_assert_int_eq(shoal_queue_open(name, 0, &n), 0);
			expect_claim(n, "next", 0, 0, &t2);
			ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t), -EAGAIN);
			poke64(name, KOFF + 448, 0);
		}
		t0 = now_s();
		expect_claim(q, "held", 1, 2000000000, &t);
		ck_assert(now_s() - t0 < 1.0);
		ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
		if (n) {
			ck_assert_int_eq(shoal_queue_ack(n, &t2), 0);
			ck_assert_int_eq(shoal_queue_detach(n), 0);
		}
		ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 2000000000, &t), -EPIPE);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.redelivered, 1);
		done(q, name);
	}
}
END_TEST

/* A ticket left over from a nacked claim cannot settle the claim the same
 * handle then takes of the same message (same slot, owner and state). */
START_TEST(stale_ticket_after_nack)
{
	const char *name = t_name("stale");
	struct shoal_queue *q = mkq(name, 4, 64);
	struct shoal_queue_ticket t1, t2;

	ck_assert_int_eq(shoal_queue_push(q, "m", 1, 0), 0);
	expect_claim(q, "m", 0, 0, &t1);
	ck_assert_int_eq(shoal_queue_nack(q, &t1), 0);
	expect_claim(q, "m", 1, 0, &t2);
	ck_assert_uint_eq(t2.id, t1.id); /* the same word: only the count differs */
	ck_assert_int_eq(shoal_queue_ack(q, &t1), -ENOENT);
	ck_assert_int_eq(shoal_queue_nack(q, &t1), -ENOENT);
	ck_assert_int_eq(shoal_queue_ack(q, &t2), 0);
	ck_assert_int_eq(shoal_queue_ack(q, &t2), -ENOENT);
	done(q, name);
}
END_TEST

/* A blocked producer, a plain pop and a claim killed where issue 15 saw
 * messages "lost": a pop killed after its release store (inside its
 * wake-up of the producer) has consumed its message, as its contract says;
 * a claim killed before ack has its message delivered again. */
START_TEST(killed_in_wakeup)
{
	for (int claim = 0; claim < 2; claim++) {
		const char *name = t_name("wake");
		struct shoal_queue *q = mkq(name, 2, 64);
		struct shoal_queue_stats st;
		struct shoal_queue_ticket t;
		char buf[64];
		size_t len;
		double t0;
		pid_t prod;

		ck_assert_int_eq(shoal_queue_push(q, "a", 1, 0), 0);
		ck_assert_int_eq(shoal_queue_push(q, "b", 1, 0), 0);
		prod = fork();
		if (prod == 0)
			_exit(shoal_queue_push(q, "c", 1, 10000000000LL) == 0 ? 0 : 1);
		/* Until the producer sleeps on the full ring (bounded). */
		t0 = now_s();
		do {
			ck_assert_msg(now_s() - t0 < 10, "producer never slept");
			usleep(1000);
			ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		} while (st.sleeps == 0);
		die_inside(q, claim ? SHOAL__QP_POP_COPIED : SHOAL__QP_POP_RELEASED, 0, claim ? 1 + 3 : 1);
		t0 = now_s();
		if (!claim) {
			/* "a" is consumed: the producer got its slot. */
			ck_assert_int_eq(t_wait(prod), 0);
			expect(q, "b", 0);
			expect(q, "c", 0);
			ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
		} else {
			/* "a" is still the queue's: it comes back, then "c". */
			expect(q, "b", 0);
			expect_claim(q, "a", 1, 2000000000, &t);
			ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
			ck_assert_int_eq(t_wait(prod), 0);
			expect(q, "c", 0);
		}
		ck_assert_msg(now_s() - t0 < 1.5, "took %.3f s", now_s() - t0);
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.redelivered, claim);
		ck_assert_uint_eq(st.pops, 3); /* a second delivery is in redelivered */
		done(q, name);
	}
}
END_TEST

/* A claimer killed at every point inside claim, between claim and ack, and
 * inside ack and nack: its message comes back exactly once, with its
 * count, unless the ack's release store had happened. */
START_TEST(claimer_dies_everywhere)
{
	static const struct {
		enum shoal__queue_point at; /* 0: after claim returned */
		int what;
		bool consumed;
	} cases[] = {
		{ SHOAL__QP_POP_CLAIMED, 4, false },  { SHOAL__QP_POP_COPIED, 4, false },
		{ 0, 4, false },                      { SHOAL__QP_ACK_CHECKED, 5, false },
		{ SHOAL__QP_ACK_RELEASED, 5, true },  { SHOAL__QP_NACK_LOCKED, 6, false },
		{ SHOAL__QP_NACK_ORPHANED, 6, false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *name = t_name("cldie");
		struct shoal_queue *q = mkq(name, 4, 64);
		struct shoal_queue_ticket t;
		struct shoal_queue_stats st;
		char buf[64];
		size_t len;
		double t0;

		ck_assert_int_eq(shoal_queue_push(q, "m1", 2, 0), 0);
		ck_assert_int_eq(shoal_queue_push(q, "m2", 2, 0), 0);
		if (cases[i].at) {
			die_inside(q, cases[i].at, 0, cases[i].what);
		} else {
			pid_t kid = fork();

			if (kid == 0) {
				if (shoal_queue_claim(q, buf, sizeof(buf), &len, -1, &t) == 0)
					raise(SIGKILL);
				_exit(1);
			}
			ck_assert_int_eq(t_wait(kid), 128 + SIGKILL);
		}
		t0 = now_s();
		expect_claim(q, "m2", 0, 0, &t);
		ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
		if (cases[i].consumed) {
			ck_assert_int_eq(shoal_queue_claim(q, buf, sizeof(buf), &len, 200000000, &t),
					 -ETIMEDOUT);
		} else {
			/* Once more: a second claimer of m1 dies too. */
			die_inside(q, 0, 0, 4);
			expect_claim(q, "m1", 2, 2000000000, &t);
			ck_assert_msg(now_s() - t0 < 1.5, "case %zu took %.3f s", i, now_s() - t0);
			ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
			ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 100000000),
					 -ETIMEDOUT);
		}
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		ck_assert_uint_eq(st.redelivered, cases[i].consumed ? 0 : 2);
		/* A claimer that died holding nothing (its ack was released)
		 * is found by the sweep, 64 entries per 50 ms, which a try
		 * runs: on a loaded machine it may need a few more. */
		for (int k = 0; k < 300 && st.participants != 1; k++) {
			usleep(10000);
			ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
			ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		}
		ck_assert_uint_eq(st.participants, 1);
		/* The ring is whole: a full lap goes through. */
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(shoal_queue_push(q, "lap", 3, 0), 0);
		for (int k = 0; k < 4; k++)
			expect(q, "lap", 0);
		done(q, name);
	}
}
END_TEST

/* ---- stress, cross-process ----------------------------------------------------- */

/* A message: who, which, a checksum over all of it; 24..64 bytes long. */
struct tmsg {
	uint32_t who;
	uint32_t len;
	uint64_t seq;
	uint64_t sum;
	unsigned char fill[40];
};
#define TMSG_MIN 24

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return x;
}

static size_t tmsg_make(struct tmsg *m, uint32_t who, uint64_t seq)
{
	uint64_t h = mix(((uint64_t)who << 40) ^ seq);

	m->who = who;
	m->seq = seq;
	m->len = TMSG_MIN + (uint32_t)(h % 41);
	for (uint32_t i = 0; i < m->len - TMSG_MIN; i++)
		m->fill[i] = (unsigned char)(h >> (i % 8 * 8)) ^ (unsigned char)i;
	m->sum = h ^ m->len;
	return m->len;
}

/* Whole and untorn? */
static bool tmsg_ok(const struct tmsg *m, size_t len)
{
	struct tmsg w;

	if (len < TMSG_MIN || len > sizeof(w) || m->len != len)
		return false;
	tmsg_make(&w, m->who, m->seq);
	return w.len == len && w.sum == m->sum && memcmp(w.fill, m->fill, len - TMSG_MIN) == 0;
}

struct stress_shared {
	_Atomic uint64_t popped;
	_Atomic uint32_t bad; /* first failure code, 0 = none */
	uint32_t pad;
	_Atomic uint64_t bits[]; /* one per message: popped yet? */
};

static void stress_fail(struct stress_shared *sh, uint32_t code)
{
	uint32_t zero = 0;

	atomic_compare_exchange_strong(&sh->bad, &zero, code);
}

static void stress_producer(const char *name, struct stress_shared *sh, uint32_t who,
			    uint64_t count, bool batch)
{
	struct shoal_queue *q;
	struct tmsg m[16];
	unsigned char packed[16 * sizeof(struct tmsg)];
	size_t lens[16];

	if (shoal_queue_open(name, 0, &q) != 0)
		_exit(10);
	for (uint64_t s = 0; s < count;) {
		if (batch && (s / 1000) % 2) {
			size_t n = count - s < 16 ? (size_t)(count - s) : 16, off = 0;
			ssize_t k;

			for (size_t i = 0; i < n; i++) {
				lens[i] = tmsg_make(&m[i], who, s + i);
				memcpy(packed + off, &m[i], lens[i]);
				off += lens[i];
			}
			k = shoal_queue_push_many(q, packed, lens, n, -1);
			if (k <= 0) {
				stress_fail(sh, 11);
				_exit(11);
			}
			s += (uint64_t)k; /* the rest go again next round */
		} else {
			size_t len = tmsg_make(&m[0], who, s);

			if (shoal_queue_push(q, &m[0], len, -1) != 0) {
				stress_fail(sh, 12);
				_exit(12);
			}
			s++;
		}
	}
	shoal_queue_detach(q);
	_exit(0);
}

static void stress_consume_one(struct stress_shared *sh, uint64_t *last, uint64_t per,
			       const struct tmsg *m, size_t len, uint32_t np)
{
	uint64_t bit;

	if (!tmsg_ok(m, len) || m->who >= np || m->seq >= per) {
		stress_fail(sh, 20);
		return;
	}
	/* One consumer sees each producer's messages in order. */
	if (last[m->who] != UINT64_MAX && m->seq <= last[m->who])
		stress_fail(sh, 21);
	last[m->who] = m->seq;
	bit = m->who * per + m->seq;
	if (atomic_fetch_or_explicit(&sh->bits[bit / 64], 1ull << (bit % 64),
				     memory_order_relaxed) & (1ull << (bit % 64)))
		stress_fail(sh, 22); /* twice */
}

static void stress_consumer(const char *name, struct stress_shared *sh, uint32_t np,
			    uint64_t per, bool batch)
{
	struct shoal_queue *q;
	uint64_t last[16], n = 0;
	struct tmsg m[16];
	size_t lens[16];
	int rc;

	memset(last, 0xff, sizeof(last));
	if (shoal_queue_open(name, 0, &q) != 0)
		_exit(30);
	for (;;) {
		if (batch && (n / 1000) % 2) {
			ssize_t k = shoal_queue_pop_many(q, m, sizeof(m), lens, 16, -1);
			const unsigned char *p = (const unsigned char *)m;

			if (k < 0) {
				rc = (int)k;
				break;
			}
			for (ssize_t i = 0; i < k; i++) {
				struct tmsg one;

				memcpy(&one, p, lens[i]);
				p += lens[i];
				stress_consume_one(sh, last, per, &one, lens[i], np);
			}
			n += (uint64_t)k;
		} else {
			size_t len;

			rc = shoal_queue_pop(q, &m[0], sizeof(m[0]), &len, -1);
			if (rc)
				break;
			stress_consume_one(sh, last, per, &m[0], len, np);
			n++;
		}
	}
	atomic_fetch_add(&sh->popped, n);
	shoal_queue_detach(q);
	_exit(rc == -EPIPE ? 0 : 31);
}

static void stress(uint32_t np, uint32_t nc, uint64_t total, uint32_t cap, bool batch)
{
	const char *name = t_name("stress");
	struct shoal_queue *q = mkq(name, cap, sizeof(struct tmsg));
	uint64_t per = total / np;
	size_t words = (size_t)(per * np + 63) / 64;
	size_t shsize = sizeof(struct stress_shared) + words * 8;
	struct stress_shared *sh = shared_mem(shsize);
	struct shoal_queue_stats st;
	pid_t prod[16], cons[16];
	double t0 = now_s();

	for (uint32_t i = 0; i < nc; i++) {
		cons[i] = fork();
		if (cons[i] == 0)
			stress_consumer(name, sh, np, per, batch);
	}
	for (uint32_t i = 0; i < np; i++) {
		prod[i] = fork();
		if (prod[i] == 0)
			stress_producer(name, sh, i, per, batch);
	}
	for (uint32_t i = 0; i < np; i++)
		ck_assert_int_eq(t_wait(prod[i]), 0);
	/* Everything is pushed: close, and the consumers drain and stop. */
	ck_assert_int_eq(shoal_queue_close(q), 0);
	for (uint32_t i = 0; i < nc; i++)
		ck_assert_int_eq(t_wait(cons[i]), 0);
	ck_assert_int_eq(atomic_load(&sh->bad), 0);
	ck_assert_uint_eq(atomic_load(&sh->popped), per * np);
	for (uint64_t b = 0; b < per * np; b++)
		if (!(atomic_load_explicit(&sh->bits[b / 64], memory_order_relaxed) & (1ull << (b % 64))))
			ck_abort_msg("message %llu (producer %llu seq %llu) never popped",
				     (unsigned long long)b, (unsigned long long)(b / per),
				     (unsigned long long)(b % per));
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.pushes, per * np);
	ck_assert_uint_eq(st.pops, per * np);
	ck_assert_uint_eq(st.depth, 0);
	fprintf(stderr, "stress %ux%u: %llu messages in %.2f s (%.2f M/s), %llu sleeps\n", np, nc,
		(unsigned long long)(per * np), now_s() - t0, (double)(per * np) / (now_s() - t0) / 1e6,
		(unsigned long long)st.sleeps);
	munmap(sh, shsize);
	done(q, name);
}

START_TEST(stress_4x4_10M)
{
	stress(4, 4, 10000000, 1024, false);
}
END_TEST

START_TEST(stress_1x1)
{
	stress(1, 1, 4000000, 256, false);
}
END_TEST

START_TEST(stress_8x1)
{
	stress(8, 1, 4000000, 64, false);
}
END_TEST

START_TEST(stress_batches_3x3_small_ring)
{
	stress(3, 3, 3000000, 8, true);
}
END_TEST

/* ---- crash: kill and respawn, again and again ---------------------------------- */

#define MAX_INC 4096 /* producer incarnations */
#define CRASH_LIMIT 4000000ull
#define CRASH_BATCH 8
/*
 * Deaths a crash run waits for at least. Under a sanitizer a fork and an
 * exit cost tens of milliseconds (its shadow mappings), so 250 took the
 * three crash runs 240 s of the suite's 15 minutes; 60 still kill in
 * every hook point's neighbourhood, and the sanitizers are there for what
 * the recovery paths touch, not for how often. The soak keeps 250.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CRASH_KILLS 60
#else
#define CRASH_KILLS 250
#endif

struct rec {
	uint64_t seq;
	uint32_t who; /* incarnation + 1; 0 = a hole (killed while appending) */
	uint32_t torn;
	/* Claim runs: the claimer's incarnation, the ticket's count, and how
	 * far it got. */
	uint32_t cons;
	uint32_t redelivered;
	_Atomic uint32_t state;
	uint32_t pad;
};
enum { R_CLAIMED = 1, R_ACKING, R_ACKED, R_NACKED };

struct crash_shared {
	_Atomic uint64_t pushed;    /* all producers, to bound the run */
	_Atomic uint64_t nrec;      /* records appended to log */
	_Atomic uint32_t stop;      /* producers: stop pushing */
	_Atomic uint32_t bad;
	uint32_t batch;             /* push_many / pop_many of up to CRASH_BATCH */
	_Atomic uint64_t acked[MAX_INC];  /* per incarnation: pushes that returned 0 */
	struct tmsg staging[MAX_INC];     /* per consumer incarnation: pop lands here */
	/* Batch runs: pop_many lands here, packed, with its lengths (0 ends). */
	unsigned char bstaging[MAX_INC][CRASH_BATCH * sizeof(struct tmsg)];
	size_t blens[MAX_INC][CRASH_BATCH];
	_Atomic uint32_t cons_dead[MAX_INC];
	struct rec log[];
};

/* Die by SIGKILL at a random kill point now and then. */
static _Atomic uint32_t hook_rng;
static void random_kill_hook(enum shoal__queue_point where)
{
	uint32_t x = atomic_load_explicit(&hook_rng, memory_order_relaxed);

	(void)where;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	atomic_store_explicit(&hook_rng, x, memory_order_relaxed);
	if (x % 3000 == 0)
		raise(SIGKILL);
}

static void crash_producer(const char *name, struct crash_shared *sh, uint32_t inc)
{
	struct shoal_queue *q;
	struct tmsg m;

	atomic_store(&hook_rng, (uint32_t)getpid() * 2654435761u | 1);
	if (inc % 2)
		shoal__queue_hook = random_kill_hook;
	if (shoal_queue_open(name, 0, &q) != 0)
		_exit(40);
	for (uint64_t s = 0; !atomic_load(&sh->stop); s++) {
		size_t len = tmsg_make(&m, inc, s);
		int rc;

		if (atomic_load_explicit(&sh->pushed, memory_order_relaxed) >= CRASH_LIMIT) {
			usleep(1000);
			s--;
			continue;
		}
		if (sh->batch) {
			/* Batches of 1..CRASH_BATCH: each delivered whole or not at
			 * all if we die inside it, so at most CRASH_BATCH past the
			 * acknowledged ones. */
			unsigned char packed[CRASH_BATCH * sizeof(struct tmsg)];
			size_t lens[CRASH_BATCH], n = 1 + s % CRASH_BATCH, off = 0;
			ssize_t k;

			for (size_t i = 0; i < n; i++) {
				lens[i] = tmsg_make(&m, inc, s + i);
				memcpy(packed + off, &m, lens[i]);
				off += lens[i];
			}
			k = shoal_queue_push_many(q, packed, lens, n, 100000000);
			if (k == -ETIMEDOUT) {
				s--;
				continue;
			}
			if (k <= 0) {
				atomic_store(&sh->bad, 42);
				_exit(42);
			}
			atomic_store_explicit(&sh->acked[inc], s + (uint64_t)k, memory_order_release);
			atomic_fetch_add_explicit(&sh->pushed, (uint64_t)k, memory_order_relaxed);
			s += (uint64_t)k - 1;
			continue;
		}
		rc = shoal_queue_push(q, &m, len, 100000000);
		if (rc == -ETIMEDOUT) {
			s--;
			continue;
		}
		if (rc != 0) {
			atomic_store(&sh->bad, 41);
			_exit(41);
		}
		atomic_store_explicit(&sh->acked[inc], s + 1, memory_order_release);
		atomic_fetch_add_explicit(&sh->pushed, 1, memory_order_relaxed);
	}
	shoal_queue_detach(q);
	_exit(0);
}

static void crash_consumer(const char *name, struct crash_shared *sh, uint32_t inc)
{
	struct tmsg *stage = &sh->staging[inc];
	struct shoal_queue *q;
	int rc;

	atomic_store(&hook_rng, (uint32_t)getpid() * 2246822519u | 1);
	if (inc % 2)
		shoal__queue_hook = random_kill_hook;
	if (shoal_queue_open(name, 0, &q) != 0)
		_exit(50);
	while (sh->batch) {
		unsigned char *b = sh->bstaging[inc];
		size_t *lens = sh->blens[inc];
		ssize_t k;

		memset(lens, 0, sizeof(sh->blens[inc]));
		k = shoal_queue_pop_many(q, b, sizeof(sh->bstaging[inc]), lens, CRASH_BATCH, -1);
		if (k < 0) {
			rc = (int)k;
			goto out;
		}
		for (ssize_t j = 0; j < k; j++) {
			struct tmsg m = { 0 };
			uint64_t i = atomic_fetch_add(&sh->nrec, 1);

			memcpy(&m, b, lens[j] < sizeof(m) ? lens[j] : sizeof(m));
			b += lens[j];
			sh->log[i].seq = m.seq;
			sh->log[i].torn = !tmsg_ok(&m, lens[j]);
			atomic_store_explicit((_Atomic uint32_t *)&sh->log[i].who, m.who + 1,
					      memory_order_release);
		}
	}
	for (;;) {
		size_t len;
		uint64_t i;

		rc = shoal_queue_pop(q, stage, sizeof(*stage), &len, -1);
		if (rc)
			break;
		i = atomic_fetch_add(&sh->nrec, 1);
		sh->log[i].seq = stage->seq;
		sh->log[i].torn = !tmsg_ok(stage, len);
		atomic_store_explicit((_Atomic uint32_t *)&sh->log[i].who, stage->who + 1,
				      memory_order_release);
	}
out:
	shoal_queue_detach(q);
	_exit(rc == -EPIPE ? 0 : 51);
}

/* Claim, log, ack (every 64th: nack), until the end of the stream. */
static void crash_claimer(const char *name, struct crash_shared *sh, uint32_t inc)
{
	struct tmsg *stage = &sh->staging[inc];
	struct shoal_queue *q;
	uint64_t n = 0;
	int rc;

	atomic_store(&hook_rng, (uint32_t)getpid() * 2246822519u | 1);
	if (inc % 2)
		shoal__queue_hook = random_kill_hook;
	if (shoal_queue_open(name, 0, &q) != 0)
		_exit(50);
	for (;; n++) {
		struct shoal_queue_ticket t;
		struct rec *r;
		size_t len;

		rc = shoal_queue_claim(q, stage, sizeof(*stage), &len, -1, &t);
		if (rc)
			break;
		r = &sh->log[atomic_fetch_add(&sh->nrec, 1)];
		r->seq = stage->seq;
		r->torn = !tmsg_ok(stage, len);
		r->cons = inc;
		r->redelivered = t.redelivered;
		atomic_store(&r->state, R_CLAIMED);
		atomic_store_explicit((_Atomic uint32_t *)&r->who, stage->who + 1,
				      memory_order_release);
		if (n % 64 == 63) {
			if (shoal_queue_nack(q, &t) != 0)
				_exit(52);
			atomic_store(&r->state, R_NACKED);
			continue;
		}
		atomic_store(&r->state, R_ACKING);
		if (shoal_queue_ack(q, &t) != 0)
			_exit(53);
		atomic_store(&r->state, R_ACKED);
	}
	shoal_queue_detach(q);
	_exit(rc == -EPIPE ? 0 : 51);
}

/* The claim run's verdict, from the log in delivery order: each
 * acknowledged push was delivered and acked exactly once; a delivery
 * followed by another of the same message was nacked or its claimer died
 * before acking; the duplicates are no more than the redeliveries, and
 * those no more than the claimers' deaths plus the nacks. */
static void claim_verdict(struct crash_shared *sh, struct shoal_queue *q, uint32_t next_p,
			  uint32_t next_c, unsigned kills, unsigned deaths, double t0)
{
	uint64_t nrec = atomic_load(&sh->nrec), delivered = 0, dups = 0, nacks = 0, ack_dead = 0;
	uint64_t cdeaths = 0;
	uint8_t *cnt[MAX_INC], *last_state[MAX_INC];
	uint32_t *last_cons[MAX_INC];
	struct shoal_queue_stats st;

	for (uint32_t i = 0; i < next_c; i++)
		cdeaths += atomic_load(&sh->cons_dead[i]) != 0;
	for (uint32_t i = 0; i < next_p; i++) {
		uint64_t n = atomic_load(&sh->acked[i]) + 2;

		cnt[i] = calloc(n, 1);
		last_state[i] = calloc(n, 1);
		last_cons[i] = calloc(n, 4);
	}
	for (uint64_t r = 0; r < nrec; r++) {
		struct rec *e = &sh->log[r];
		uint32_t w, s = atomic_load(&e->state);
		uint64_t a;

		if (e->who == 0)
			continue; /* its claimer died logging: not acked, comes again */
		ck_assert_msg(!e->torn, "torn message in the log");
		ck_assert_uint_le(e->who, next_p);
		w = e->who - 1;
		a = atomic_load(&sh->acked[w]);
		ck_assert_msg(e->seq <= a, "inc %u seq %llu claimed but never pushed", w,
			      (unsigned long long)e->seq);
		if (cnt[w][e->seq]) {
			uint32_t ps = last_state[w][e->seq], pc = last_cons[w][e->seq];

			ck_assert_msg(ps == R_NACKED || (ps != R_ACKED && atomic_load(&sh->cons_dead[pc])),
				      "inc %u seq %llu delivered again after state %u by %s claimer", w,
				      (unsigned long long)e->seq, ps,
				      atomic_load(&sh->cons_dead[pc]) ? "a dead" : "a live");
			dups++;
		}
		ck_assert_msg(e->redelivered >= cnt[w][e->seq], "count %u after %u deliveries",
			      e->redelivered, cnt[w][e->seq]);
		nacks += s == R_NACKED;
		cnt[w][e->seq]++;
		last_state[w][e->seq] = (uint8_t)s;
		last_cons[w][e->seq] = e->cons;
		delivered++;
	}
	for (uint32_t i = 0; i < next_p; i++) {
		uint64_t a = atomic_load(&sh->acked[i]);

		for (uint64_t s = 0; s <= a; s++) {
			uint8_t ls = last_state[i][s];

			if (s == a && cnt[i][s] == 0)
				continue; /* a push in flight when its producer died */
			ck_assert_msg(cnt[i][s], "inc %u seq %llu acknowledged but never claimed", i,
				      (unsigned long long)s);
			if (ls == R_ACKED)
				continue;
			/* Killed inside ack: it may have released the slot. */
			ck_assert_msg(ls == R_ACKING && atomic_load(&sh->cons_dead[last_cons[i][s]]),
				      "inc %u seq %llu never acked (last state %u)", i,
				      (unsigned long long)s, ls);
			ack_dead++;
		}
		free(cnt[i]);
		free(last_state[i]);
		free(last_cons[i]);
	}
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	fprintf(stderr,
		"claim crash: %u kills sent, %u deaths (%llu claimers) in %.1f s; %llu deliveries, "
		"%llu again (%llu nacked), %llu killed inside ack; redelivered %llu, recoveries "
		"%llu, dropped %llu\n",
		kills, deaths, (unsigned long long)cdeaths, now_s() - t0,
		(unsigned long long)delivered, (unsigned long long)dups, (unsigned long long)nacks,
		(unsigned long long)ack_dead, (unsigned long long)st.redelivered,
		(unsigned long long)st.recoveries, (unsigned long long)st.dropped);
	ck_assert_uint_le(dups, st.redelivered);
	ck_assert_uint_le(st.redelivered, cdeaths + nacks);
	ck_assert_uint_ge(nacks, 1);
	ck_assert_uint_gt(delivered, 10000);
}

static void crash_run(double seconds, unsigned min_kills, bool claim, bool batch)
{
	enum { NP = 4, NC = 4 };
	const char *name = t_name("crash");
	struct shoal_queue *q = mkq(name, 64, sizeof(struct tmsg));
	size_t shsize = sizeof(struct crash_shared) +
			(CRASH_LIMIT + CRASH_LIMIT / 32 + 4 * MAX_INC) * sizeof(struct rec);
	struct crash_shared *sh = shared_mem(shsize);
	uint64_t ahead = batch ? CRASH_BATCH : 1; /* a dying producer's pushes past its acked */
	pid_t prod[NP], cons[NC];
	uint32_t prod_inc[NP], cons_inc[NC], next_p = 0, next_c = 0;
	unsigned kills = 0, deaths = 0;
	uint64_t rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull, last_rec = 0;
	double t0 = now_s(), last_progress = t0;
	struct shoal_queue_stats st;

	sh->batch = batch;
	for (int i = 0; i < NP; i++) {
		prod_inc[i] = next_p++;
		if ((prod[i] = fork()) == 0)
			crash_producer(name, sh, prod_inc[i]);
	}
	for (int i = 0; i < NC; i++) {
		cons_inc[i] = next_c++;
		if ((cons[i] = fork()) == 0)
			(claim ? crash_claimer : crash_consumer)(name, sh, cons_inc[i]);
	}
	while (deaths < min_kills || now_s() - t0 < seconds) {
		int k, st_;
		pid_t dead;

		usleep(2000 + (unsigned)(rng % 8000));
		rng = mix(rng + 1);
		k = (int)(rng % (NP + NC));
		if (k < NP) {
			kill(prod[k], SIGKILL);
		} else {
			kill(cons[k - NP], SIGKILL);
		}
		kills++;
		/* Reap whoever died (the victim, or one the hook killed). */
		while ((dead = waitpid(-1, &st_, WNOHANG)) > 0) {
			deaths++;
			for (int i = 0; i < NP; i++)
				if (prod[i] == dead) {
					ck_assert_msg(WIFSIGNALED(st_), "producer exited %d", WEXITSTATUS(st_));
					ck_assert_uint_lt(next_p, MAX_INC);
					prod_inc[i] = next_p++;
					if ((prod[i] = fork()) == 0)
						crash_producer(name, sh, prod_inc[i]);
				}
			for (int i = 0; i < NC; i++)
				if (cons[i] == dead) {
					ck_assert_msg(WIFSIGNALED(st_), "consumer exited %d", WEXITSTATUS(st_));
					ck_assert_uint_lt(next_c, MAX_INC);
					atomic_store(&sh->cons_dead[cons_inc[i]], 1);
					cons_inc[i] = next_c++;
					if ((cons[i] = fork()) == 0)
						(claim ? crash_claimer : crash_consumer)(name, sh,
											 cons_inc[i]);
				}
		}
		if (atomic_load(&sh->nrec) != last_rec) {
			last_rec = atomic_load(&sh->nrec);
			last_progress = now_s();
		}
		/* The producers stop at CRASH_LIMIT; before that, no stall. */
		if (atomic_load(&sh->pushed) < CRASH_LIMIT - 1000)
			ck_assert_msg(now_s() - last_progress < 2.0, "no progress for 2 s");
		ck_assert_int_eq(atomic_load(&sh->bad), 0);
	}
	/* Wind down: producers stop, then the queue closes and drains. */
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < NP; i++) {
		int rc = t_wait(prod[i]);

		ck_assert_msg(rc == 0 || rc == 128 + SIGKILL, "producer exit %d", rc);
	}
	ck_assert_int_eq(shoal_queue_close(q), 0);
	for (int i = 0; i < NC; i++) {
		int rc = t_wait(cons[i]);

		ck_assert_msg(rc == 0 || rc == 128 + SIGKILL, "consumer exit %d", rc);
		if (rc)
			atomic_store(&sh->cons_dead[cons_inc[i]], 1);
	}
	/* A consumer killed while the others were already gone leaves its
	 * orphan to nobody: take what is left ourselves. */
	for (;;) {
		struct shoal_queue_ticket t = { 0 };
		struct tmsg m;
		size_t len;
		uint64_t i;
		int rc = claim ? shoal_queue_claim(q, &m, sizeof(m), &len, 300000000, &t)
			       : shoal_queue_pop(q, &m, sizeof(m), &len, 300000000);

		if (rc == -EPIPE)
			break;
		ck_assert_msg(rc == 0, "final drain: %s", shoal_strerror(rc));
		i = atomic_fetch_add(&sh->nrec, 1);
		sh->log[i].seq = m.seq;
		sh->log[i].torn = !tmsg_ok(&m, len);
		sh->log[i].who = m.who + 1;
		sh->log[i].cons = next_c; /* the parent: never dies */
		sh->log[i].redelivered = t.redelivered;
		atomic_store(&sh->log[i].state, claim ? R_ACKED : 0);
		if (claim)
			ck_assert_int_eq(shoal_queue_ack(q, &t), 0);
	}
	ck_assert_int_eq(atomic_load(&sh->bad), 0);
	if (claim) {
		claim_verdict(sh, q, next_p, next_c, kills, deaths, t0);
		munmap(sh, shsize);
		done(q, name);
		return;
	}

	/* The verdict: count every (incarnation, seq) in the log. */
	{
		uint64_t nrec = atomic_load(&sh->nrec), delivered = 0, excused = 0, inflight = 0;
		uint8_t *seen[MAX_INC];

		for (uint32_t i = 0; i < next_p; i++)
			seen[i] = calloc(atomic_load(&sh->acked[i]) + ahead + 1, 1);
		for (uint64_t r = 0; r < nrec; r++) {
			struct rec *e = &sh->log[r];
			uint64_t a;

			if (e->who == 0)
				continue; /* the appender died mid-append: see staging */
			ck_assert_msg(!e->torn, "torn message in the log");
			ck_assert_uint_le(e->who, next_p);
			a = atomic_load(&sh->acked[e->who - 1]);
			ck_assert_msg(e->seq < a + ahead, "inc %u seq %llu popped but never pushed (acked %llu)",
				      e->who - 1, (unsigned long long)e->seq, (unsigned long long)a);
			ck_assert_msg(seen[e->who - 1][e->seq]++ == 0, "inc %u seq %llu popped twice",
				      e->who - 1, (unsigned long long)e->seq);
			delivered++;
		}
		/* Lost? Only if no dead consumer holds it in its staging area
		 * (killed after its pop returned, before it logged). */
		for (uint32_t i = 0; i < next_c; i++) {
			struct tmsg *m = &sh->staging[i];

			if (atomic_load(&sh->cons_dead[i]) && tmsg_ok(m, m->len) && m->who < next_p &&
			    m->seq <= atomic_load(&sh->acked[m->who]) && !seen[m->who][m->seq]) {
				seen[m->who][m->seq] = 1;
				excused++;
			}
			/* A batch consumer: every message its last pop_many copied
			 * (each says its own length: a pop_many that took an
			 * orphan and died before returning set no length). */
			for (size_t off = 0; batch && atomic_load(&sh->cons_dead[i]) &&
					     off + TMSG_MIN <= sizeof(sh->bstaging[i]);) {
				struct tmsg b = { 0 };
				size_t l = sizeof(sh->bstaging[i]) - off;

				memcpy(&b, sh->bstaging[i] + off, l < sizeof(b) ? l : sizeof(b));
				if (!tmsg_ok(&b, b.len) || b.who >= next_p ||
				    b.seq >= atomic_load(&sh->acked[b.who]) + ahead)
					break;
				if (!seen[b.who][b.seq]) {
					seen[b.who][b.seq] = 1;
					excused++;
				}
				off += b.len;
			}
		}
		for (uint32_t i = 0; i < next_p; i++) {
			uint64_t a = atomic_load(&sh->acked[i]);

			for (uint64_t s = 0; s < a; s++)
				ck_assert_msg(seen[i][s], "inc %u seq %llu acknowledged but lost (acked %llu)",
					      i, (unsigned long long)s, (unsigned long long)a);
			for (uint64_t s = a; s < a + ahead; s++)
				inflight += seen[i][s] != 0;
			free(seen[i]);
		}
		ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
		fprintf(stderr,
			"crash: %u kills sent, %u deaths in %.1f s; %llu delivered, %llu held by dead "
			"consumers, %llu pushes of dying producers delivered; recoveries %llu, dropped "
			"%llu, redelivered %llu\n",
			kills, deaths, now_s() - t0,
			(unsigned long long)delivered, (unsigned long long)excused,
			(unsigned long long)inflight, (unsigned long long)st.recoveries,
			(unsigned long long)st.dropped, (unsigned long long)st.redelivered);
		ck_assert_uint_ge(deaths, min_kills);
		ck_assert_uint_gt(delivered, 10000);
		ck_assert_uint_gt(st.recoveries, 0);
	}
	munmap(sh, shsize);
	done(q, name);
}

START_TEST(crash_kill_respawn)
{
	const char *soak = getenv("SHOAL_QUEUE_SOAK");
	double t0 = now_s();

	/* A soak is many rounds, each checked in full on a fresh queue. */
	do
		crash_run(soak ? 10.0 : 2.0, soak ? 250 : CRASH_KILLS, false, false);
	while (soak && now_s() - t0 < atof(soak));
}
END_TEST

/* The same with claiming consumers: nothing acknowledged is lost, each
 * message is acked once, and it comes again only after a nack or the death
 * of its claimer. */
START_TEST(crash_claimers)
{
	const char *soak = getenv("SHOAL_QUEUE_SOAK");
	double t0 = now_s();

	do
		crash_run(soak ? 10.0 : 2.0, soak ? 250 : CRASH_KILLS, true, false);
	while (soak && now_s() - t0 < atof(soak));
}
END_TEST

/* The same with push_many / pop_many of up to 8: the kill points inside a
 * batch's claim, copy, and the publication or release of its span, and the
 * recovery of spans, under random kills: nothing torn, nothing twice,
 * nothing acknowledged lost. */
START_TEST(crash_batches)
{
	const char *soak = getenv("SHOAL_QUEUE_SOAK");
	double t0 = now_s();

	do
		crash_run(soak ? 10.0 : 2.0, soak ? 250 : CRASH_KILLS, false, true);
	while (soak && now_s() - t0 < atof(soak));
}
END_TEST

/* A process that cannot tell who it is (no /proc) cannot take a place in
 * the participant table: -EIO, and the queue is untouched. Needs a mount
 * namespace of its own, so root (CI runs as root). */
START_TEST(unreadable_proc_is_eio)
{
	const char *name = t_name("eio");
	struct shoal_queue *q = mkq(name, 4, 16);
	char buf[16];
	size_t len;
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private /proc");
	ck_assert_int_eq(shoal_queue_push(q, "kept", 4, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* A forked child must register anew, and cannot. */
		if (t_private_proc() != 0)
			_exit(10);
		struct shoal_queue_ticket t;
		size_t one = 1;

		if (shoal_queue_push(q, "x", 1, 0) != -EIO)
			_exit(1);
		if (shoal_queue_pop(q, buf, sizeof(buf), &len, 0) != -EIO)
			_exit(2);
		if (shoal_queue_push_many(q, "x", &one, 1, 0) != -EIO)
			_exit(3);
		if (shoal_queue_pop_many(q, buf, sizeof(buf), &len, 1, 0) != -EIO)
			_exit(4);
		if (shoal_queue_claim(q, buf, sizeof(buf), &len, 0, &t) != -EIO)
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
	ck_assert_uint_eq(len, 4);
	ck_assert_int_eq(memcmp(buf, "kept", 4), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN);
	shoal_queue_detach(q);
	shoal_queue_unlink(name);
}
END_TEST

/* A consumer that cannot read /proc (no file descriptors left) must not take
 * a live producer for dead: its slot is waited for, never tombstoned. */
static int paused_pipe[2];

static void pause_after_write(enum shoal__queue_point where)
{
	if (where == SHOAL__QP_PUSH_WRITTEN) {
		(void)!write(paused_pipe[1], "w", 1);
		usleep(600000);
	}
}

START_TEST(unknown_liveness_is_not_death)
{
	const char *name = t_name("emfile");
	struct shoal_queue *q = mkq(name, 2, 16);
	struct shoal_queue_stats st;
	struct t_fds fds;
	int rc;
	char buf[16], c;
	size_t len;
	pid_t kid;

	ck_assert_int_eq(pipe(paused_pipe), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), -EAGAIN); /* registered */
	kid = fork();
	ck_assert_int_ge(kid, 0);
	if (kid == 0) {
		shoal__queue_hook = pause_after_write;
		_exit(shoal_queue_push(q, "acknowledged", 12, -1) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(read(paused_pipe[0], &c, 1), 1); /* claimed and half written */
	t_fds_take(&fds, 64, 0);
	rc = shoal_queue_pop(q, buf, sizeof(buf), &len, 300000000);
	t_fds_back(&fds);
	ck_assert_int_eq(rc, -ETIMEDOUT);
	ck_assert_int_eq(t_wait(kid), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 1000000000), 0);
	ck_assert_uint_eq(len, 12);
	ck_assert_int_eq(memcmp(buf, "acknowledged", 12), 0);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.dropped, 0);
	/* And the ring is whole: two pushes fit, two pops come back. */
	ck_assert_int_eq(shoal_queue_push(q, "a", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, "b", 1, 0), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
	ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
	close(paused_pipe[0]);
	close(paused_pipe[1]);
	shoal_queue_detach(q);
	shoal_queue_unlink(name);
}
END_TEST

/* ---- observation ------------------------------------------------------------ */

/* The whole object file, to show that observing changed no byte. */
static unsigned char *slurp(const char *name, size_t *len)
{
	struct stat st;
	unsigned char *b;
	int fd = open(t_path(name), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	b = malloc((size_t)st.st_size);
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(pread(fd, b, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return b;
}

START_TEST(observe_counts_without_joining)
{
	const char *name = t_name("obs");
	struct shoal_queue *q, *full;
	struct shoal_queue_view v;
	struct shoal_queue_participant parts[4];
	struct shoal_queue_stats st;
	unsigned char *before, *after;
	size_t blen, alen;
	pid_t pid;
	char m[8] = "msg";

	/* A table of one entry, taken by this process: an observer that
	 * joined would get -EUSERS or take it. */
	ck_assert_int_eq(shoal__queue_create(name, 8, 64, 1, NULL, &q), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(shoal_queue_push(q, m, 3, 0), 0);
	{ size_t l; ck_assert_int_eq(shoal_queue_pop(q, m, sizeof(m), &l, 0), 0); }
	before = slurp(name, &blen);
	ck_assert_int_eq(shoal_queue_observe(name, &v, parts, 4), 1);
	after = slurp(name, &alen);
	ck_assert_uint_eq(blen, alen);
	ck_assert_int_eq(memcmp(before, after, blen), 0);
	free(before);
	free(after);
	ck_assert_uint_eq(v.stats.depth, 2);
	ck_assert_uint_eq(v.stats.capacity, 8);
	ck_assert_uint_eq(v.stats.max_msg, 64);
	ck_assert_uint_eq(v.stats.pushes, 3);
	ck_assert_uint_eq(v.stats.pops, 1);
	ck_assert_uint_eq(v.stats.participants, 1);
	ck_assert_uint_eq(v.table, 1);
	ck_assert_uint_eq(v.live, 1);
	ck_assert_uint_eq(v.dead, 0);
	ck_assert(!v.closed);
	ck_assert_int_eq(parts[0].pid, getpid());
	ck_assert(parts[0].alive && !parts[0].detached);
	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	ck_assert_uint_eq(st.participants, 1);
	/* @cap 0 counts without filling. */
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), 1);
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), 1);
	ck_assert(v.closed);
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);

	/* A participant that died without detaching is seen dead. */
	name = t_name("obsdead");
	full = mkq(name, 8, 64);
	pid = fork();
	if (pid == 0) {
		struct shoal_queue *c;

		if (shoal_queue_open(name, 0, &c) || shoal_queue_push(c, m, 3, 0))
			_exit(1);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(shoal_queue_observe(name, &v, parts, 4), 1);
	ck_assert_uint_eq(v.live, 0);
	ck_assert_uint_eq(v.dead, 1);
	ck_assert_int_eq(parts[0].pid, pid);
	ck_assert(!parts[0].alive);
	ck_assert_uint_eq(v.table, SHOAL_QUEUE_PARTICIPANTS);
	done(full, name);
}
END_TEST

/*
 * What the system refuses a queue: a mount without room (-ENOSPC: a ring
 * of a terabyte), an address space too small to map the ring (-ENOMEM,
 * in a child whose address space is capped), no file descriptor left
 * (-EMFILE). Each an error from create, open and observe, nothing left.
 */
START_TEST(system_refusals)
{
	const char *name = t_name("sysref"), *big = t_name("sysbig"), *none = t_name("sysnone");
	struct shoal_queue *q = NULL, *b = mkq(big, 1024, 65520); /* 64 MiB of slots */
	pid_t pid;

	ck_assert_int_eq(shoal_queue_create(name, 1u << 24, 1u << 16, NULL, &q), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-ENOSPC), "no room"));
	ck_assert_ptr_null(q);
	q = mkq(name, 2, 8);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_queue_view v;
		struct shoal_queue *o = NULL;
		struct shoal_proc me;

		if (shoal_proc_self(&me) || t_cap_address_space(16u << 20))
			_exit(10);
		if (shoal_queue_create(none, 1024, 65520, NULL, &o) != -ENOMEM || o)
			_exit(1);
		if (shoal_queue_open(big, 0, &o) != -ENOMEM || o)
			_exit(2);
		if (t_no_more_fds())
			_exit(11);
		if (shoal_queue_create(none, 2, 8, NULL, &o) != -EMFILE || o)
			_exit(3);
		if (shoal_queue_open(name, 0, &o) != -EMFILE || o)
			_exit(4);
		if (shoal_queue_observe(name, &v, NULL, 0) != -EMFILE)
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(access(t_path(none), F_OK), -1);
	done(b, big);
	done(q, name);
}
END_TEST

START_TEST(observe_errors)
{
	const char *name = t_name("obserr");
	struct shoal_queue_view v;
	struct shoal_queue_participant p1;
	struct shoal_segment *seg;
	struct shoal_queue *q;
	char junk[64] = { 0 };

	ck_assert_int_eq(shoal_queue_observe("x", NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_observe("x", &v, NULL, 1), -EINVAL);
	ck_assert_int_eq(shoal_queue_observe("bad/name", &v, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_observe(NULL, &v, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_observe(t_name("none"), &v, &p1, 1), -ENOENT);
	ck_assert_int_eq(shoal_segment_create(name, 4096, NULL, &seg), 0);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EPROTOTYPE);
	ck_assert_int_eq(shoal_segment_close(seg), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	/* Not an object at all; one others may write. */
	t_plant(name, junk, sizeof(junk), 0600);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EBADMSG);
	t_plant(name, junk, sizeof(junk), 0622);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EACCES);
	ck_assert_int_eq(shoal_unlink(name), 0);
	/* A queue header that fails a check; an older layout. */
	name = t_name("obsbad");
	q = mkq(name, 8, 64);
	poke32(name, KOFF + 4, 6);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EBADMSG);
	poke32(name, KOFF + 4, 8);
	poke32(name, KOFF + 20, 0);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EPROTO);
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	/* Truncated: the common header no longer matches the file. */
	name = t_name("obstrunc");
	q = mkq(name, 8, 64);
	ck_assert_int_eq(truncate(t_path(name), 4096), 0);
	ck_assert_int_eq(shoal_queue_observe(name, &v, NULL, 0), -EBADMSG);
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
}
END_TEST

/* Bytes flipped anywhere past the checked line (counters, cursors,
 * participant table, slots): an answer or an error, never a crash, and
 * never more participants than the table holds. */
START_TEST(observe_hostile_bytes)
{
	const char *name = t_name("obsflip");
	struct shoal_queue *q = mkq(name, 8, 64);
	struct shoal_queue_view v;
	struct shoal_queue_participant parts[8];
	uint64_t doff = data_off(name), end = doff + 8 * 128 + 8 * (SHOAL_QUEUE_PARTICIPANTS + 1);
	uint64_t x = 12345;
	char m[4] = "abc";

	ck_assert_int_eq(shoal_queue_push(q, m, 3, 0), 0);
	for (int i = 0; i < 300; i++) {
		unsigned char b;
		off_t off;
		int rc;

		x = mix(x + (uint64_t)i);
		off = (off_t)(i % 3 == 0 ? KOFF + 64 + x % (576 - 64)
				: i % 3 == 1 ? doff + 8 * 128 + x % (end - doff - 8 * 128)
					     : doff + x % (end - doff));
		b = (unsigned char)(x >> 32);
		poke(name, off, &b, 1);
		rc = shoal_queue_observe(name, &v, parts, 8);
		ck_assert_msg(rc == -EBADMSG || (rc >= 0 && rc <= SHOAL_QUEUE_PARTICIPANTS),
			      "flip %d at %lld: %d", i, (long long)off, rc);
		if (rc >= 0)
			ck_assert_uint_le(v.stats.depth, 8);
	}
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("queue");
	TCase *unit = tcase_create("unit");
	TCase *hostile = tcase_create("hostile");
	TCase *death = tcase_create("death");
	TCase *st = tcase_create("stress");
	TCase *crash = tcase_create("crash");
	const char *soak = getenv("SHOAL_QUEUE_SOAK");

	tcase_set_timeout(unit, 30);
	tcase_add_test(unit, fifo_and_stats);
	tcase_add_test(unit, wraps_many_laps);
	tcase_add_test(unit, capacity_boundary_and_timeouts);
	tcase_add_test(unit, bad_arguments);
	tcase_add_test(unit, wrong_kind);
	tcase_add_test(unit, msgsize_keeps_message);
	tcase_add_test(unit, many_in_one_call);
	tcase_add_test(unit, close_and_drain);
	tcase_add_test(unit, close_wakes_sleepers);
	tcase_add_test(unit, cross_process_wake);
	tcase_add_test(unit, signal_interrupts_wait);
	tcase_add_test(unit, fork_inherits_handle);
	tcase_add_test(unit, participants_run_out);
	tcase_add_test(unit, participants_sized_at_create);
	tcase_add_test(unit, sweep_in_turns);
	tcase_add_test(unit, unreadable_proc_is_eio);
	tcase_add_test(unit, unknown_liveness_is_not_death);
	tcase_add_test(unit, claim_ack_nack);
	tcase_add_test(unit, detach_gives_claims_back);
	tcase_add_test(unit, stale_ticket_after_nack);
	suite_add_tcase(s, unit);

	tcase_set_timeout(hostile, 30);
	tcase_add_test(hostile, corrupt_headers);
	tcase_add_test(hostile, corrupt_while_open);
	tcase_add_test(hostile, hostile_lock);
	tcase_add_test(hostile, urgent_turn_goes_stale);
	tcase_add_test(hostile, dead_urgent_sleeper_swallows_no_wakeup);
	tcase_add_test(hostile, spin_seats_held_or_garbage);
	suite_add_tcase(s, hostile);

	TCase *observe = tcase_create("observe");

	tcase_set_timeout(observe, 30);
	tcase_add_test(observe, observe_counts_without_joining);
	tcase_add_test(observe, observe_errors);
	tcase_add_test(observe, system_refusals);
	tcase_add_test(observe, observe_hostile_bytes);
	suite_add_tcase(s, observe);

	tcase_set_timeout(death, 30);
	tcase_add_test(death, producer_dies_claimed_or_written);
	tcase_add_test(death, consumer_unblocked_by_dead_producer);
	tcase_add_test(death, consumer_dies_claimed_or_copied);
	tcase_add_test(death, orphan_frees_full_queue);
	tcase_add_test(death, recoverer_dies_inside);
	tcase_add_test(death, recoverer_dies_inside_span);
	tcase_add_test(death, killed_in_wakeup);
	tcase_add_test(death, claimer_dies_everywhere);
	tcase_add_test(death, urgent_holder_killed);
	suite_add_tcase(s, death);

	tcase_set_timeout(st, 120);
	tcase_add_test(st, stress_4x4_10M);
	tcase_add_test(st, stress_1x1);
	tcase_add_test(st, stress_8x1);
	tcase_add_test(st, stress_batches_3x3_small_ring);
	suite_add_tcase(s, st);

	tcase_set_timeout(crash, soak ? atof(soak) + 120 : 120);
	tcase_add_test(crash, crash_kill_respawn);
	tcase_add_test(crash, crash_claimers);
	tcase_add_test(crash, crash_batches);
	suite_add_tcase(s, crash);
	return s;
}

int main(void)
{
	return t_run(suite());
}
