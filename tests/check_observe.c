/*
 * check_observe.c - the observers (shoal_queue_observe(), shoal_pool_observe(),
 * shoal_leaks(), the array snapshot the shoal command reads) over objects
 * their owner truncates: before the look, at each step inside it (the
 * snapshot hook), and from a thread that truncates and restores them in a
 * loop while they are read. An observer never dies of SIGBUS: it says
 * -EBADMSG with a detail that names the object, and the others go on.
 */
#include "internal.h"
#include "array.h"
#include "pool.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

/* One object of each kind the tools list, and its bytes as made. */
struct kinds {
	const char *arr, *queue, *board, *seg;
	struct shoal_array *a;
	struct shoal_queue *q;
	struct shoal_segment *s;
};

/*
 * A pool board without a pool: the geometry a pool writes
 * (pool_board_layout), one seat in use by this process, as observers read
 * it. Cheaper than a fork server, and the same bytes to an observer.
 */
static void make_board(const char *name)
{
	struct shoal_segment *s;
	struct pool_hdr l;
	struct pool_seat *seat;

	memset(&l, 0, sizeof(l));
	pool_board_layout(&l, 4, 2, 1024);
	l.observed = POOL_OBSERVED;
	ck_assert_int_eq(shoal__segment_create(name, SHOAL__KIND_POOL, sizeof(l),
					       l.nseats * l.seat_size, NULL, &s), 0);
	memcpy(s->kind_hdr, &l, sizeof(l));
	seat = seat_at(s->data, &l, 0);
	atomic_store(&seat->gen, 1);
	atomic_store(&seat->worker_key, shoal__self_key());
	atomic_store(&seat->ready, 1);
	atomic_store(&seat->obs_pos, 1);
	atomic_store(&seat->obs_tasks, 7);
	atomic_store(&cell_in(seat, &l, 0)->state, 2 /* ASSIGNED */);
	ck_assert_int_eq(shoal__segment_publish(s), 0);
	shoal_segment_close(s);
}

static void kinds_make(struct kinds *k)
{
	size_t shape[1] = { 8192 };

	k->arr = t_name("arr");
	k->queue = t_name("queue");
	k->board = t_name("board");
	k->seg = t_name("seg");
	ck_assert_int_eq(shoal_array_create(k->arr, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &k->a), 0);
	ck_assert_int_eq(shoal_queue_create(k->queue, 4, 64, NULL, &k->q), 0);
	ck_assert_int_eq(shoal_queue_push(k->q, "x", 1, 0), 0);
	make_board(k->board);
	ck_assert_int_eq(shoal_segment_create(k->seg, 100, NULL, &k->s), 0);
}

static void kinds_done(struct kinds *k)
{
	shoal_array_close(k->a);
	shoal_queue_detach(k->q);
	shoal_segment_close(k->s);
	shoal_unlink(k->arr);
	shoal_unlink(k->queue);
	shoal_unlink(k->board);
	shoal_unlink(k->seg);
}

/* Look at @name as each observer of its kind does; the error, or 0. */
static int observe(const char *name)
{
	struct shoal__hdr h;
	struct shoal_queue_view qv;
	struct shoal_queue_participant parts[8];
	struct shoal_pool_view pv;
	struct shoal_pool_worker_view wv[8];
	struct shoal_array_holder hd[8];
	struct shoal_array *a;
	int rc = shoal__segment_peek(name, &h);

	if (rc)
		return rc;
	switch (h.kind) {
	case SHOAL__KIND_ARRAY:
		rc = shoal__array_snapshot(name, &a);
		if (rc)
			return rc;
		rc = shoal_array_holders(a, hd, 8);
		(void)shoal_array_refcount(a);
		(void)shoal_array_is_freed(a);
		shoal_array_close(a);
		return rc < 0 ? rc : 0;
	case SHOAL__KIND_QUEUE:
		rc = shoal_queue_observe(name, &qv, parts, 8);
		return rc < 0 ? rc : 0;
	case SHOAL__KIND_POOL:
		rc = shoal_pool_observe(name, &pv, wv, 8);
		return rc < 0 ? rc : 0;
	default:
		return 0;
	}
}

/* The file of @name cut to @len bytes. */
static void cut(const char *name, off_t len)
{
	ck_assert_int_eq(truncate(t_path(name), len), 0);
}

static off_t size_of(const char *name)
{
	struct stat st;

	ck_assert_int_eq(stat(t_path(name), &st), 0);
	return st.st_size;
}

/* The bytes of @name now, to put back with put_back(). */
static unsigned char *image(const char *name, off_t *len)
{
	int fd = open(t_path(name), O_RDONLY | O_CLOEXEC);
	unsigned char *img;

	*len = size_of(name);
	img = malloc((size_t)*len);
	ck_assert_ptr_nonnull(img);
	ck_assert_int_eq(pread(fd, img, (size_t)*len, 0), *len);
	close(fd);
	return img;
}

static void put_back(const char *name, const unsigned char *img, off_t len)
{
	int fd = open(t_path(name), O_WRONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, img, (size_t)len, 0), len);
	close(fd);
}

/* The detail of the last failure names @name and says @what. */
static void says(int rc, const char *name, const char *what)
{
	const char *d = shoal_errdetail(rc);

	ck_assert_msg(strstr(d, name) && strstr(d, what), "detail '%s' (want '%s', '%s')", d,
		      name, what);
}

/* Each kind intact, then cut to 0, to half, and to one byte short of the
 * last field its observer reads: -EBADMSG that says so, and shoal_leaks()
 * goes on with the others. */
#if !defined(__SANITIZE_ADDRESS__)
/* Out of memory for their private copies: -ENOMEM from each observer, the
 * reaper and shoal_leaks(), in a child whose heap is used up under a
 * capped address space (not under ASan, whose allocator a cap does not
 * reach); with memory again, each reads. */
START_TEST(out_of_memory)
{
	struct kinds k;
	pid_t pid;

	kinds_make(&k);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_queue_view qv;
		struct shoal_pool_view pv;
		struct shoal_leak l;
		void *last = NULL, *p;

		/* Known to itself first: that needs memory too. */
		if (shoal_leaks(0, &l, 1) < 0 || t_cap_address_space(1u << 20))
			_exit(10);
		while ((p = malloc(32)) != NULL) {
			*(void **)p = last;
			last = p;
		}
		if (shoal_queue_observe(k.queue, &qv, NULL, 0) != -ENOMEM)
			_exit(1);
		if (shoal_pool_observe(k.board, &pv, NULL, 0) != -ENOMEM)
			_exit(2);
		if (shoal_leaks(0, &l, 1) != -ENOMEM)
			_exit(3);
		if (shoal_reap() != -ENOMEM)
			_exit(4);
		while (last) {
			p = *(void **)last;
			free(last);
			last = p;
		}
		if (shoal_queue_observe(k.queue, &qv, NULL, 0) != 1 ||
		    shoal_pool_observe(k.board, &pv, NULL, 0) != 1 || shoal_leaks(0, &l, 1) < 0)
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	kinds_done(&k);
}
END_TEST
#endif

START_TEST(truncated_before)
{
	struct kinds k;
	const char *names[4];
	struct shoal_leak lk[16];

	kinds_make(&k);
	names[0] = k.arr;
	names[1] = k.queue;
	names[2] = k.board;
	names[3] = k.seg;
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(observe(names[i]), 0);
	for (int i = 0; i < 4; i++) {
		off_t full;
		unsigned char *img = image(names[i], &full);
		off_t lens[3] = { 0, full / 2, full - 1 };

		for (int j = 0; j < 3; j++) {
			int rc;

			cut(names[i], lens[j]);
			rc = observe(names[i]);
			ck_assert_msg(rc == -EBADMSG, "%s cut to %lld: %d", names[i],
				      (long long)lens[j], rc);
			says(rc, names[i], j == 0 ? "too small" : "truncated");
			ck_assert_int_ge(shoal_leaks(0, lk, 16), 0);
			put_back(names[i], img, full);
			ck_assert_int_eq(observe(names[i]), 0);
		}
		free(img);
	}
	kinds_done(&k);
}
END_TEST

/* The hook cuts the file inside the look: after the common header is read
 * (the kind header is then missing), and after the kind header (the
 * queue's table, the board's seats, the array's overflow lines are). */
static const char *hook_name;
static off_t hook_len;
static int hook_stage;

static void hook(const char *name, int stage)
{
	if (stage == hook_stage && strcmp(name, hook_name) == 0)
		ck_assert_int_eq(truncate(t_path(name), hook_len), 0);
}

START_TEST(truncated_inside)
{
	struct kinds k;
	const char *names[3];

	kinds_make(&k);
	/* The overflow ledger's mark at its cap, over pages never reserved
	 * (what a same-user process can write): its lines are read after the
	 * kind header, and its holes read as zeros, never SIGBUS. */
	atomic_store(&k.a->hdr->ovf_used, k.a->ovf_cap);
	ck_assert_int_eq(observe(k.arr), 0);
	names[0] = k.arr;
	names[1] = k.queue;
	names[2] = k.board;
	shoal__snapshot_hook = hook;
	/* Every look needs more than either cut leaves: the kind header
	 * (past 128), or what lies past the first page (the overflow lines
	 * past the data, the queue's table after its ring, the seats). */
	for (int i = 0; i < 3; i++)
		for (hook_stage = 1; hook_stage <= 2; hook_stage++) {
			off_t full;
			unsigned char *img = image(names[i], &full);
			off_t lens[2] = { SHOAL__HDR_SIZE, 4096 };

			for (int j = 0; j < 2; j++) {
				int rc;

				hook_name = names[i];
				hook_len = lens[j];
				rc = observe(names[i]);
				ck_assert_msg(rc == -EBADMSG, "%s cut to %lld at stage %d: %d",
					      names[i], (long long)lens[j], hook_stage, rc);
				says(rc, names[i], "truncated while read");
				put_back(names[i], img, full);
			}
			free(img);
		}
	shoal__snapshot_hook = NULL;
	kinds_done(&k);
}
END_TEST

/* A thread cuts each object at a random length and puts its bytes back,
 * in a loop, for about a second, while this one observes them all. */
struct racer {
	struct kinds *k;
	atomic_bool stop;
	unsigned long cuts;
};

static void *race(void *arg)
{
	struct racer *r = arg;
	const char *names[4] = { r->k->arr, r->k->queue, r->k->board, r->k->seg };
	unsigned char *img[4];
	off_t len[4];
	int fd[4];
	uint64_t x = 88172645463325252ull;

	for (int i = 0; i < 4; i++) {
		fd[i] = open(t_path(names[i]), O_RDWR | O_CLOEXEC);
		len[i] = size_of(names[i]);
		img[i] = malloc((size_t)len[i]);
		if (fd[i] < 0 || !img[i] || pread(fd[i], img[i], (size_t)len[i], 0) != len[i])
			abort();
	}
	while (!atomic_load(&r->stop)) {
		for (int i = 0; i < 4; i++) {
			off_t at;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* Mostly inside the headers and first pages, where
			 * the observers read. */
			at = (off_t)(x % (uint64_t)(len[i] < 16384 ? len[i] : 16384));
			if (ftruncate(fd[i], at) != 0 ||
			    pwrite(fd[i], img[i] + at, (size_t)(len[i] - at), at) != len[i] - at)
				abort();
			r->cuts++;
		}
		if (r->cuts % 64 == 0)
			sched_yield();
	}
	for (int i = 0; i < 4; i++) {
		close(fd[i]);
		free(img[i]);
	}
	return NULL;
}

START_TEST(truncated_racing)
{
	struct kinds k;
	struct racer r = { .k = &k };
	const char *names[4];
	struct shoal_leak lk[16];
	uint64_t end;
	unsigned long looks = 0, refused = 0;
	pthread_t t;

	kinds_make(&k);
	names[0] = k.arr;
	names[1] = k.queue;
	names[2] = k.board;
	names[3] = k.seg;
	ck_assert_int_eq(pthread_create(&t, NULL, race, &r), 0);
	end = shoal__now_ns() + 1000000000ull;
	while (shoal__now_ns() < end) {
		for (int i = 0; i < 4; i++) {
			int rc = observe(names[i]);

			/* Read while whole; cut (-EBADMSG); or caught between
			 * the cut and the bytes put back, where zeros say
			 * layout 0 (-EPROTO). */
			ck_assert_msg(rc == 0 || rc == -EBADMSG || rc == -EPROTO, "%s: %d",
				      names[i], rc);
			refused += rc != 0;
			looks++;
		}
		ck_assert_int_ge(shoal_leaks(0, lk, 16), 0);
	}
	atomic_store(&r.stop, true);
	pthread_join(t, NULL);
	ck_assert_uint_gt(r.cuts, 0);
	ck_assert_uint_gt(looks, 0);
	(void)refused;
	kinds_done(&k);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("observe");
	TCase *tc;

	tc = tcase_create("truncated_before");
	tcase_add_test(tc, truncated_before);
	suite_add_tcase(s, tc);
	tc = tcase_create("truncated_inside");
	tcase_add_test(tc, truncated_inside);
	suite_add_tcase(s, tc);
	tc = tcase_create("truncated_racing");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, truncated_racing);
	suite_add_tcase(s, tc);
#if !defined(__SANITIZE_ADDRESS__)
	tc = tcase_create("out_of_memory");
	tcase_add_test(tc, out_of_memory);
	suite_add_tcase(s, tc);
#endif
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(suite());
	int failed;

	srunner_run_all(r, CK_NORMAL);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
