/*
 * check_queue_threads.c - the stress run with threads instead of processes,
 * so ThreadSanitizer (an --enable-tsan build) can check the memory orderings
 * of push, pop, their batch forms, claim/ack/nack, close and the wake-ups
 * (an ack's release must order the claimer's reads before the next lap's
 * writes, as a pop's does). Some threads
 * share one handle, others have their own, as both happen in real programs.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

/* Under a sanitizer every access is checked: a tenth (TSan), a quarter
 * (ASan: 43 s of the suite at 2M) of the messages still cross every lap
 * of the ring many times. */
#if defined(__SANITIZE_THREAD__)
#define TOTAL 200000u
#elif defined(__SANITIZE_ADDRESS__)
#define TOTAL 500000u
#else
#define TOTAL 2000000u
#endif
#define NP 4
#define NC 4

struct run {
	const char *name;
	struct shoal_queue *shared;
	uint32_t per;
	_Atomic uint64_t popped;
	_Atomic uint32_t bad;
	_Atomic uint8_t *seen;
	_Atomic uint8_t *nacked; /* given back once: may come out of order */
};

struct arg {
	struct run *r;
	uint32_t who;
};

struct msg {
	uint32_t who;
	uint32_t seq;
	uint64_t sum;
};

static uint64_t sum_of(uint32_t who, uint32_t seq)
{
	uint64_t x = ((uint64_t)who << 32 | seq) * 0x9e3779b97f4a7c15ull;

	return x ^ (x >> 29);
}

static struct shoal_queue *handle(struct run *r, uint32_t who)
{
	struct shoal_queue *q;

	if (who % 2 == 0)
		return r->shared;
	ck_assert_int_eq(shoal_queue_open(r->name, 0, &q), 0);
	return q;
}

static void *producer(void *p)
{
	struct arg *a = p;
	struct run *r = a->r;
	struct shoal_queue *q = handle(r, a->who);
	struct msg m[8];
	size_t lens[8];

	for (size_t i = 0; i < 8; i++)
		lens[i] = sizeof(struct msg);
	for (uint32_t s = 0; s < r->per;) {
		if (s % 1024 < 512) {
			m[0] = (struct msg){ a->who, s, sum_of(a->who, s) };
			if (shoal_queue_push(q, &m[0], sizeof(m[0]), -1) != 0)
				atomic_store(&r->bad, 1);
			s++;
		} else {
			size_t n = r->per - s < 8 ? r->per - s : 8;
			ssize_t k;

			for (size_t i = 0; i < n; i++)
				m[i] = (struct msg){ a->who, s + (uint32_t)i, sum_of(a->who, s + (uint32_t)i) };
			k = shoal_queue_push_many(q, m, lens, n, -1);
			if (k <= 0)
				atomic_store(&r->bad, 2);
			s += k > 0 ? (uint32_t)k : 1;
		}
	}
	if (q != r->shared)
		shoal_queue_detach(q);
	return NULL;
}

static void check(struct run *r, const struct msg *m, size_t len, uint32_t *last)
{
	if (len != sizeof(*m) || m->who >= NP || m->seq >= r->per || m->sum != sum_of(m->who, m->seq)) {
		atomic_store(&r->bad, 3);
		return;
	}
	/* A nacked message comes back out of order, to pop or claim. */
	if (atomic_load(&r->nacked[m->who * r->per + m->seq]))
		last = NULL;
	if (last && last[m->who] != UINT32_MAX && m->seq <= last[m->who])
		atomic_store(&r->bad, 4); /* out of order */
	if (last)
		last[m->who] = m->seq;
	if (atomic_fetch_add(&r->seen[m->who * r->per + m->seq], 1) != 0)
		atomic_store(&r->bad, 5); /* twice */
}

static void *consumer(void *p)
{
	struct arg *a = p;
	struct run *r = a->r;
	struct shoal_queue *q = handle(r, a->who);
	uint32_t last[NP];
	uint64_t n = 0;
	struct msg m[8];
	size_t lens[8], len;
	int rc;

	memset(last, 0xff, sizeof(last));
	for (;;) {
		if (n % 1024 < 384) {
			rc = shoal_queue_pop(q, &m[0], sizeof(m[0]), &len, -1);
			if (rc)
				break;
			check(r, &m[0], len, last);
			n++;
		} else if (n % 1024 < 512) {
			struct shoal_queue_ticket t;

			rc = shoal_queue_claim(q, &m[0], sizeof(m[0]), &len, -1, &t);
			if (rc)
				break;
			if (t.redelivered == 0 && n % 61 == 0 && len == sizeof(m[0]) &&
			    m[0].who < NP && m[0].seq < r->per) {
				atomic_store(&r->nacked[m[0].who * r->per + m[0].seq], 1);
				if (shoal_queue_nack(q, &t) != 0)
					atomic_store(&r->bad, 7);
				continue; /* someone takes it again */
			}
			check(r, &m[0], len, last);
			if (shoal_queue_ack(q, &t) != 0)
				atomic_store(&r->bad, 8);
			n++;
		} else {
			ssize_t k = shoal_queue_pop_many(q, m, sizeof(m), lens, 8, -1);

			if (k < 0) {
				rc = (int)k;
				break;
			}
			for (ssize_t i = 0; i < k; i++)
				check(r, &m[i], lens[i], last);
			n += (uint64_t)k;
		}
	}
	if (rc != -EPIPE)
		atomic_store(&r->bad, 6);
	atomic_fetch_add(&r->popped, n);
	if (q != r->shared)
		shoal_queue_detach(q);
	return NULL;
}

static void run(uint32_t cap)
{
	struct run r = { .name = t_name("threads"), .per = TOTAL / NP };
	pthread_t pt[NP], ct[NC];
	struct arg pa[NP], ca[NC];

	ck_assert_int_eq(shoal_queue_create(r.name, cap, sizeof(struct msg), NULL, &r.shared), 0);
	r.seen = calloc((size_t)r.per * NP, 1);
	r.nacked = calloc((size_t)r.per * NP, 1);
	for (uint32_t i = 0; i < NC; i++) {
		ca[i] = (struct arg){ &r, i };
		ck_assert_int_eq(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
	}
	for (uint32_t i = 0; i < NP; i++) {
		pa[i] = (struct arg){ &r, i };
		ck_assert_int_eq(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
	}
	for (uint32_t i = 0; i < NP; i++)
		pthread_join(pt[i], NULL);
	ck_assert_int_eq(shoal_queue_close(r.shared), 0);
	for (uint32_t i = 0; i < NC; i++)
		pthread_join(ct[i], NULL);
	ck_assert_int_eq(atomic_load(&r.bad), 0);
	ck_assert_uint_eq(atomic_load(&r.popped), (uint64_t)r.per * NP);
	for (size_t i = 0; i < (size_t)r.per * NP; i++)
		ck_assert_msg(atomic_load(&r.seen[i]) == 1, "message %zu seen %d times", i,
			      atomic_load(&r.seen[i]));
	free((void *)r.seen);
	free((void *)r.nacked);
	ck_assert_int_eq(shoal_queue_detach(r.shared), 0);
	ck_assert_int_eq(shoal_queue_unlink(r.name), 0);
}

START_TEST(threads_4x4)
{
	run(256);
}
END_TEST

START_TEST(threads_4x4_tiny_ring)
{
	run(2); /* every operation meets a full or empty ring */
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue_threads");
	TCase *tc = tcase_create("threads");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, threads_4x4);
	tcase_add_test(tc, threads_4x4_tiny_ring);
	suite_add_tcase(s, tc);
	return t_run(s);
}
