/*
 * lock.c - shoal's own lock word, the one lock that may live in a segment.
 *
 * Owns struct shoal__lock: acquire with a bounded wait, release, and the
 * take-over of a lock whose owner died. It replaces robust process-shared
 * pthread mutexes, whose bytes glibc trusts: in an untrusted segment a few
 * changed bytes made glibc abort the process or block a try call for ever.
 * Here every byte pattern is a legal state:
 *
 *   owner    0 = free; otherwise the holder's process key (lib/proc.c). The
 *            lock *is* this word: taking it is one CAS 0 -> key, so the
 *            owner is known from the instant the lock is held, and a holder
 *            that dies at any instruction leaves either a free lock or its
 *            own key behind, never a held lock without a name.
 *   word     a sequence number the waiters sleep on (a futex needs 32
 *            bits); bumped by a release that saw waiters.
 *   waiters  how many are (about to be) asleep on @word. A waiter killed
 *            asleep leaves it one too high: releases then make a futex wake
 *            that nobody needs, which costs a system call, never a hang.
 *
 * Threads of one process share a key, so "owner == my key" is never taken
 * as re-entry: a second thread waits like anyone else.
 *
 * A waiter sleeps in bounded slices (LOCK_SLICE_MIN_NS doubling to
 * LOCK_SLICE_MAX_NS) and, before the first sleep and after each slice that
 * ran out, asks whether the owner still lives (shoal__key_dead(), a read of
 * /proc/PID/stat, a few microseconds; only on this slow path). An owner
 * that cannot be a process key (pid 0) counts as dead. A dead owner is
 * replaced by one CAS owner -> my key, so of all the waiters exactly one
 * takes it over, and acquire returns 1: the caller repairs what the dead
 * holder may have left half done. An owner that is alive (or cannot be
 * judged, /proc unreadable) is waited for until the caller's deadline:
 * garbage that happens to name a live process costs the caller its
 * timeout, never more.
 *
 * The protocol is the classic futex mutex (Drepper, "Futexes Are Tricky"),
 * with the owner's identity in the lock word instead of a 0/1/2 state, and
 * a separate waiter count so the release fast path makes no system call.
 */
#include "internal.h"

#include <errno.h>

_Static_assert(sizeof(struct shoal__lock) == 16, "lock layout is ABI");
_Static_assert(offsetof(struct shoal__lock, owner) == 0, "lock layout is ABI");
_Static_assert(offsetof(struct shoal__lock, word) == 8, "lock layout is ABI");
_Static_assert(offsetof(struct shoal__lock, waiters) == 12, "lock layout is ABI");

/* Looks at a free lock before sleeping: a holder on another CPU is usually
 * out of a short critical section sooner than a futex round trip. */
#define LOCK_SPINS 64
#define LOCK_SLICE_MIN_NS 1000000ull   /* 1 ms */
#define LOCK_SLICE_MAX_NS 64000000ull  /* 64 ms: a dead owner is seen within this */

void shoal__lock_init(struct shoal__lock *l)
{
	atomic_store_explicit(&l->owner, 0, memory_order_relaxed);
	atomic_store_explicit(&l->word, 0, memory_order_relaxed);
	atomic_store_explicit(&l->waiters, 0, memory_order_relaxed);
}

bool shoal__lock_owner_dead(uint64_t owner)
{
	struct shoal_proc p;

	if (owner == 0)
		return false;
	shoal__proc_unkey(owner, &p);
	if (p.pid <= 0)
		return true; /* no process has pid 0: nobody will release it */
	return shoal__key_dead(owner);
}

/* The last owner this thread found alive, and when: try calls against a
 * live holder (a queue's consumers taking orphans after a nack, say) would
 * otherwise read /proc on every attempt. A try call does not ask again
 * about a holder seen alive within ALIVE_FOR_NS (so it may see a death up
 * to that much later); our own process is never asked about. Calls that
 * wait always ask: a reaper's bounded wait must see a death at once. */
#define ALIVE_FOR_NS (10 * 1000000ull)
static __thread uint64_t alive_key, alive_at;

static bool alive_lately(uint64_t owner, uint64_t me)
{
	if (owner == me)
		return true;
	return owner == alive_key && shoal__now_ns() - alive_at < ALIVE_FOR_NS;
}

static int lock_slow(struct shoal__lock *l, uint64_t me, int64_t timeout_ns)
{
	uint64_t deadline = timeout_ns > 0 ? shoal__deadline(timeout_ns) : UINT64_MAX;
	uint64_t slice = LOCK_SLICE_MIN_NS;
	uint64_t judged = 0; /* an owner judged alive, not to be asked again until a slice ran out */
	bool counted = false;
	int rc;

	for (int i = 0; timeout_ns != 0 && i < LOCK_SPINS; i++) {
		uint64_t free_ = 0;

		shoal__cpu_relax();
		if (atomic_load_explicit(&l->owner, memory_order_relaxed) == 0 &&
		    /* A1: pairs with R1 in shoal__lock_release(): the last
		     * holder's writes are visible to the next. */
		    atomic_compare_exchange_strong_explicit(&l->owner, &free_, me, memory_order_acquire,
							    memory_order_relaxed))
			return 0;
	}
	for (;;) {
		uint64_t cur = atomic_load_explicit(&l->owner, memory_order_seq_cst);
		uint64_t now, until;
		uint32_t seq;

		if (cur == 0) {
			/* A1 again: pairs with R1. */
			if (atomic_compare_exchange_strong_explicit(&l->owner, &cur, me, memory_order_acquire,
								    memory_order_relaxed)) {
				rc = 0;
				break;
			}
			continue;
		}
		if (cur != judged) {
			if (!(timeout_ns == 0 && alive_lately(cur, me))) {
				if (shoal__lock_owner_dead(cur)) {
					/* A2: the dead holder's writes, as far as
					 * they went, are visible to the repairer;
					 * only one waiter's CAS from @cur succeeds. */
					if (atomic_compare_exchange_strong_explicit(
						    &l->owner, &cur, me, memory_order_acquire,
						    memory_order_relaxed)) {
						rc = 1;
						break;
					}
					continue;
				}
				alive_key = cur; /* asked just now, and alive */
				alive_at = shoal__now_ns();
			}
			judged = cur;
		}
		if (timeout_ns == 0) {
			rc = -EAGAIN;
			break;
		}
		now = shoal__now_ns();
		if (now >= deadline) {
			rc = -ETIMEDOUT;
			break;
		}
		if (!counted) {
			/* S1: pairs with S2 in release (both seq_cst): either
			 * the releaser sees us counted and bumps @word, or we
			 * see its owner store below and do not sleep. */
			atomic_fetch_add_explicit(&l->waiters, 1, memory_order_seq_cst);
			counted = true;
		}
		seq = atomic_load_explicit(&l->word, memory_order_seq_cst);
		if (atomic_load_explicit(&l->owner, memory_order_seq_cst) != cur)
			continue;
		until = deadline - now > slice ? now + slice : deadline;
		if (shoal__futex_wait(&l->word, seq, until) == -ETIMEDOUT) {
			judged = 0; /* a slice ran out: ask about the owner again */
			slice = slice * 2 > LOCK_SLICE_MAX_NS ? LOCK_SLICE_MAX_NS : slice * 2;
		}
	}
	if (counted) {
		uint32_t left = atomic_fetch_sub_explicit(&l->waiters, 1, memory_order_seq_cst) - 1;

		/* A waiter leaving without the lock may have eaten the one
		 * wake meant for the others: pass it on. */
		if (rc < 0 && left != 0 && atomic_load_explicit(&l->owner, memory_order_seq_cst) == 0) {
			atomic_fetch_add_explicit(&l->word, 1, memory_order_release);
			shoal__futex_wake(&l->word, 1);
		}
	}
	return rc;
}

int shoal__lock_acquire(struct shoal__lock *l, int64_t timeout_ns)
{
	uint64_t me = shoal__self_key();
	uint64_t free_ = 0;

	if (SHOAL__UNLIKELY(me == 0))
		return -EIO;
	/* A1: pairs with R1 in shoal__lock_release(). */
	if (SHOAL__LIKELY(atomic_compare_exchange_strong_explicit(&l->owner, &free_, me,
								  memory_order_acquire,
								  memory_order_relaxed)))
		return 0;
	return lock_slow(l, me, timeout_ns);
}

void shoal__lock_release(struct shoal__lock *l)
{
	/* R1: pairs with A1/A2: the critical section's writes are visible to
	 * the next holder. S2: pairs with S1 (seq_cst exchange, then load). */
	atomic_exchange_explicit(&l->owner, 0, memory_order_seq_cst);
	if (SHOAL__UNLIKELY(atomic_load_explicit(&l->waiters, memory_order_seq_cst) != 0)) {
		atomic_fetch_add_explicit(&l->word, 1, memory_order_release);
		shoal__futex_wake(&l->word, 1);
	}
}
