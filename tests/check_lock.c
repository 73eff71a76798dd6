/*
 * check_lock.c - shoal's lock word: it excludes threads and processes, hands
 * a dead owner's lock to exactly one survivor, and no byte pattern in it
 * aborts, hangs a try, or holds a waiter past its deadline.
 */
#include "internal.h"
#include "testutil.h"

#include <pthread.h>
#include <sys/mman.h>

/* A lock and the data it guards, in memory shared with forked children. */
struct shared {
	struct shoal__lock lock;
	uint64_t counter;         /* plain: only the lock keeps it whole */
	uint32_t inside;          /* plain: > 1 means two held it at once */
	uint32_t overlap;
};

static struct shared *shared_new(void)
{
	struct shared *s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_ptr_ne(s, MAP_FAILED);
	memset(s, 0, sizeof(*s));
	shoal__lock_init(&s->lock);
	return s;
}

static uint64_t ms_since(uint64_t t0)
{
	return (shoal__now_ns() - t0) / 1000000u;
}

/* The critical section every contender runs. */
static int bump(struct shared *s, int64_t timeout_ns)
{
	int rc = shoal__lock_acquire(&s->lock, timeout_ns);

	if (rc < 0)
		return rc;
	if (++s->inside != 1)
		s->overlap++;
	s->counter++;
	s->inside--;
	shoal__lock_release(&s->lock);
	return rc;
}

START_TEST(uncontended)
{
	struct shared *s = shared_new();

	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 0);
	ck_assert_uint_eq(atomic_load(&s->lock.owner), shoal__self_key());
	/* Not re-entrant, even for the same thread: a try fails, a bounded
	 * wait runs out. */
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), -EAGAIN);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 20 * 1000000), -ETIMEDOUT);
	shoal__lock_release(&s->lock);
	ck_assert_uint_eq(atomic_load(&s->lock.owner), 0);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, -1), 0);
	shoal__lock_release(&s->lock);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 1000000), 0);
	shoal__lock_release(&s->lock);
	ck_assert_uint_eq(atomic_load(&s->lock.waiters), 0);
	ck_assert(!shoal__lock_owner_dead(0));
	ck_assert(!shoal__lock_owner_dead(shoal__self_key()));
	munmap(s, sizeof(*s));
}
END_TEST

#define THREADS 4
#define THREAD_ROUNDS 20000

static void *thread_body(void *arg)
{
	struct shared *s = arg;

	for (int i = 0; i < THREAD_ROUNDS; i++)
		if (bump(s, -1) != 0)
			return (void *)1;
	return NULL;
}

/* Threads share a key: the lock must still keep them apart. The test
 * ThreadSanitizer runs (the counter is plain memory). */
START_TEST(threads_exclude)
{
	struct shared *s = shared_new();
	pthread_t t[THREADS];
	void *ret;

	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, thread_body, s), 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], &ret), 0);
		ck_assert_ptr_null(ret);
	}
	ck_assert_uint_eq(s->counter, (uint64_t)THREADS * THREAD_ROUNDS);
	ck_assert_uint_eq(s->overlap, 0);
	ck_assert_uint_eq(atomic_load(&s->lock.owner), 0);
	ck_assert_uint_eq(atomic_load(&s->lock.waiters), 0);
	munmap(s, sizeof(*s));
}
END_TEST

#define PROCS 4
#define PROC_ROUNDS 5000

START_TEST(processes_exclude)
{
	struct shared *s = shared_new();
	pid_t pid[PROCS];

	for (int i = 0; i < PROCS; i++) {
		pid[i] = fork();
		ck_assert_int_ge(pid[i], 0);
		if (pid[i] == 0) {
			for (int r = 0; r < PROC_ROUNDS; r++) {
				/* Held a few microseconds at most: 30 s is
				 * a hang, not contention. */
				if (bump(s, 30ll * 1000000000) != 0)
					_exit(1);
				if (r % 64 == 0)
					sched_yield();
			}
			_exit(0);
		}
	}
	for (int i = 0; i < PROCS; i++)
		ck_assert_int_eq(t_wait(pid[i]), 0);
	ck_assert_uint_eq(s->counter, (uint64_t)PROCS * PROC_ROUNDS);
	ck_assert_uint_eq(s->overlap, 0);
	ck_assert_uint_eq(atomic_load(&s->lock.owner), 0);
	ck_assert_uint_eq(atomic_load(&s->lock.waiters), 0);
	munmap(s, sizeof(*s));
}
END_TEST

/* A child that takes the lock, says so on @fd, and waits to be killed. */
static pid_t holder(struct shared *s)
{
	int p[2];
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(p[0]);
		if (shoal__lock_acquire(&s->lock, 5ll * 1000000000) != 0)
			_exit(1);
		if (write(p[1], "x", 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &c, 1), 1);
	close(p[0]);
	return pid;
}

START_TEST(try_on_held_is_eagain)
{
	struct shared *s = shared_new();
	pid_t pid = holder(s);
	uint64_t t0 = shoal__now_ns();

	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), -EAGAIN);
	/* "At once": one look at /proc, no sleep. Generous for a busy box. */
	ck_assert_uint_lt(ms_since(t0), 1000);
	t0 = shoal__now_ns();
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 100 * 1000000), -ETIMEDOUT);
	ck_assert_uint_ge(ms_since(t0), 100);
	ck_assert_uint_lt(ms_since(t0), 10000);
	/* A waiter that gave up leaves no count behind. */
	ck_assert_uint_eq(atomic_load(&s->lock.waiters), 0);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	munmap(s, sizeof(*s));
}
END_TEST

/* The owner is SIGKILLed holding the lock: a try takes it over at once, and
 * says so (1), before and after the corpse is reaped. */
START_TEST(dead_owner_taken_over)
{
	struct shared *s = shared_new();
	pid_t pid = holder(s);

	kill(pid, SIGKILL);
	/* Not reaped yet (a zombie): dead all the same; bounded by /proc
	 * showing the kill. */
	for (int i = 0; i < 10000; i++) {
		int rc = shoal__lock_acquire(&s->lock, 0);

		if (rc == 1)
			break;
		ck_assert_int_eq(rc, -EAGAIN);
		usleep(1000);
	}
	ck_assert_uint_eq(atomic_load(&s->lock.owner), shoal__self_key());
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), -EAGAIN);
	shoal__lock_release(&s->lock);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	/* Reaped: its pid is nobody's. */
	pid = holder(s);
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 1);
	shoal__lock_release(&s->lock);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 0);
	shoal__lock_release(&s->lock);
	munmap(s, sizeof(*s));
}
END_TEST

/* Waiters already asleep when the owner dies: exactly one of them gets 1,
 * the others 0, within a bounded time (one slice after the death). */
START_TEST(dead_owner_wakes_sleepers)
{
	struct shared *s = shared_new();
	pid_t own = holder(s), w[3];
	int ones = 0;

	for (int i = 0; i < 3; i++) {
		w[i] = fork();
		ck_assert_int_ge(w[i], 0);
		if (w[i] == 0) {
			int rc = shoal__lock_acquire(&s->lock, 60ll * 1000000000);

			if (rc >= 0) {
				s->counter++;
				shoal__lock_release(&s->lock);
			}
			_exit(rc < 0 ? 100 : rc);
		}
	}
	/* Let them fall asleep (not required for the test to pass). */
	usleep(100000);
	kill(own, SIGKILL);
	ck_assert_int_eq(t_wait(own), 128 + SIGKILL);
	for (int i = 0; i < 3; i++) {
		int rc = t_wait(w[i]);

		ck_assert_int_le(rc, 1);
		ones += rc;
	}
	ck_assert_int_eq(ones, 1);
	ck_assert_uint_eq(s->counter, 3);
	ck_assert_uint_eq(atomic_load(&s->lock.owner), 0);
	munmap(s, sizeof(*s));
}
END_TEST

/* What an acquire does with @owner in the word: 1 (taken over) when
 * @dead, else -EAGAIN for a try and -ETIMEDOUT after the bound. Never a
 * hang: each call is timed. */
static void expect_owner(struct shared *s, uint64_t owner, uint32_t word, uint32_t waiters, bool dead)
{
	uint64_t t0;

	atomic_store(&s->lock.owner, owner);
	atomic_store(&s->lock.word, word);
	atomic_store(&s->lock.waiters, waiters);
	ck_assert_int_eq(shoal__lock_owner_dead(owner), dead);
	t0 = shoal__now_ns();
	if (dead) {
		ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 1);
		shoal__lock_release(&s->lock);
		ck_assert_uint_eq(atomic_load(&s->lock.owner), 0);
		ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 0);
		shoal__lock_release(&s->lock);
	} else {
		ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), -EAGAIN);
		ck_assert_int_eq(shoal__lock_acquire(&s->lock, 30 * 1000000), -ETIMEDOUT);
		ck_assert_uint_eq(atomic_load(&s->lock.owner), owner);
	}
	ck_assert_uint_lt(ms_since(t0), 5000);
}

/* Garbage in every field: random owners name no live process (taken over);
 * impossible keys (pid 0) are dead; a live process's key is waited for,
 * boundedly; garbage @word and @waiters cost nothing. */
START_TEST(garbage_owner_bytes)
{
	struct shared *s = shared_new();
	struct shoal_proc me, other;
	uint64_t r;

	for (int i = 0; i < 200; i++) {
		shoal__random(&r, sizeof(r));
		if (r == 0)
			continue;
		shoal__random(&s->lock.word, sizeof(s->lock.word));
		/* Random 64 bits: pid in 22, start time in 42; a live match
		 * is a 2^-42 chance. */
		expect_owner(s, r, atomic_load(&s->lock.word), (uint32_t)(r >> 7), true);
	}
	expect_owner(s, UINT64_MAX, UINT32_MAX, UINT32_MAX, true);
	expect_owner(s, UINT64_C(0xffffffffffc00000), 0, 0, true); /* pid 0 */
	expect_owner(s, UINT64_C(1) << SHOAL__PID_BITS, 0, 0, true); /* pid 0, start 1 */
	/* A live pid with the wrong start time: a reused pid, dead owner. */
	ck_assert_int_eq(shoal_proc_self(&me), 0);
	other = me;
	other.start_time++;
	expect_owner(s, shoal__proc_key(&other), 0, 0, true);
	/* pid 1 (live) with start time 0, 7: the pthread "robust, held"
	 * pattern read as a key (lock word = tid, count = 0). */
	expect_owner(s, 1, 0, 0, true);
	expect_owner(s, (uint64_t)getpid(), 0, 0, true);
	/* Live owners: ourselves (garbage copied from a live key), and pid 1. */
	expect_owner(s, shoal__self_key(), 0, 0, false);
	expect_owner(s, shoal__self_key(), 12345, UINT32_MAX, false);
	ck_assert_int_eq(shoal_proc_get(1, &other), 0);
	expect_owner(s, shoal__proc_key(&other), 0, 0, false);
	munmap(s, sizeof(*s));
}
END_TEST

/* The bytes glibc leaves in a robust process-shared mutex, held by a live
 * thread, by a dead one, with waiters, copied into the lock word: the
 * patterns the old ledger lock could be left in. Never an abort. */
START_TEST(pthread_patterns)
{
	struct shared *s = shared_new();
	pthread_mutexattr_t at;
	pthread_mutex_t *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid;

	ck_assert_ptr_ne(m, MAP_FAILED);
	pthread_mutexattr_init(&at);
	pthread_mutexattr_setpshared(&at, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&at, PTHREAD_MUTEX_ROBUST);
	ck_assert_int_eq(pthread_mutex_init(m, &at), 0);
	pthread_mutexattr_destroy(&at);
	ck_assert_int_eq(pthread_mutex_lock(m), 0);
	memcpy(&s->lock, m, sizeof(s->lock)); /* held by us: tid, count 0 */
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 1);
	shoal__lock_release(&s->lock);
	pthread_mutex_unlock(m);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		pthread_mutex_lock(m);
		_exit(0); /* dies holding it */
	}
	ck_assert_int_eq(t_wait(pid), 0);
	memcpy(&s->lock, m, sizeof(s->lock));
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 1);
	shoal__lock_release(&s->lock);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 0);
	shoal__lock_release(&s->lock);
	munmap(m, 4096);
	munmap(s, sizeof(*s));
}
END_TEST

/* A thread sleeping on the lock gets it when another thread of the same
 * process releases it, and sees what was written under it. */
static void *hold_then_release(void *arg)
{
	struct shared *s = arg;

	usleep(50000);
	s->counter = 42;
	shoal__lock_release(&s->lock);
	return NULL;
}

START_TEST(release_wakes_waiter)
{
	struct shared *s = shared_new();
	pthread_t t;

	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 0), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, hold_then_release, s), 0);
	ck_assert_int_eq(shoal__lock_acquire(&s->lock, 30ll * 1000000000), 0);
	ck_assert_uint_eq(s->counter, 42);
	shoal__lock_release(&s->lock);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_uint_eq(atomic_load(&s->lock.waiters), 0);
	munmap(s, sizeof(*s));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("lock");
	TCase *tc = tcase_create("lock");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, uncontended);
	tcase_add_test(tc, threads_exclude);
	tcase_add_test(tc, processes_exclude);
	tcase_add_test(tc, try_on_held_is_eagain);
	tcase_add_test(tc, dead_owner_taken_over);
	tcase_add_test(tc, dead_owner_wakes_sleepers);
	tcase_add_test(tc, garbage_owner_bytes);
	tcase_add_test(tc, pthread_patterns);
	tcase_add_test(tc, release_wakes_waiter);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(suite());
}
