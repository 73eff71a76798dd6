/*
 * check_queue_port.c - queue ports (lib/queue_port.c): every error code of
 * every port call, the bound buffer and length cells in both directions,
 * numbers refused after close (and a reused entry's new number), the table
 * running out, a forked child using the ports it inherited, take's
 * deliver and fail functions, put's length read beside the message, and
 * the batch calls that walk the caller's objects (put_many's gather,
 * take_many's collection).
 */
#define _GNU_SOURCE /* unshare(), in testutil.h */
#include "testutil.h"

#include <stdint.h>
#include <time.h>

static struct shoal_queue *mkq(const char *name, uint32_t cap, uint32_t max_msg)
{
	struct shoal_queue *q = NULL;

	ck_assert_int_eq(shoal_queue_create(name, cap, max_msg, NULL, &q), 0);
	return q;
}

static void done(struct shoal_queue *q, const char *name)
{
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(name), 0);
}

START_TEST(open_bad_arguments)
{
	const char *name = t_name("pbad");
	struct shoal_queue *q = mkq(name, 8, 64);
	char buf[64];
	size_t lens[4];

	ck_assert_int_eq(shoal_queue_port_open(NULL, buf, sizeof(buf), lens, 4, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_open(q, NULL, 1, lens, 4, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_open(q, buf, sizeof(buf), NULL, 4, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_open(q, buf, sizeof(buf), lens, 0, 0), -EINVAL);
	/* No buffer at all is a port that only sends. */
	int port = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);

	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "ab", 2), 0);
	ck_assert_int_eq(shoal_queue_port_push(port, 1), -EINVAL); /* beyond its buffer */
	ck_assert_int_eq(shoal_queue_port_push(port, 65), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_port_pop(port), -EMSGSIZE);   /* 2 bytes into none */
	ck_assert_uint_eq(lens[0], 2);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	done(q, name);
}
END_TEST

#if !defined(__SANITIZE_ADDRESS__)
/* Out of memory for a port: -ENOMEM, and a port once there is memory. In
 * a child whose heap is used up under a capped address space; ASan's
 * allocator lives in a reservation made at start-up that a cap does not
 * reach, so this runs without it. */
START_TEST(open_out_of_memory)
{
	const char *name = t_name("pnomem");
	struct shoal_queue *q = mkq(name, 8, 64);
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		size_t lens[1];
		void *last = NULL, *p;
		int port;

		if (t_cap_address_space(1u << 20))
			_exit(10);
		while ((p = malloc(32)) != NULL) {
			*(void **)p = last;  /* a list, to give them back */
			last = p;
		}
		if (shoal_queue_port_open(q, NULL, 0, lens, 1, 0) != -ENOMEM)
			_exit(1);
		while (last) {
			p = *(void **)last;
			free(last);
			last = p;
		}
		port = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
		_exit(port > 0 && shoal_queue_port_send(port, "x", 1) == 0 ? 0 : 2);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	done(q, name);
}
END_TEST
#endif

START_TEST(bad_numbers_are_ebadf)
{
	static const int bad[] = { 0, -1, INT32_MIN, 1, 0x7fff0000, 0x10000, INT32_MAX };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(shoal_queue_port_close(bad[i]), -EBADF);
		ck_assert_int_eq(shoal_queue_port_pop(bad[i]), -EBADF);
		ck_assert_int_eq(shoal_queue_port_push(bad[i], 0), -EBADF);
		ck_assert_int_eq(shoal_queue_port_send(bad[i], "", 0), -EBADF);
		ck_assert_int_eq(shoal_queue_port_put(bad[i], ""), -EBADF);
		ck_assert_int_eq(shoal_queue_port_length_at(bad[i], -8), -EBADF);
		ck_assert_int_eq(shoal_queue_port_pop_many(bad[i], 1), -EBADF);
		ck_assert_int_eq(shoal_queue_port_send_many(bad[i], "", (size_t[]){ 0 }, 1), -EBADF);
		ck_assert_int_eq(shoal_queue_port_gather(bad[i], NULL, NULL, NULL, 0, 0), -EBADF);
		ck_assert_int_eq(shoal_queue_port_put_many(bad[i], NULL), -EBADF);
		ck_assert_int_eq(shoal_queue_port_collect(bad[i], NULL, NULL, NULL), -EBADF);
		ck_assert_ptr_null(shoal_queue_port_take_many(bad[i], 1));
	}
}
END_TEST

START_TEST(push_pop_through_the_buffer)
{
	const char *name = t_name("pio");
	struct shoal_queue *q = mkq(name, 8, 64);
	char in[64], out[64];
	size_t lin[1], lout[8];
	int pin = shoal_queue_port_open(q, in, sizeof(in), lin, 1, 0);
	int pout = shoal_queue_port_open(q, out, sizeof(out), lout, 8, 0);

	ck_assert_int_gt(pin, 0);
	ck_assert_int_gt(pout, 0);
	ck_assert_int_ne(pin, pout);
	ck_assert_int_eq(shoal_queue_port_pop(pout), -EAGAIN);
	memcpy(in, "hello", 5);
	ck_assert_int_eq(shoal_queue_port_push(pin, 5), 0);
	ck_assert_int_eq(shoal_queue_port_push(pin, 0), 0);
	ck_assert_int_eq(shoal_queue_port_push(pin, -1), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_send(pin, "x", -1), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_send(pin, in, 65), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_port_pop(pout), 5);
	ck_assert_uint_eq(lout[0], 5);
	ck_assert_mem_eq(out, "hello", 5);
	ck_assert_int_eq(shoal_queue_port_pop(pout), 0);
	/* Batches: lengths in the cells, messages back to back. */
	ck_assert_int_eq(shoal_queue_port_send_many(pin, "abcdef", (size_t[]){ 1, 2, 3 }, 3), 3);
	ck_assert_int_eq(shoal_queue_port_send_many(pin, "", (size_t[]){ 0 }, -1), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_send_many(pin, "", (size_t[]){ 65 }, 1), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_port_pop_many(pout, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_pop_many(pout, 100), 3); /* n capped by the cells */
	ck_assert_uint_eq(lout[0], 1);
	ck_assert_uint_eq(lout[1], 2);
	ck_assert_uint_eq(lout[2], 3);
	ck_assert_mem_eq(out, "abcdef", 6);
	ck_assert_int_eq(shoal_queue_port_pop_many(pout, 1), -EAGAIN);
	/* A port with a too small buffer leaves the message where it is. */
	char small[2];
	size_t ls[1];
	int psmall = shoal_queue_port_open(q, small, sizeof(small), ls, 1, 0);

	ck_assert_int_eq(shoal_queue_port_send(pin, "abc", 3), 0);
	ck_assert_int_eq(shoal_queue_port_pop(psmall), -EMSGSIZE);
	ck_assert_uint_eq(ls[0], 3);
	ck_assert_int_eq(shoal_queue_port_pop(pout), 3);
	/* Close: pushes -EPIPE, pops drain then -EPIPE. */
	ck_assert_int_eq(shoal_queue_port_send(pin, "z", 1), 0);
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_port_push(pin, 1), -EPIPE);
	ck_assert_int_eq(shoal_queue_port_pop(pout), 1);
	ck_assert_int_eq(shoal_queue_port_pop(pout), -EPIPE);
	ck_assert_int_eq(shoal_queue_port_close(psmall), 0);
	ck_assert_int_eq(shoal_queue_port_close(pin), 0);
	ck_assert_int_eq(shoal_queue_port_close(pout), 0);
	done(q, name);
}
END_TEST

START_TEST(bound_timeout_waits)
{
	const char *name = t_name("pwait");
	struct shoal_queue *q = mkq(name, 2, 8);
	char buf[8];
	size_t lens[1];
	int port = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, 20 * 1000000ll);
	struct timespec a, b;

	ck_assert_int_gt(port, 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	ck_assert_int_eq(shoal_queue_port_pop(port), -ETIMEDOUT);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_int_ge((b.tv_sec - a.tv_sec) * 1000000000ll + (b.tv_nsec - a.tv_nsec),
			 19 * 1000000ll);
	ck_assert_int_eq(shoal_queue_port_push(port, 1), 0);
	ck_assert_int_eq(shoal_queue_port_push(port, 1), 0);
	ck_assert_int_eq(shoal_queue_port_push(port, 1), -ETIMEDOUT);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	done(q, name);
}
END_TEST

START_TEST(closed_number_is_refused)
{
	const char *name = t_name("pclosed");
	struct shoal_queue *q = mkq(name, 8, 8);
	char buf[8];
	size_t lens[1];
	int port = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, 0);
	int again;

	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	ck_assert_int_eq(shoal_queue_port_close(port), -EBADF);
	ck_assert_int_eq(shoal_queue_port_pop(port), -EBADF);
	ck_assert_int_eq(shoal_queue_port_send(port, "a", 1), -EBADF);
	/* The same entry, opened again, has a new number; the old one stays
	 * refused. Open until the entry comes round (the hint moves on). */
	for (int i = 0; i < 70000; i++) {
		again = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, 0);
		ck_assert_int_gt(again, 0);
		ck_assert_int_ne(again, port);
		if ((again & 0xffff) == (port & 0xffff))
			break;
		ck_assert_int_eq(shoal_queue_port_close(again), 0);
	}
	ck_assert_int_eq(again & 0xffff, port & 0xffff);
	ck_assert_int_eq(shoal_queue_port_pop(port), -EBADF);
	ck_assert_int_eq(shoal_queue_port_pop(again), -EAGAIN);
	ck_assert_int_eq(shoal_queue_port_close(again), 0);
	done(q, name);
}
END_TEST

START_TEST(table_runs_out)
{
	const char *name = t_name("pfull");
	struct shoal_queue *q = mkq(name, 8, 8);
	size_t lens[1];
	static int ports[65535];
	int n = 0, rc;

	while ((rc = shoal_queue_port_open(q, NULL, 0, lens, 1, 0)) > 0) {
		ck_assert_int_lt(n, 65535);
		ports[n++] = rc;
	}
	ck_assert_int_eq(rc, -EMFILE);
	ck_assert_int_eq(n, 65535);
	ck_assert_str_ne(shoal_errdetail(rc), "");
	ck_assert_int_eq(shoal_queue_port_close(ports[100]), 0);
	rc = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
	ck_assert_int_gt(rc, 0);
	ports[100] = rc;
	for (int i = 0; i < n; i++)
		ck_assert_int_eq(shoal_queue_port_close(ports[i]), 0);
	done(q, name);
}
END_TEST

START_TEST(fork_inherits_ports)
{
	const char *name = t_name("pfork");
	struct shoal_queue *q = mkq(name, 8, 8);
	char buf[8];
	size_t lens[1];
	int port = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, -1);
	pid_t pid;

	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "parent", 6), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The child's copy of the port, its buffer and its handle. */
		if (shoal_queue_port_pop(port) != 6 || memcmp(buf, "parent", 6) != 0)
			_exit(2);
		if (shoal_queue_port_send(port, "child", 5) != 0)
			_exit(1);
		_exit(shoal_queue_port_close(port) == 0 ? 0 : 3);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(shoal_queue_port_pop(port), 5);
	ck_assert_mem_eq(buf, "child", 5);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	done(q, name);
}
END_TEST

/* deliver and fail functions that make "objects" the test can check. */
static int delivered;
static char fail_token;

static void *copy_out(const void *msg, ssize_t len)
{
	char *c = malloc((size_t)len + 1);

	memcpy(c, msg, (size_t)len);
	c[len] = 0;
	delivered++;
	return c;
}

static void *failed(void *arg)
{
	static char out[32];

	snprintf(out, sizeof(out), "%c%d", *(char *)arg, errno);
	return out;
}

START_TEST(take_delivers_or_fails)
{
	const char *name = t_name("ptake");
	struct shoal_queue *q = mkq(name, 4, 16);
	char buf[8];
	size_t lens[1];
	int port = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, 0);
	int sendonly = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
	char *got;

	fail_token = 'E';
	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(shoal_queue_port_deliver(sendonly, copy_out, NULL, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_deliver(0, copy_out, NULL, NULL), -EBADF);
	ck_assert_ptr_null(shoal_queue_port_take(port)); /* no deliver function yet */
	ck_assert_ptr_null(shoal_queue_port_take(0));
	ck_assert_int_eq(shoal_queue_port_error(0), -EBADF);
	ck_assert_int_eq(shoal_queue_port_error(port), 0);
	/* Without a fail function: NULL, and the error says why. */
	ck_assert_int_eq(shoal_queue_port_deliver(port, copy_out, NULL, NULL), 0);
	ck_assert_ptr_null(shoal_queue_port_take(port));
	ck_assert_int_eq(shoal_queue_port_error(port), -EAGAIN);
	ck_assert_int_eq(shoal_queue_port_deliver(port, copy_out, failed, &fail_token), 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "hi", 2), 0);
	got = shoal_queue_port_take(port);
	ck_assert_str_eq(got, "hi");
	free(got);
	ck_assert_int_eq(delivered, 1);
	ck_assert_str_eq(shoal_queue_port_take(port), "E11"); /* EAGAIN */
	/* Too long for the buffer: it stays, for a bigger one. */
	ck_assert_int_eq(shoal_queue_port_send(port, "0123456789", 10), 0);
	ck_assert_str_eq(shoal_queue_port_take(port), "E90"); /* EMSGSIZE */
	ck_assert_int_eq(shoal_queue_port_error(port), -EMSGSIZE);
	ck_assert_uint_eq(lens[0], 10);
	char big[16];
	size_t lb[1];
	int pbig = shoal_queue_port_open(q, big, sizeof(big), lb, 1, 0);

	ck_assert_int_eq(shoal_queue_port_pop(pbig), 10);
	/* Unbound: every call is -EBADF, take fails through fail(). */
	ck_assert_int_eq(shoal_queue_port_send(pbig, "x", 1), 0);
	ck_assert_int_eq(shoal_queue_port_unbind(port), 0);
	ck_assert_str_eq(shoal_queue_port_take(port), "E9"); /* EBADF */
	ck_assert_int_eq(shoal_queue_port_pop(port), -EBADF);
	ck_assert_int_eq(shoal_queue_port_send(port, "x", 1), -EBADF);
	ck_assert_int_eq(shoal_queue_port_push(port, 1), -EBADF);
	ck_assert_int_eq(shoal_queue_port_pop_many(port, 1), -EBADF);
	ck_assert_int_eq(shoal_queue_port_unbind(0), -EBADF);
	ck_assert_int_eq(delivered, 1);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	ck_assert_ptr_null(shoal_queue_port_take(port)); /* closed: nobody to fail through */
	ck_assert_int_eq(shoal_queue_port_pop(pbig), 1);   /* the unbound port took nothing */
	ck_assert_int_eq(shoal_queue_port_close(pbig), 0);
	ck_assert_int_eq(shoal_queue_port_close(sendonly), 0);
	{
		/* Closed and drained: -EPIPE through fail(). */
		int p2 = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, -1);

		ck_assert_int_eq(shoal_queue_port_deliver(p2, copy_out, failed, &fail_token), 0);
		ck_assert_int_eq(shoal_queue_close(q), 0);
		ck_assert_str_eq(shoal_queue_port_take(p2), "E32"); /* EPIPE */
		ck_assert_int_eq(shoal_queue_port_error(p2), -EPIPE);
		ck_assert_int_eq(shoal_queue_port_close(p2), 0);
	}
	done(q, name);
}
END_TEST

/* A string that carries its length in a header before its bytes, as
 * CPython's bytes do: put reads the length there. */
struct lstr {
	ssize_t len;
	char data[24];
};

static int put_fails;

static void *count_fail(void *arg)
{
	put_fails++;
	*(int *)arg = errno;
	return NULL;
}

START_TEST(put_reads_the_length_beside_the_message)
{
	const char *name = t_name("pput");
	struct shoal_queue *q = mkq(name, 2, 16);
	char buf[16];
	size_t lens[1];
	int port = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
	int rx = shoal_queue_port_open(q, buf, sizeof(buf), lens, 1, 0);
	const ptrdiff_t at = (ptrdiff_t)offsetof(struct lstr, len) - (ptrdiff_t)offsetof(struct lstr, data);
	struct lstr m = { 3, "a\0b" };
	int seen = 0;

	ck_assert_int_gt(port, 0);
	/* No offset bound yet, or a cell that would overlap the bytes. */
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_length_at(port, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_length_at(port, -1), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_length_at(port, -(ptrdiff_t)sizeof(ssize_t) + 1), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_length_at(port, at), 0);
	ck_assert_int_eq(shoal_queue_port_put(port, NULL), -EINVAL);
	/* Embedded NULs: the length is the cell's, not strlen's. */
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), 0);
	ck_assert_int_eq(shoal_queue_port_pop(rx), 3);
	ck_assert_mem_eq(buf, "a\0b", 3);
	m.len = -1;
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_error(port), -EINVAL);
	m.len = 17; /* longer than max_msg */
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_port_pop(rx), -EAGAIN); /* nothing went in */
	/* With a fail function, each failure also goes through it. */
	ck_assert_int_eq(shoal_queue_port_deliver(port, NULL, count_fail, &seen), 0);
	m.len = 0;
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), 0);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), 0);
	ck_assert_int_eq(put_fails, 0);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EAGAIN); /* full */
	ck_assert_int_eq(seen, EAGAIN);
	ck_assert_int_eq(put_fails, 1);
	ck_assert_int_eq(shoal_queue_port_error(port), -EAGAIN);
	{
		/* A port that waits: its timeout runs out. */
		int timed = shoal_queue_port_open(q, NULL, 0, lens, 1, 10 * 1000000ll);

		ck_assert_int_eq(shoal_queue_port_length_at(timed, at), 0);
		ck_assert_int_eq(shoal_queue_port_put(timed, m.data), -ETIMEDOUT);
		ck_assert_int_eq(shoal_queue_port_error(timed), -ETIMEDOUT);
		ck_assert_int_eq(shoal_queue_port_close(timed), 0);
	}
	ck_assert_int_eq(shoal_queue_port_pop(rx), 0);
	ck_assert_int_eq(shoal_queue_port_pop(rx), 0);
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EPIPE);
	ck_assert_int_eq(seen, EPIPE);
	m.len = -1;
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EINVAL);
	ck_assert_int_eq(seen, EINVAL);
	/* Unbound: -EBADF through fail(); closed: -EBADF, nobody to fail through. */
	ck_assert_int_eq(shoal_queue_port_unbind(port), 0);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EBADF);
	ck_assert_int_eq(seen, EBADF);
	ck_assert_int_eq(put_fails, 4);
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	ck_assert_int_eq(shoal_queue_port_put(port, m.data), -EBADF);
	ck_assert_int_eq(shoal_queue_port_length_at(port, at), -EBADF);
	ck_assert_int_eq(put_fails, 4);
	ck_assert_int_eq(shoal_queue_port_close(rx), 0);
	done(q, name);
}
END_TEST

/* An object with its type and length in a header before its bytes, as
 * CPython's bytes objects have, and a list of them. */
struct obj {
	const void *type;
	ssize_t len;
	char data[24];
};

static const char obj_type[] = "obj", other_type[] = "other";

struct seq {
	struct obj **items;
	ssize_t n;
};

static ssize_t seq_count(void *s)
{
	return ((struct seq *)s)->n;
}

static void *seq_item(void *s, ssize_t i)
{
	return ((struct seq *)s)->items[i];
}

START_TEST(put_many_gathers_objects)
{
	const char *name = t_name("pgather");
	struct shoal_queue *q = mkq(name, 128, 16);
	char buf[16 * 64];
	size_t lens[64];
	int port = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
	int rx = shoal_queue_port_open(q, buf, sizeof(buf), lens, 64, 0);
	const ptrdiff_t type_at = offsetof(struct obj, type), data_at = offsetof(struct obj, data);
	const ptrdiff_t len_at = (ptrdiff_t)offsetof(struct obj, len) - data_at;
	struct obj o[100];
	struct obj *items[100];
	struct seq sq = { items, 3 };

	for (int i = 0; i < 100; i++) {
		o[i] = (struct obj){ obj_type, 3, "" };
		snprintf(o[i].data, sizeof(o[i].data), "%02d", i); /* 3 bytes: the NUL too */
		items[i] = &o[i];
	}
	ck_assert_int_gt(port, 0);
	/* Nothing bound yet, then half a binding. */
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_gather(port, seq_count, NULL, obj_type, type_at, data_at),
			 -EINVAL);
	ck_assert_int_eq(shoal_queue_port_gather(port, NULL, seq_item, obj_type, type_at, data_at),
			 -EINVAL);
	ck_assert_int_eq(shoal_queue_port_gather(port, seq_count, seq_item, NULL, type_at, data_at),
			 -EINVAL);
	ck_assert_int_eq(shoal_queue_port_gather(port, seq_count, seq_item, obj_type, type_at, data_at),
			 0);
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL); /* no length offset */
	ck_assert_int_eq(shoal_queue_port_length_at(port, len_at), 0);
	ck_assert_int_eq(shoal_queue_port_put_many(port, NULL), -EINVAL);
	sq.n = -1;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL);
	sq.n = 0;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), 0);
	/* One bad object in the middle: nothing goes in. */
	sq.n = 3;
	items[1] = NULL;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL);
	items[1] = &o[1];
	o[1].type = other_type;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL);
	o[1].type = obj_type;
	o[1].len = -1;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EINVAL);
	o[1].len = 17;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_port_pop(rx), -EAGAIN);
	o[1].len = 0;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), 3);
	ck_assert_int_eq(shoal_queue_port_pop_many(rx, 64), 3);
	ck_assert_uint_eq(lens[0], 3);
	ck_assert_uint_eq(lens[1], 0);
	ck_assert_uint_eq(lens[2], 3);
	ck_assert_mem_eq(buf, "00\0" "02\0", 6);
	o[1].len = 3;
	/* More than one span (64 a claim), in order. */
	sq.n = 100;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), 100);
	for (int i = 0; i < 100;) {
		ssize_t k = shoal_queue_port_pop_many(rx, 64);

		ck_assert_int_gt(k, 0);
		for (ssize_t j = 0; j < k; j++, i++) {
			ck_assert_uint_eq(lens[j], 3);
			ck_assert_mem_eq(buf + 3 * j, o[i].data, 3);
		}
	}
	/* The queue fills after some went: how many; then -EAGAIN. */
	for (int i = 0; i < 120; i++)
		ck_assert_int_eq(shoal_queue_port_send(port, "f", 1), 0);
	sq.n = 10;
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), 8);
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EAGAIN);
	{
		/* A port that waits: its timeout runs out. */
		int timed = shoal_queue_port_open(q, NULL, 0, lens, 1, 10 * 1000000ll);

		ck_assert_int_eq(shoal_queue_port_gather(timed, seq_count, seq_item, obj_type, type_at,
							 data_at), 0);
		ck_assert_int_eq(shoal_queue_port_length_at(timed, len_at), 0);
		ck_assert_int_eq(shoal_queue_port_put_many(timed, &sq), -ETIMEDOUT);
		ck_assert_int_eq(shoal_queue_port_close(timed), 0);
	}
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EPIPE);
	ck_assert_int_eq(shoal_queue_port_unbind(port), 0);
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EBADF);
	ck_assert_int_eq(shoal_queue_port_gather(port, NULL, NULL, NULL, 0, 0), 0); /* unbinds */
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	ck_assert_int_eq(shoal_queue_port_put_many(port, &sq), -EBADF);
	ck_assert_int_eq(shoal_queue_port_close(rx), 0);
	done(q, name);
}
END_TEST

/* A collection of up to 8 strings, as take_many's caller sees a list. */
struct coll {
	ssize_t n;
	char *items[8];
};

static int collected, dropped, add_fails_at = -1, deliver_fails;
static int reenter_port;          /* > 0: coll_new calls take_many on it */
static const char *reentered_got; /* ... and keeps what it returned */

static void *coll_new(ssize_t n)
{
	struct coll *c;

	if (reenter_port > 0) {
		int port = reenter_port;

		reenter_port = 0;
		reentered_got = shoal_queue_port_take_many(port, 1);
	}
	if (n > 8)
		return NULL;
	c = calloc(1, sizeof(*c));
	c->n = n;
	collected++;
	return c;
}

static int coll_add(void *coll, ssize_t i, void *obj)
{
	struct coll *c = coll;

	if (i == add_fails_at) {
		free(obj); /* taken over even on failure */
		return -1;
	}
	c->items[i] = obj;
	return 0;
}

static void coll_drop(void *coll)
{
	struct coll *c = coll;

	for (int i = 0; i < 8; i++)
		free(c->items[i]);
	free(c);
	dropped++;
}

static void *copy_or_fail(const void *msg, ssize_t len)
{
	if (len == 1 && *(const char *)msg == 'X') {
		deliver_fails++;
		return NULL;
	}
	return copy_out(msg, len);
}

START_TEST(take_many_collects)
{
	const char *name = t_name("pcollect");
	struct shoal_queue *q = mkq(name, 16, 16);
	char buf[12];
	size_t lens[4];
	int port = shoal_queue_port_open(q, buf, sizeof(buf), lens, 4, 0);
	int sendonly = shoal_queue_port_open(q, NULL, 0, lens, 1, 0);
	struct coll *c;

	fail_token = 'M';
	ck_assert_int_gt(port, 0);
	ck_assert_int_eq(shoal_queue_port_collect(sendonly, coll_new, coll_add, coll_drop), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_collect(port, coll_new, NULL, coll_drop), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_collect(port, coll_new, coll_add, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_port_collect(sendonly, NULL, NULL, NULL), 0);
	/* Neither deliver nor collect yet, then deliver alone: NULL. */
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 1));
	ck_assert_int_eq(shoal_queue_port_deliver(port, copy_or_fail, failed, &fail_token), 0);
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 1));
	ck_assert_int_eq(shoal_queue_port_collect(port, coll_new, coll_add, coll_drop), 0);
	ck_assert_str_eq(shoal_queue_port_take_many(port, 1), "M11"); /* EAGAIN */
	ck_assert_int_eq(shoal_queue_port_error(port), -EAGAIN);
	ck_assert_str_eq(shoal_queue_port_take_many(port, 0), "M22"); /* EINVAL */
	ck_assert_int_eq(shoal_queue_port_error(port), -EINVAL);
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(shoal_queue_port_send(port, "abcdef", (i % 3) + 1), 0);
	/* At most n, and at most the port's 4 cells. */
	c = shoal_queue_port_take_many(port, 2);
	ck_assert_int_eq(c->n, 2);
	ck_assert_str_eq(c->items[0], "a");
	ck_assert_str_eq(c->items[1], "ab");
	coll_drop(c);
	c = shoal_queue_port_take_many(port, 100);
	ck_assert_int_eq(c->n, 4);
	ck_assert_str_eq(c->items[0], "abc");
	ck_assert_str_eq(c->items[3], "abc");
	coll_drop(c);
	ck_assert_int_eq(collected, 2);
	/* A call from inside (Python: a finalizer PyList_New started) pops
	 * nothing over the outer call's buffer: -EBUSY. */
	ck_assert_int_eq(shoal_queue_port_send(port, "uv", 2), 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "w", 1), 0);
	reenter_port = port;
	c = shoal_queue_port_take_many(port, 4);
	ck_assert_str_eq(reentered_got, "M16"); /* EBUSY */
	ck_assert_int_eq(c->n, 2);
	ck_assert_str_eq(c->items[0], "uv");
	ck_assert_str_eq(c->items[1], "w");
	coll_drop(c);
	collected = 2;
	/* A message longer than the buffer stays, its size in lens[0]. */
	ck_assert_int_eq(shoal_queue_port_send(port, "0123456789abcdef", 16), 0);
	ck_assert_str_eq(shoal_queue_port_take_many(port, 4), "M90"); /* EMSGSIZE */
	ck_assert_uint_eq(lens[0], 16);
	ck_assert_int_eq(shoal_queue_port_pop(sendonly), -EMSGSIZE);
	char big[16];
	size_t lb[1];
	int pbig = shoal_queue_port_open(q, big, sizeof(big), lb, 1, 0);

	ck_assert_int_eq(shoal_queue_port_pop(pbig), 16);
	/* After the pop a failure loses the messages, and drops the collection. */
	dropped = 0;
	ck_assert_int_eq(shoal_queue_port_send(port, "a", 1), 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "X", 1), 0);
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 4)); /* deliver fails */
	ck_assert_int_eq(deliver_fails, 1);
	ck_assert_int_eq(dropped, 1);
	add_fails_at = 1;
	ck_assert_int_eq(shoal_queue_port_send(port, "a", 1), 0);
	ck_assert_int_eq(shoal_queue_port_send(port, "b", 1), 0);
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 4)); /* add fails */
	ck_assert_int_eq(dropped, 2);
	add_fails_at = -1;
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(shoal_queue_port_send(port, "z", 1), 0);
	ck_assert_int_eq(shoal_queue_port_pop(pbig), 1); /* 8 left: */
	ck_assert_int_eq(shoal_queue_port_close(pbig), 0);
	ck_assert_int_eq(shoal_queue_port_collect(port, coll_new, coll_add, coll_drop), 0);
	{
		/* collect fails (more than 8): NULL, the messages gone. */
		size_t l8[9];
		int p8 = shoal_queue_port_open(q, buf, sizeof(buf), l8, 9, 0);

		ck_assert_int_eq(shoal_queue_port_deliver(p8, copy_out, failed, &fail_token), 0);
		ck_assert_int_eq(shoal_queue_port_collect(p8, coll_new, coll_add, coll_drop), 0);
		ck_assert_int_eq(shoal_queue_port_send(port, "z", 1), 0);
		ck_assert_ptr_null(shoal_queue_port_take_many(p8, 9));
		ck_assert_str_eq(shoal_queue_port_take_many(p8, 9), "M11");
		ck_assert_int_eq(shoal_queue_port_close(p8), 0);
	}
	/* Closed and drained: -EPIPE; unbound: -EBADF; closed number: NULL. */
	ck_assert_int_eq(shoal_queue_close(q), 0);
	ck_assert_str_eq(shoal_queue_port_take_many(port, 4), "M32");
	ck_assert_int_eq(shoal_queue_port_unbind(port), 0);
	ck_assert_str_eq(shoal_queue_port_take_many(port, 4), "M9");
	ck_assert_int_eq(shoal_queue_port_collect(port, NULL, NULL, NULL), 0);
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 4)); /* unbound collect */
	ck_assert_int_eq(shoal_queue_port_close(port), 0);
	ck_assert_ptr_null(shoal_queue_port_take_many(port, 4));
	ck_assert_int_eq(shoal_queue_port_close(sendonly), 0);
	done(q, name);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("queue_port");
	TCase *unit = tcase_create("unit");

	tcase_set_timeout(unit, 30);
	tcase_add_test(unit, open_bad_arguments);
#if !defined(__SANITIZE_ADDRESS__)
	tcase_add_test(unit, open_out_of_memory);
#endif
	tcase_add_test(unit, bad_numbers_are_ebadf);
	tcase_add_test(unit, push_pop_through_the_buffer);
	tcase_add_test(unit, bound_timeout_waits);
	tcase_add_test(unit, closed_number_is_refused);
	tcase_add_test(unit, table_runs_out);
	tcase_add_test(unit, fork_inherits_ports);
	tcase_add_test(unit, take_delivers_or_fails);
	tcase_add_test(unit, put_reads_the_length_beside_the_message);
	tcase_add_test(unit, put_many_gathers_objects);
	tcase_add_test(unit, take_many_collects);
	suite_add_tcase(s, unit);
	return s;
}

int main(void)
{
	return t_run(suite());
}
