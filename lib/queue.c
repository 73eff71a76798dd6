/*
 * queue.c - a bounded MPMC FIFO in shared memory that survives SIGKILL.
 *
 * The algorithm is Dmitry Vyukov's bounded MPMC queue ("Bounded MPMC queue",
 * 1024cores.net, 2010): a power-of-two ring of slots, each with a sequence
 * number saying which lap of the ring it is ready for, and two free-running
 * cursors (tail for producers, head for consumers). In Vyukov's queue a
 * producer first CASes the tail and then writes the slot; if it dies between
 * the two, nobody can tell that the slot was claimed, or by whom, and the
 * consumers wait for it forever.
 *
 * So the claim is made at the slot instead. Each slot has one 64-bit state
 * word, {42-bit position | 6-bit span | 14-bit owner | 2-bit state}:
 *
 *   STABLE(p)        free, for the producer at position p (Vyukov's seq == p)
 *   WRITING(o, p)    participant o claimed position p and is writing it
 *   STABLE(p + 1)    holds the message of position p (Vyukov's seq == p + 1)
 *   READING(o, p)    participant o took the message of position p
 *   READING(0, p)    an orphan: its reader died; another consumer takes it
 *   CLAIMED(o, p)    participant o claimed it with shoal_queue_claim() and
 *                    has not acked it yet (state 3)
 *   STABLE(p + cap)  consumed: free for the producer one lap later
 *
 * A producer at tail position p CASes STABLE(p) -> WRITING(me, p), then
 * moves the tail p -> p + 1, writes the message, and publishes STABLE(p + 1)
 * with a release store. A consumer at head p CASes STABLE(p + 1) ->
 * READING(me, p), moves the head, copies the message out and stores
 * STABLE(p + cap). That release store is where a popped message becomes the
 * consumer's: a consumer that dies before it gives the message back (an
 * orphan, redelivered), one that dies after it (still inside the call,
 * waking producers, or after returning) has consumed it.
 *
 * Acknowledged delivery (RabbitMQ's manual ack, SQS's visibility) is a pop
 * that does not release: claim CASes STABLE(p + 1) -> CLAIMED(me, p),
 * copies, and returns a ticket naming that exact state word. ack is the
 * release store (a CAS CLAIMED(me, p) -> STABLE(p + cap), so a stale or
 * foreign ticket fails), nack makes the slot an orphan at once (under the
 * lock, like recovery), and a claimer that dies before ack has its
 * CLAIMED slots made orphans by recovery. The slot's redelivery word counts
 * how often its message was made an orphan. A claimed message holds its
 * slot until ack, so it counts against capacity; producers block when the
 * ring wraps onto it. Anyone who finds a claimed slot at a cursor moves that
 * cursor on (helping), so a process that dies between the slot CAS and the
 * cursor CAS stalls nobody. Positions are compared modulo 2^48, as the sign
 * of their 48-bit difference.
 *
 * Participants: the queue has a table of process keys (pid + start time,
 * lib/proc.c) after its ring, sized at create (4096 by default, at most
 * what the 14-bit owner field names); a handle takes an entry on first use
 * (and again in a forked child), and the owner field of a slot names that
 * entry. When a
 * survivor finds a slot owned by a dead process, it runs recovery under one
 * lock (shoal's own lock word, lib/lock.c, never a libc mutex: its bytes
 * are in the segment and untrusted): WRITING(dead, p) becomes a tombstone STABLE(p + 1) that
 * consumers skip (the dying push is delivered whole or not at all), and
 * READING(dead, p) and CLAIMED(dead, p) become orphans that the next pop or
 * claim takes before the head (each is redelivered exactly once). Only then is the dead entry freed.
 * Recovery is idempotent, so a recoverer that dies inside it (the lock is
 * taken over from the dead owner) is simply followed by another full run.
 * Recovery only tries the lock: if a live process holds it, the caller
 * goes on and looks again on its next slice, so no call waits on it. Survivors notice deaths because they
 * sleep in slices of at most 50 ms and look at the owner of the slot that
 * blocks them, plus a rate-limited sweep that judges a bounded part of the
 * participant table each time.
 *
 * Sleeping: one futex word and waiter count per side, each on its own cache
 * line. After publishing (a seq_cst store or fence), a pusher reads the
 * consumers' waiter count and only makes a system call if someone sleeps;
 * sleepers raise the count, fence, and check again before sleeping (Dekker).
 * The wake-up order is fair within a bound: callers queue behind sleepers,
 * and a sleeper that lost a wake-up gets an urgent turn that the others of
 * its side leave the ring to (wait_for()); the mechanism is Linux's mutex
 * hand-off (a starving waiter sets a flag, newcomers stop stealing) with
 * the oldest waiter first and a lease instead of a lock.
 *
 * Dying anywhere in here leaves at most one slot WRITING or READING under
 * the dead owner (or several for the batch calls), a cursor one step behind
 * (the next caller helps it on), a waiter count too high (harmless: at worst
 * a wake-up system call nobody needed, and the next sleeper's count still
 * works), the recovery lock held by a dead owner (the next locker
 * takes it over and re-runs recovery), or an urgent turn held by a dead
 * owner (void 30 ms after its last stamp). docs/queue.md, "Memory orderings",
 * has the argument.
 *
 * Messages are bytes here: array handles carried in a queue, and the
 * references the queue holds for them, are lib/queue_arrays.c's, which also
 * holds the public shoal_queue_unlink() (it ends by dropping those
 * references; shoal__queue_unlink() below is the queue's part of it).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- shared layout --------------------------------------------------------- */

#define QUEUE_MAGIC 0x51554555u /* "UEUQ" */
/* qhdr.flags: the queue's own layout. 2: the participant table follows the
 * ring, nparts entries sized at create, and lines 1, 5 and 6 carry the
 * urgent waiters (see "fair wake-up" below); a claim's state word carries
 * a span (a batch claims its slots with one CAS on the first), and
 * positions are 42 bits. 1 had a fixed table of 1024 entries in the kind
 * header, no span bits and 48-bit positions; 0 had a glibc mutex where the
 * lock word is. Either would be misread, so both are refused (and a
 * library of layout 1 refuses this one: it wants nparts 1024 and no more
 * than layout 1). */
#define QUEUE_LAYOUT 2u
#define SLOT_HDR 16u
#define TOMBSTONE UINT32_MAX /* slot len of a message that never was */

enum { ST_STABLE = 0, ST_WRITING = 1, ST_READING = 2, ST_CLAIMED = 3 };
#define OWNER_BITS 14
#define SPAN_SHIFT 16
#define SPAN_BITS 6
#define POS_SHIFT 22
#define BATCH_MAX 64
/* Entries in a participant table, entry 0 ("nobody") included: a slot's
 * owner field names one. */
#define NPARTS_MAX (1u << OWNER_BITS)
_Static_assert(SHOAL_QUEUE_PARTICIPANTS_MAX + 1 == NPARTS_MAX, "owner index must fit its field");
_Static_assert(SHOAL_QUEUE_PARTICIPANTS >= 4096 &&
	       SHOAL_QUEUE_PARTICIPANTS <= SHOAL_QUEUE_PARTICIPANTS_MAX, "default table size");
_Static_assert(BATCH_MAX <= (1u << SPAN_BITS), "a batch's span must fit its field");
_Static_assert(SPAN_SHIFT + SPAN_BITS == POS_SHIFT, "state word fields must not overlap");
_Static_assert(SHOAL_QUEUE_CAPACITY_MAX <= (1ull << 40), "positions compare modulo 2^42");

struct slot {
	shoal__atomic_u64 state; /* {position:42 | span:6 | owner:14 | state:2} */
	_Atomic uint32_t len;    /* relaxed: ordered by state (R1/A1) */
	/* Times this message was made an orphan: written by whoever orphans it
	 * (under the lock), read by the claim that takes the orphan (under the
	 * lock), zeroed by the release of a message that had one. 0 in every
	 * slot a plain push fills, so the fast paths never touch it. */
	_Atomic uint32_t redeliv;
	unsigned char data[];    /* max_msg bytes */
};
_Static_assert(sizeof(struct slot) == SLOT_HDR, "slot header is ABI");
_Static_assert(offsetof(struct slot, len) == 8, "slot header is ABI");
_Static_assert(offsetof(struct slot, redeliv) == 12, "slot header is ABI");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "slot words are 32 bits (lock-free: atomic.h)");

struct line32 {
	_Atomic uint32_t word;    /* futex: bumped to wake sleepers */
	_Atomic uint32_t waiters; /* how many may be asleep on word or uword */
	_Atomic uint32_t uword;   /* futex: the side's urgent waiter sleeps here */
	_Atomic uint32_t usleep;  /* how many urgent waiters may be asleep on uword */
	shoal__atomic_u64 urgent_at; /* when the urgent waiter last ran (ns) */
	shoal__atomic_u64 slept_at;  /* when a caller last went to sleep here (ns) */
	/* Spin seats: a blocked caller spins only while it holds one (the
	 * monotonic time it took it, 0 = free); see take_seat(). Bytes that
	 * were padding: zero in a queue an older library made, ignored by
	 * it, and any value is safe (a stamp too old or in the future frees
	 * the seat). */
	shoal__atomic_u64 seat[4];
};
_Static_assert(sizeof(struct line32) == SHOAL_CACHELINE, "a side's sleep line is one line");

struct qhdr {
	/* Line 0: written once at create, validated at open. */
	uint32_t magic;
	uint32_t capacity;
	uint32_t max_msg;
	uint32_t stride;
	uint32_t nparts;
	uint32_t flags;
	uint64_t reserved0[5];
	/* Line 1: read on every push (closed, urgent[1]) and pop (orphans,
	 * urgent[0]), written almost never. */
	_Atomic uint32_t closed;
	_Atomic uint32_t orphans; /* slots READING(0, p); changed under lock */
	/* The urgent waiter of each side (0 consumers, 1 producers), or 0:
	 * its token (since when it waits | its entry); see wait_for(). */
	shoal__atomic_u64 urgent[2];
	char pad1[SHOAL_CACHELINE - 24];
	/* Line 2: rare-path counters. */
	shoal__atomic_u64 sleeps;
	shoal__atomic_u64 recoveries;
	shoal__atomic_u64 dropped;     /* tombstones made */
	shoal__atomic_u64 skipped;     /* tombstones consumed */
	shoal__atomic_u64 redelivered; /* orphans taken */
	shoal__atomic_u64 sweep_ns;    /* last participant sweep */
	shoal__atomic_u64 sweep_next;  /* where the next sweep starts */
	uint64_t reserved2[1];
	/* Lines 3, 4: the cursors, each alone. */
	shoal__atomic_u64 tail;
	char pad3[SHOAL_CACHELINE - 8];
	shoal__atomic_u64 head;
	char pad4[SHOAL_CACHELINE - 8];
	/* Lines 5, 6: consumers sleep on not_empty, producers on not_full. */
	struct line32 not_empty;
	struct line32 not_full;
	/* Lines 7..8: the recovery lock, shoal's own (16 bytes used; an old
	 * queue's unlocked pthread mutex reads as a free lock). */
	union {
		struct shoal__lock l;
		char pad[2 * SHOAL_CACHELINE];
	} lock;
	/* The participant table (process keys, 0 = free) is not here: it
	 * follows the ring, nparts entries, sized at create. */
};
_Static_assert(offsetof(struct qhdr, closed) == 64, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, sleeps) == 128, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, tail) == 192, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, head) == 256, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, not_empty) == 320, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, not_full) == 384, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, lock) == 448, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, urgent) == 72, "queue header layout is ABI");
_Static_assert(offsetof(struct qhdr, sweep_next) == 176, "queue header layout is ABI");
_Static_assert(sizeof(struct qhdr) == 576, "queue header layout is ABI");
_Static_assert(sizeof(struct shoal__lock) <= 2 * SHOAL_CACHELINE, "lock fits its lines");

/* ---- the handle -------------------------------------------------------------- */

struct shoal_queue {
	struct shoal_segment *seg;
	struct qhdr *h;
	unsigned char *ring;
	shoal__atomic_u64 *parts; /* the participant table, after the ring */
	uint64_t mask;
	uint32_t cap, max_msg, stride;
	uint32_t nparts;          /* entries in parts, 0 included; from open's copy */
	/* Our participant entry, valid while reg_gen == shoal__fork_gen + 1:
	 * a forked child sees another generation and registers anew. */
	_Atomic uint32_t me;
	_Atomic uint32_t reg_gen;
	uint64_t my_key;
	_Atomic uint32_t claims; /* open claims of this handle, for detach */
	pthread_mutex_t reg_lock; /* process-local; registration only */
};

void (*shoal__queue_hook)(enum shoal__queue_point where);

#define HOOK(p)                                          \
	do {                                             \
		if (SHOAL__UNLIKELY(shoal__queue_hook)) \
			shoal__queue_hook(p);            \
	} while (0)

/* How long a sleeper sleeps before it looks for dead owners: deaths are
 * noticed within one slice. */
#define SLICE_NS 50000000ull
/* At most one participant sweep per this long, queue-wide. */
#define SWEEP_NS 50000000ull
/* Short bounded spin before sleeping: tries, each a few pauses apart. */
#define SPIN_TRIES 200
/* A blocked caller spins while it holds one of its side's spin seats, at
 * most one seat per online CPU and SPIN_SEATS: with more runnable
 * processes than cores a spinner's sched_yield() only runs another
 * spinner, and every extra spinner delays the process that would publish.
 * A caller without a seat sleeps at once if SEATLESS_FEW or more of its
 * side sleep (a crowd: 64 x 64 ran 2.3x faster), and spins anyway when
 * fewer do (4 x 4 on 2 cores needs its spinners: with seats alone it ran
 * at 0.1x). A seat taken longer ago than SEAT_STALE_NS, or stamped in the
 * future, is free: its holder died, or its spin is long over. */
#define SPIN_SEATS 4
#define SEAT_STALE_NS 2000000ull
#define SEATLESS_FEW 4u
_Static_assert(sizeof(((struct line32 *)0)->seat) == SPIN_SEATS * 8, "one word per seat");
/* How long nack waits for the recovery lock held by a live process. */
#define NACK_LOCK_NS 2000000000ll
/* Fair wake-up (wait_for()): a blocked caller that finds this many asleep
 * on its side sleeps at once instead of spinning (with 1, 4 producers x 4
 * consumers ran at 0.04x: every caller slept; 8 is above any small group
 * and below the crowds that starve, 64x64); */
#define CROWD 8u
/* a sleeper that has waited this long and then loses a wake-up (another
 * caller took what it was woken for) claims its side's urgent turn (100 us
 * made the turn so frequent that 4x4 ran at 0.2x; 1 ms costs 4x4 nothing); */
#define STARVE_NS 1000000ull
/* the urgent waiter sleeps in slices this short and stamps urgent_at each
 * time it runs, */
#define URGENT_SLICE_NS 10000000ull
/* and a turn whose stamp is older than this is stale (its holder died, is
 * stopped, or waits for a CPU): nobody defers to it, anyone may take it. */
#define HANDOFF_NS 30000000ull

static inline uint64_t mk(uint64_t pos, uint32_t owner, uint32_t st)
{
	return (pos << POS_SHIFT) | ((uint64_t)owner << 2) | st;
}
/* A claim of @n consecutive positions from @pos, made on the slot of @pos:
 * the slots after it keep their STABLE words until published or released. */
static inline uint64_t mk_span(uint64_t pos, uint32_t owner, uint32_t st, size_t n)
{
	return mk(pos, owner, st) | ((uint64_t)(n - 1) << SPAN_SHIFT);
}
static inline uint32_t st_of(uint64_t s) { return (uint32_t)(s & 3); }
static inline uint32_t owner_of(uint64_t s) { return (uint32_t)((s >> 2) & ((1u << OWNER_BITS) - 1)); }
static inline uint64_t pos_of(uint64_t s) { return s >> POS_SHIFT; }
static inline uint32_t span_of(uint64_t s) { return (uint32_t)((s >> SPAN_SHIFT) & ((1u << SPAN_BITS) - 1)) + 1; }
/* a - b for 48-bit positions (b may be a full cursor), sign-extended. */
static inline int64_t pdiff(uint64_t a, uint64_t b)
{
	return (int64_t)((a - b) << POS_SHIFT) >> POS_SHIFT;
}

/* The span of claim @s, never more than the ring (a corrupt word's could be). */
static inline uint64_t span_in(const struct shoal_queue *q, uint64_t s)
{
	uint32_t n = span_of(s);

	return n < q->cap ? n : q->cap;
}

static inline struct slot *slot_at(const struct shoal_queue *q, uint64_t pos)
{
	/* Masked: whatever a cursor holds, we stay inside the ring. */
	return (struct slot *)(q->ring + (size_t)(pos & q->mask) * q->stride);
}

static size_t stride_for(uint32_t max_msg)
{
	return ((size_t)SLOT_HDR + max_msg + SHOAL_CACHELINE - 1) & ~(size_t)(SHOAL_CACHELINE - 1);
}

/* ---- liveness and participants ------------------------------------------------ */

/* A handle that detached with claims open leaves its entry marked (its key
 * with this bit, which no process key has) until recovery has handed its
 * claims on: registration takes only free entries (0), so no live handle
 * can get an entry that slots of a detached one still name. */
#define DETACHED_BIT (1ull << 63)

static bool key_alive(uint64_t key)
{
	if (key == 0 || (key & DETACHED_BIT))
		return false;
	return key == shoal__self_key() || !shoal__key_dead(key);
}

/* recover()'s @also: which entries it judges besides the owners its pass
 * over the ring meets. */
#define FOUND_ONLY 0u
#define ALL_ENTRIES UINT32_MAX
static int recover(struct shoal_queue *q, uint32_t also);

static int do_register(struct shoal_queue *q)
{
	uint32_t gen;
	int rc = 0;

	pthread_mutex_lock(&q->reg_lock);
	gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);
	if (atomic_load_explicit(&q->reg_gen, memory_order_relaxed) == gen + 1)
		goto out;
	q->my_key = shoal__self_key();
	if (q->my_key == 0) {
		rc = -EIO;
		goto out;
	}
	for (int attempt = 0; attempt < 2; attempt++) {
		for (uint32_t i = 1; i < q->nparts; i++) {
			uint64_t zero = 0;

			if (atomic_load_explicit(&q->parts[i], memory_order_relaxed) != 0)
				continue;
			if (atomic_compare_exchange_strong_explicit(&q->parts[i], &zero, q->my_key,
								    memory_order_relaxed,
								    memory_order_relaxed)) {
				atomic_store_explicit(&q->me, i, memory_order_relaxed);
				/* R0: pairs with A0 in self_index(). */
				atomic_store_explicit(&q->reg_gen, gen + 1, memory_order_release);
				goto out;
			}
		}
		/* Full: entries of processes that died or exited without
		 * detaching go back once recovery has cleaned their slots. Only
		 * here does recovery judge every entry (a /proc read for each
		 * other process): a full table is rare and the alternative is
		 * -EUSERS. */
		if (attempt == 0 && (rc = recover(q, ALL_ENTRIES)) != 0 && rc != -EAGAIN)
			goto out;
		rc = 0; /* -EAGAIN: a live process is recovering; look again */
	}
	rc = shoal__fail(-EUSERS, "queue '%s': participant table full (%u handles use it)",
			 q->seg->name, q->nparts - 1);
out:
	pthread_mutex_unlock(&q->reg_lock);
	return rc;
}

/* Our participant entry, registering first if this process has none. */
static inline int self_index(struct shoal_queue *q, uint32_t *me)
{
	uint32_t gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);

	/* A0: pairs with R0 in do_register(): me is set once reg_gen is. */
	if (SHOAL__UNLIKELY(atomic_load_explicit(&q->reg_gen, memory_order_acquire) != gen + 1)) {
		int rc = do_register(q);

		if (rc)
			return rc;
	}
	*me = atomic_load_explicit(&q->me, memory_order_relaxed);
	return 0;
}

/* ---- sleeping and waking ------------------------------------------------------ */

/* Whether the side's urgent turn was stamped within HANDOFF_NS (a stamp in
 * the future is garbage: stale). */
static inline bool urgent_fresh(const struct line32 *l, uint64_t now)
{
	uint64_t at = atomic_load_explicit(&l->urgent_at, memory_order_relaxed);

	return at <= now && now - at < HANDOFF_NS;
}

/* Called after a publish that was a seq_cst store or followed by a seq_cst
 * fence: then either we see the sleeper's count, or it sees our slot (D1);
 * the same for the urgent waiter's usleep (D3). */
static inline void wake(struct line32 *l, int n)
{
	uint32_t nw = atomic_load_explicit(&l->waiters, memory_order_seq_cst);

	if (nw != 0) {
		_Atomic uint32_t *w = &l->word;
		int k;

		/* An urgent waiter asleep: what we published is its turn, and
		 * everyone else would defer to it (wait_for()). A broadcast
		 * (close, a batch) wakes the others too. */
		if (SHOAL__UNLIKELY(atomic_load_explicit(&l->usleep, memory_order_seq_cst)) &&
		    urgent_fresh(l, shoal__now_ns())) {
			atomic_fetch_add_explicit(&l->uword, 1, memory_order_release);
			k = shoal__futex_wake(&l->uword, INT32_MAX);
			/* Only if it woke someone: an urgent waiter killed asleep
			 * leaves usleep one too high for good, and a turn's stamp
			 * stays fresh 30 ms after it is dropped; returning then
			 * would leave the others asleep with work to take. If
			 * the waiter was about to sleep, it sees uword move and
			 * the wake below is one too many, which is harmless. */
			if (n == 1 && k > 0) {
				sched_yield();
				return;
			}
		}
		atomic_fetch_add_explicit(w, 1, memory_order_release);
		/* The scheduler often queues the woken process on the waker's
		 * own CPU (its last one), where it waits until the waker
		 * blocks: 10 us here, with the other CPU idle. Yielding after
		 * a wake that found a sleeper lets it run now; with nothing
		 * else queued here the yield returns at once. Only the slow
		 * path (someone slept) pays for it. */
		if (shoal__futex_wake(w, n) > 0 && nw < CROWD)
			sched_yield();
		/* Not with a crowd asleep: then more processes are runnable
		 * than cores, the yield runs another waiter or spinner rather
		 * than the one woken, and at 64 x 64 it cost more than half
		 * the throughput. */
	}
}

static void wake_all(struct shoal_queue *q)
{
	struct line32 *l[2] = { &q->h->not_empty, &q->h->not_full };

	for (int i = 0; i < 2; i++) {
		atomic_fetch_add_explicit(&l[i]->word, 1, memory_order_seq_cst);
		atomic_fetch_add_explicit(&l[i]->uword, 1, memory_order_seq_cst);
		shoal__futex_wake(&l[i]->word, INT32_MAX);
		shoal__futex_wake(&l[i]->uword, INT32_MAX);
	}
}

/* ---- recovery ----------------------------------------------------------------- */

/*
 * The recovery lock is shoal's own lock word (lib/lock.c), never a libc
 * object: its bytes are in the segment, so they are untrusted. Recovery and
 * orphan taking only try it (@timeout_ns 0): if a live process holds it,
 * the work is being done, or will be on the caller's next attempt, so no
 * try call ever waits on it and a blocking call waits on the queue's own
 * futex in its usual slices. A dead holder (or a garbage owner that names
 * no process) is taken over and its work redone (*owner_died: recovery is
 * idempotent). Only nack waits, at most NACK_LOCK_NS.
 */
static int lock_queue(struct shoal_queue *q, bool *owner_died, int64_t timeout_ns)
{
	int rc = shoal__lock_acquire(&q->h->lock.l, timeout_ns);

	*owner_died = rc == 1;
	if (rc >= 0)
		return 0;
	return rc == -ETIMEDOUT ? -EDEADLK : rc;
}

static void unlock_queue(struct shoal_queue *q, bool owner_died)
{
	(void)owner_died; /* the caller redid the dead holder's work */
	shoal__lock_release(&q->h->lock.l);
}

enum { UNKNOWN = 0, ALIVE = 1, DEAD = 2 };

/* Whether entry @o's holder is dead, judged once per pass; @vkey keeps the
 * key that was judged, so only that key is ever freed. */
static bool owner_dead(const struct shoal_queue *q, uint32_t o, unsigned char *verdict,
		       uint64_t *vkey)
{
	if (o == 0 || o >= q->nparts)
		return false;
	if (verdict[o] == UNKNOWN) {
		vkey[o] = atomic_load_explicit(&q->parts[o], memory_order_relaxed);
		verdict[o] = key_alive(vkey[o]) ? ALIVE : DEAD;
	}
	return verdict[o] == DEAD;
}

/*
 * The slots after the first of a dead producer's span (@s: WRITING(o, p,
 * span n)). They were published last to first, after the whole batch was
 * written: if the last one holds a message, so does every slot, and the
 * rest are published (the batch is delivered whole); if not, none is, and
 * they all become tombstones. Either way the first slot is the caller's to
 * settle, after these, so a recoverer that dies in here leaves the claim to
 * redo; the tombstones it made (the last first) read as "not out" to the
 * next one, as do those of a batch closed under its producer (all
 * tombstones, counted by the producer after its last store; a death before
 * that leaves `dropped` short by the ones it published). Returns whether
 * the batch is delivered.
 */
static bool recover_span_writing(struct shoal_queue *q, uint64_t s)
{
	uint64_t p = pos_of(s), n = span_in(q, s);
	struct slot *last = slot_at(q, p + n - 1);
	/* A3: pairs with the producer's R1 on that slot: it wrote every
	 * message of the batch before. */
	bool out = n > 1 &&
		   atomic_load_explicit(&last->state, memory_order_acquire) == mk(p + n, 0, ST_STABLE) &&
		   atomic_load_explicit(&last->len, memory_order_relaxed) != TOMBSTONE;

	for (uint64_t i = n - 1; i > 0; i--) {
		struct slot *sl = slot_at(q, p + i);
		uint64_t free = mk(p + i, 0, ST_STABLE);

		if (atomic_load_explicit(&sl->state, memory_order_acquire) != free)
			continue; /* published before the death, or repaired */
		if (!out)
			atomic_store_explicit(&sl->len, TOMBSTONE, memory_order_relaxed);
		/* R3: pairs with A1, as the tombstone in recover_locked().
		 * Only the dead owner could change this word. */
		if (atomic_compare_exchange_strong_explicit(&sl->state, &free,
							    mk(p + i + 1, 0, ST_STABLE),
							    memory_order_release,
							    memory_order_relaxed) &&
		    !out)
			atomic_fetch_add_explicit(&q->h->dropped, 1, memory_order_relaxed);
		HOOK(SHOAL__QP_RECOVER_FIXED);
	}
	return out;
}

/* The slots after the first of a dead consumer's span (@s: READING(o, p,
 * span n)): each one it had not released becomes an orphan, as the first
 * slot will (the caller's, after these). */
static void recover_span_reading(struct shoal_queue *q, uint64_t s)
{
	uint64_t p = pos_of(s), n = span_in(q, s);

	for (uint64_t i = n - 1; i > 0; i--) {
		struct slot *sl = slot_at(q, p + i);
		uint64_t full = mk(p + i + 1, 0, ST_STABLE);

		if (atomic_load_explicit(&sl->state, memory_order_relaxed) != full)
			continue; /* released: the dead consumer had it */
		if (atomic_compare_exchange_strong_explicit(&sl->state, &full,
							    mk(p + i, 0, ST_READING),
							    memory_order_relaxed,
							    memory_order_relaxed))
			atomic_fetch_add_explicit(&sl->redeliv, 1, memory_order_relaxed);
		HOOK(SHOAL__QP_RECOVER_FIXED);
	}
}

/*
 * With the lock held: repair every slot a dead participant holds, recount
 * the orphans, free the dead entries. Idempotent. Returns slots repaired,
 * or -ENOMEM (nothing done; the next recovery does it).
 *
 * Liveness is a /proc read per process, so recovery judges only the owners
 * of the slots it meets (one each, however many slots they hold) and
 * @also: one more entry (the one a sweep found dead), or ALL_ENTRIES
 * (registration on a full table, or the lock taken over from a dead
 * recoverer, which may have repaired slots and not freed their entries).
 * Entries of the dead that hold no slot wait for the sweep to reach them;
 * they cost nothing but their 8 bytes.
 */
static int recover_locked(struct shoal_queue *q, uint32_t also)
{
	/* By entry: at 16384 entries 144 KiB, too much for a thread's stack. */
	unsigned char *verdict = calloc(q->nparts, 1);
	uint64_t *vkey = malloc(q->nparts * sizeof(*vkey));
	unsigned fixed = 0, orphans = 0;

	if (!verdict || !vkey) {
		free(verdict);
		free(vkey);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < q->cap; i++) {
		struct slot *sl = slot_at(q, i);
		/* A3: pairs with the release of whoever set this state. */
		uint64_t s = atomic_load_explicit(&sl->state, memory_order_acquire);
		uint32_t st = st_of(s), o = owner_of(s);

		if (st == ST_STABLE || !owner_dead(q, o, verdict, vkey))
			continue;
		if (st == ST_WRITING) {
			bool out = recover_span_writing(q, s);

			/* The dead producer writes no more: the slot is ours. A
			 * tombstone keeps the position so the FIFO order holds;
			 * a batch already going out goes out whole. */
			if (!out)
				atomic_store_explicit(&sl->len, TOMBSTONE, memory_order_relaxed);
			/* R3: pairs with A1: consumers see the tombstone length
			 * (or the message). */
			if (atomic_compare_exchange_strong_explicit(&sl->state, &s,
								    mk(pos_of(s) + 1, 0, ST_STABLE),
								    memory_order_release,
								    memory_order_relaxed) &&
			    !out)
				atomic_fetch_add_explicit(&q->h->dropped, 1, memory_order_relaxed);
		} else {
			/* READING or CLAIMED: the dead reader's messages go to
			 * other consumers. A recoverer killed between a CAS and
			 * the count below leaves the count one short, no more. */
			if (st == ST_READING)
				recover_span_reading(q, s);
			if (atomic_compare_exchange_strong_explicit(&sl->state, &s,
								    mk(pos_of(s), 0, ST_READING),
								    memory_order_relaxed,
								    memory_order_relaxed))
				atomic_fetch_add_explicit(&sl->redeliv, 1, memory_order_relaxed);
		}
		fixed++;
		HOOK(SHOAL__QP_RECOVER_FIXED);
	}
	/* Orphans change only under the lock, so this count is exact. A
	 * separate pass: a span's orphans may lie on either side of its
	 * first slot. */
	for (uint64_t i = 0; i < q->cap; i++) {
		uint64_t s = atomic_load_explicit(&slot_at(q, i)->state, memory_order_relaxed);

		orphans += s == mk(pos_of(s), 0, ST_READING);
	}
	atomic_store_explicit(&q->h->orphans, orphans, memory_order_seq_cst);
	/* No slot names a dead entry any more: the entries can go, each only
	 * from the very key judged dead (an entry free when judged stays as
	 * whoever has registered since left it). */
	if (also != FOUND_ONLY && also != ALL_ENTRIES)
		owner_dead(q, also, verdict, vkey);
	for (uint32_t o = 1; o < q->nparts; o++) {
		uint64_t key = atomic_load_explicit(&q->parts[o], memory_order_relaxed);

		if (!key || (verdict[o] == UNKNOWN && also != ALL_ENTRIES))
			continue;
		if (owner_dead(q, o, verdict, vkey) && vkey[o] == key)
			atomic_compare_exchange_strong_explicit(&q->parts[o], &key, 0,
								memory_order_relaxed,
								memory_order_relaxed);
	}
	free(verdict);
	free(vkey);
	return (int)fixed;
}

/* Recover now, unless a live process holds the lock (-EAGAIN): then it is
 * being done, or the caller's next attempt does it. Never waits. */
static int recover(struct shoal_queue *q, uint32_t also)
{
	bool died;
	int fixed, rc = lock_queue(q, &died, 0);

	if (rc)
		return rc;
	/* A recoverer that died may have repaired its dead's slots and not
	 * freed their entries: nothing names them now, so judge them all. */
	fixed = recover_locked(q, died ? ALL_ENTRIES : also);
	unlock_queue(q, died);
	if (fixed < 0)
		return fixed;
	atomic_fetch_add_explicit(&q->h->recoveries, 1, memory_order_relaxed);
	if (fixed || died)
		wake_all(q); /* orphans for consumers, room for producers */
	return 0;
}

/*
 * Look for dead participants, at most once per SWEEP_NS queue-wide; this is
 * what finds a consumer that died holding a message behind the head. A
 * sweep judges at most SWEEP_CHECKS other processes (a /proc read each),
 * from where the last one stopped: at 4096 live processes a whole-table
 * sweep was 4096 reads every 50 ms, a core's worth. So a table of up to
 * SWEEP_CHECKS processes is swept whole each time, a bigger one in turns
 * (4096 distinct processes: 64 sweeps, 3.2 s). Runs of one key (a process
 * with many handles) and this process's own entries are judged for free.
 */
#define SWEEP_CHECKS 64
static void sweep(struct shoal_queue *q, bool force)
{
	uint64_t now = shoal__now_ns();
	uint64_t last = atomic_load_explicit(&q->h->sweep_ns, memory_order_relaxed);
	uint64_t self = shoal__self_key(), alive = 0;
	uint32_t n = q->nparts - 1, o;
	int checks = 0;

	if (!force && now - last < SWEEP_NS && last <= now)
		return;
	if (!atomic_compare_exchange_strong_explicit(&q->h->sweep_ns, &last, now,
						     memory_order_relaxed, memory_order_relaxed) &&
	    !force)
		return;
	/* Untrusted: any value lands on an entry. */
	o = 1 + (uint32_t)(atomic_load_explicit(&q->h->sweep_next, memory_order_relaxed) % n);
	for (uint32_t k = 0; k < n && checks < SWEEP_CHECKS; k++, o = o == n ? 1 : o + 1) {
		uint64_t key = atomic_load_explicit(&q->parts[o], memory_order_relaxed);

		if (key == 0 || key == alive)
			continue;
		if (!key_alive(key)) {
			atomic_store_explicit(&q->h->sweep_next, o - 1, memory_order_relaxed);
			recover(q, o);
			return;
		}
		checks += key != self;
		alive = key;
	}
	atomic_store_explicit(&q->h->sweep_next, o - 1, memory_order_relaxed);
}

/* A slice passed with no progress: is the slot that blocks us held by a
 * dead process? */
static void check_blocker(struct shoal_queue *q, uint64_t s)
{
	uint32_t o = owner_of(s);

	if (st_of(s) != ST_STABLE && o != 0 && o < q->nparts &&
	    !key_alive(atomic_load_explicit(&q->parts[o], memory_order_relaxed)))
		recover(q, o);
	else
		sweep(q, false);
}

/* ---- producers ---------------------------------------------------------------- */

static void advance(shoal__atomic_u64 *cursor, uint64_t to)
{
	uint64_t cur = atomic_load_explicit(cursor, memory_order_relaxed);

	/* Cursors are hints that only move forward; the slots are the truth. */
	while ((int64_t)(cur - to) < 0 &&
	       !atomic_compare_exchange_weak_explicit(cursor, &cur, to, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

enum { RETRY = 1 };

/*
 * The slot at cursor position @pos is not what we wanted (@want is the
 * free/full value). Decide: RETRY (cursor stale or helped on: reload it),
 * -EAGAIN (blocked by this slot), or -EBADMSG (the cursor and the ring
 * disagree beyond anything concurrency explains).
 */
static int judge(struct shoal_queue *q, shoal__atomic_u64 *cursor, uint64_t pos, uint64_t s,
		 uint64_t want, bool consumer)
{
	uint32_t st = st_of(s);
	int64_t d = st == ST_STABLE ? pdiff(pos_of(s), want) : pdiff(pos_of(s), pos);

	if (st != ST_STABLE && d == 0) {
		if (consumer && st == ST_WRITING)
			return -EAGAIN; /* the message at the head is being written */
		/* Claimed at the cursor but the cursor not moved: help, over
		 * the whole span a batch claimed with this one slot. */
		advance(cursor, pos + span_in(q, s));
		return RETRY;
	}
	if (d < 0) {
		if (d >= -(int64_t)q->cap)
			return -EAGAIN; /* full (producer) or empty (consumer) */
	} else if (d <= (int64_t)q->cap) {
		/* Ahead of us: the cursor is stale or its mover is slow. The
		 * slot proves the position was taken, so moving on is safe. */
		if (atomic_load_explicit(cursor, memory_order_relaxed) == pos)
			advance(cursor, pos + 1);
		return RETRY;
	}
	/* Out of any legal range: stale, or corrupt if the cursor holds. */
	if (atomic_load_explicit(cursor, memory_order_relaxed) != pos)
		return RETRY;
	return -EBADMSG;
}

static void tombstone(struct shoal_queue *q, struct slot *sl, uint64_t pos)
{
	atomic_store_explicit(&sl->len, TOMBSTONE, memory_order_relaxed);
	/* R1': pairs with A1 as a publish does. */
	atomic_store_explicit(&sl->state, mk(pos + 1, 0, ST_STABLE), memory_order_release);
	atomic_fetch_add_explicit(&q->h->dropped, 1, memory_order_relaxed);
}

/* Try to push one message without waiting: 0, -EAGAIN (full, *blocker is
 * the slot state that blocks), -EPIPE, -EBADMSG. */
static int push_try(struct shoal_queue *q, uint32_t me, const void *msg, size_t len,
		    uint64_t *blocker)
{
	shoal__atomic_u64 *tail = &q->h->tail;
	uint64_t pos = atomic_load_explicit(tail, memory_order_relaxed);

	for (;;) {
		struct slot *sl = slot_at(q, pos);
		/* A2: pairs with R2 in pop: the last reader is done with it. */
		uint64_t s = atomic_load_explicit(&sl->state, memory_order_acquire);
		int rc;

		if (s == mk(pos, 0, ST_STABLE)) {
			/* seq_cst: orders the claim before the closed check
			 * below against shoal_queue_close() and a consumer's
			 * "closed and empty" check (C1). */
			if (atomic_compare_exchange_strong_explicit(&sl->state, &s,
								    mk(pos, me, ST_WRITING),
								    memory_order_seq_cst,
								    memory_order_relaxed)) {
				uint64_t exp = pos;

				atomic_compare_exchange_strong_explicit(tail, &exp, pos + 1,
									memory_order_relaxed,
									memory_order_relaxed);
				HOOK(SHOAL__QP_PUSH_CLAIMED);
				if (SHOAL__UNLIKELY(atomic_load_explicit(&q->h->closed,
									 memory_order_seq_cst))) {
					tombstone(q, sl, pos);
					atomic_thread_fence(memory_order_seq_cst); /* D1 */
					wake(&q->h->not_empty, INT32_MAX);
					return -EPIPE;
				}
				atomic_store_explicit(&sl->len, (uint32_t)len, memory_order_relaxed);
				if (SHOAL__UNLIKELY(shoal__queue_hook)) {
					memcpy(sl->data, msg, len / 2);
					HOOK(SHOAL__QP_PUSH_WRITTEN);
					memcpy(sl->data + len / 2, (const char *)msg + len / 2,
					       len - len / 2);
				} else if (len) {
					memcpy(sl->data, msg, len);
				}
				/* R1: pairs with A1 in pop: the message is visible
				 * once the state is. seq_cst for D1 (wake). */
				atomic_store_explicit(&sl->state, mk(pos + 1, 0, ST_STABLE),
						      memory_order_seq_cst);
				wake(&q->h->not_empty, 1);
				return 0;
			}
			pos = atomic_load_explicit(tail, memory_order_relaxed);
			continue;
		}
		rc = judge(q, tail, pos, s, pos, false);
		if (rc != RETRY) {
			*blocker = s;
			return rc;
		}
		pos = atomic_load_explicit(tail, memory_order_relaxed);
	}
}

/*
 * Claim up to @n consecutive slots from the tail with one CAS and fill them.
 * The free run is read first (every slot of it STABLE for this lap), then
 * the first slot is CASed to WRITING(me, pos, span k): that one word claims
 * all k positions, because a producer only claims at the tail and every
 * helper moves the tail over a whole span, so no other producer can reach
 * pos + 1 .. pos + k - 1 once the first slot is ours (and before, the tail
 * cannot pass pos, whose slot is free). The other slots are written with
 * plain stores and published last to first, the first slot last, so the
 * claim stays readable (for recovery) until the whole batch is out, and a
 * consumer sees the batch all at once. Returns how many were pushed
 * (>= 1), or push_try()'s errors.
 */
/* Pushes up to n messages with one claim of a span: back to back at @data,
 * or, with @msgs, each where @msgs[i] points (a gather: no staging copy). */
static ssize_t push_batch_try(struct shoal_queue *q, uint32_t me, const unsigned char *data,
			      const unsigned char *const *msgs, const size_t *lens, size_t n,
			      uint64_t *blocker)
{
	shoal__atomic_u64 *tail = &q->h->tail;
	uint64_t pos = atomic_load_explicit(tail, memory_order_relaxed);
	struct slot *first;
	bool closed;
	size_t k;

	if (n > BATCH_MAX)
		n = BATCH_MAX;
	if (n > q->cap)
		n = q->cap; /* a span never covers a slot twice */
	for (;;) {
		/* A2: pairs with R2 in pop: the last reader is done with it. */
		uint64_t s = atomic_load_explicit(&slot_at(q, pos)->state, memory_order_acquire);
		int rc;

		if (s == mk(pos, 0, ST_STABLE)) {
			for (k = 1; k < n; k++)
				/* A2, for each slot of the span. */
				if (atomic_load_explicit(&slot_at(q, pos + k)->state,
							 memory_order_acquire) !=
				    mk(pos + k, 0, ST_STABLE))
					break;
			/* seq_cst: C1, as in push_try(). */
			if (atomic_compare_exchange_strong_explicit(&slot_at(q, pos)->state, &s,
								    mk_span(pos, me, ST_WRITING, k),
								    memory_order_seq_cst,
								    memory_order_relaxed))
				break;
			pos = atomic_load_explicit(tail, memory_order_relaxed);
			continue;
		}
		rc = judge(q, tail, pos, s, pos, false);
		if (rc != RETRY) {
			*blocker = s;
			return rc;
		}
		pos = atomic_load_explicit(tail, memory_order_relaxed);
	}
	HOOK(SHOAL__QP_PUSH_CLAIMED);
	advance(tail, pos + k);
	closed = atomic_load_explicit(&q->h->closed, memory_order_seq_cst) != 0;
	for (size_t i = 0; i < k; i++) {
		struct slot *sl = slot_at(q, pos + i);

		if (SHOAL__UNLIKELY(closed)) {
			/* Closed after our claim: the batch becomes tombstones,
			 * published the same way, so recovery reads it alike. */
			atomic_store_explicit(&sl->len, TOMBSTONE, memory_order_relaxed);
			continue;
		}
		atomic_store_explicit(&sl->len, (uint32_t)lens[i], memory_order_relaxed);
		if (lens[i])
			memcpy(sl->data, msgs ? msgs[i] : data, lens[i]);
		if (!msgs) /* NULL with msgs: no arithmetic on it */
			data += lens[i];
		if (i == k / 2)
			HOOK(SHOAL__QP_PUSH_WRITTEN);
	}
	/* R1, for the span's other slots: each message is visible once its
	 * state is. Consumers cannot reach them before the first slot. Once
	 * the last is published, every message of the batch is written, so
	 * recovery of a producer that dies from here on publishes the rest
	 * (the batch is delivered whole or not at all). */
	for (size_t i = k - 1; i > 0; i--)
		atomic_store_explicit(&slot_at(q, pos + i)->state, mk(pos + i + 1, 0, ST_STABLE),
				      memory_order_release);
	if (k > 1)
		HOOK(SHOAL__QP_PUSH_SPAN_PUBLISHED);
	first = slot_at(q, pos);
	/* R1, and D1 for the whole batch (seq_cst). */
	atomic_store_explicit(&first->state, mk(pos + 1, 0, ST_STABLE), memory_order_seq_cst);
	if (SHOAL__UNLIKELY(closed)) {
		atomic_fetch_add_explicit(&q->h->dropped, k, memory_order_relaxed);
		wake(&q->h->not_empty, INT32_MAX);
		return -EPIPE;
	}
	wake(&q->h->not_empty, k > 1 ? INT32_MAX : 1);
	return (ssize_t)k;
}

/* ---- consumers ---------------------------------------------------------------- */

static void release_slot(struct shoal_queue *q, struct slot *sl, uint64_t pos, bool fence)
{
	/* R2: pairs with A2 in push: our reads of the message are done
	 * before the next lap's producer writes it. seq_cst for D2 (wake). */
	atomic_store_explicit(&sl->state, mk(pos + q->cap, 0, ST_STABLE),
			      fence ? memory_order_seq_cst : memory_order_release);
}

/* Take an orphan (a message whose reader died or was nacked), under the
 * lock so that the orphan count stays exact; with @t, claim it instead.
 * 0, -EAGAIN if none, -EMSGSIZE, lock errors. */
static int pop_orphan(struct shoal_queue *q, uint32_t me, void *buf, size_t cap, size_t *len,
		      struct shoal_queue_ticket *t)
{
	bool died, skip;
	uint32_t n;
	int rc = lock_queue(q, &died, 0);

	if (rc)
		return rc;
	if (died)
		recover_locked(q, ALL_ENTRIES);
	for (uint64_t i = 0; i < q->cap; i++) {
		struct slot *sl = slot_at(q, i);
		/* A3: pairs with the recovery that made the orphan. */
		uint64_t s = atomic_load_explicit(&sl->state, memory_order_acquire);
		uint32_t l;

		if (s != mk(pos_of(s), 0, ST_READING))
			continue;
		l = atomic_load_explicit(&sl->len, memory_order_relaxed);
		if (l != TOMBSTONE && l > cap) {
			unlock_queue(q, died);
			*len = l;
			return -EMSGSIZE;
		}
		skip = l == TOMBSTONE || l > q->max_msg;
		if (!atomic_compare_exchange_strong_explicit(&sl->state, &s,
							     mk(pos_of(s), me,
								t && !skip ? ST_CLAIMED : ST_READING),
							     memory_order_acquire,
							     memory_order_relaxed))
			continue;
		atomic_fetch_sub_explicit(&q->h->orphans, 1, memory_order_relaxed);
		n = atomic_load_explicit(&sl->redeliv, memory_order_relaxed);
		unlock_queue(q, died);
		if (skip) {
			atomic_fetch_add_explicit(&q->h->skipped, 1, memory_order_relaxed);
			atomic_store_explicit(&sl->redeliv, 0, memory_order_relaxed);
			release_slot(q, sl, pos_of(s), true);
			wake(&q->h->not_full, 1);
			return RETRY;
		}
		memcpy(buf, sl->data, l);
		atomic_fetch_add_explicit(&q->h->redelivered, 1, memory_order_relaxed);
		*len = l;
		if (t) {
			HOOK(SHOAL__QP_POP_COPIED);
			t->id = mk(pos_of(s), me, ST_CLAIMED);
			t->redelivered = n ? n : 1;
			return 0;
		}
		atomic_store_explicit(&sl->redeliv, 0, memory_order_relaxed);
		release_slot(q, sl, pos_of(s), true);
		wake(&q->h->not_full, 1);
		return 0;
	}
	atomic_store_explicit(&q->h->orphans, 0, memory_order_relaxed);
	unlock_queue(q, died);
	return -EAGAIN;
}

/* Try to pop one message without waiting: 0, -EAGAIN (empty; *blocker is
 * the slot state at the head), -EMSGSIZE, -EBADMSG. With @t, claim it
 * instead: the slot stays CLAIMED(me, p) and @t names it. Inlined into
 * shoal_queue_pop() with @t NULL, so the plain pop pays nothing for claims
 * (one-by-one push+pop was 10% slower when it was not); pop_one() is the
 * one out-of-line copy for everyone else. */
static inline __attribute__((always_inline)) int pop_try(struct shoal_queue *q, uint32_t me,
							    void *buf, size_t cap, size_t *len,
		   uint64_t *blocker, struct shoal_queue_ticket *t)
{
	shoal__atomic_u64 *head = &q->h->head;
	uint64_t pos;

	while (SHOAL__UNLIKELY(atomic_load_explicit(&q->h->orphans, memory_order_relaxed))) {
		int rc = pop_orphan(q, me, buf, cap, len, t);

		if (rc != RETRY && rc != -EAGAIN)
			return rc;
		if (rc == -EAGAIN)
			break;
	}
	pos = atomic_load_explicit(head, memory_order_relaxed);
	for (;;) {
		struct slot *sl = slot_at(q, pos);
		/* A1: pairs with R1 in push (and R3, R1'): the message and its
		 * length are visible. */
		uint64_t s = atomic_load_explicit(&sl->state, memory_order_acquire);
		int rc;

		if (s == mk(pos + 1, 0, ST_STABLE)) {
			/* Peek before claiming: a message too big for @buf stays
			 * where it is. If the slot changes meanwhile, the CAS
			 * fails and the length is never used. */
			uint32_t l = atomic_load_explicit(&sl->len, memory_order_relaxed);

			if (SHOAL__UNLIKELY((l > cap || l > q->max_msg) && l != TOMBSTONE)) {
				if (l > q->max_msg)
					return -EBADMSG; /* never read past the slot */
				*len = l;
				return -EMSGSIZE;
			}
			if (atomic_compare_exchange_strong_explicit(&sl->state, &s,
								    mk(pos, me,
								       t ? ST_CLAIMED : ST_READING),
								    memory_order_acquire,
								    memory_order_relaxed)) {
				uint64_t exp = pos;

				atomic_compare_exchange_strong_explicit(head, &exp, pos + 1,
									memory_order_relaxed,
									memory_order_relaxed);
				HOOK(SHOAL__QP_POP_CLAIMED);
				if (SHOAL__UNLIKELY(l == TOMBSTONE)) {
					atomic_fetch_add_explicit(&q->h->skipped, 1,
								  memory_order_relaxed);
					release_slot(q, sl, pos, true);
					wake(&q->h->not_full, 1);
					pos = atomic_load_explicit(head, memory_order_relaxed);
					continue;
				}
				if (l)
					memcpy(buf, sl->data, l);
				*len = l;
				HOOK(SHOAL__QP_POP_COPIED);
				if (t) {
					t->id = mk(pos, me, ST_CLAIMED);
					t->redelivered = 0;
					return 0;
				}
				/* The message is ours from this store on: dying
				 * after it, here or after returning, consumes it. */
				release_slot(q, sl, pos, true);
				HOOK(SHOAL__QP_POP_RELEASED);
				wake(&q->h->not_full, 1);
				return 0;
			}
			pos = atomic_load_explicit(head, memory_order_relaxed);
			continue;
		}
		rc = judge(q, head, pos, s, pos + 1, true);
		if (rc != RETRY) {
			*blocker = s;
			return rc;
		}
		pos = atomic_load_explicit(head, memory_order_relaxed);
	}
}

/* pop_try() for everyone but shoal_queue_pop()'s first try: one shared
 * out-of-line copy, so the batch loop and the waits stay small. */
static __attribute__((noinline)) int pop_one(struct shoal_queue *q, uint32_t me, void *buf,
					     size_t cap, size_t *len, uint64_t *blocker,
					     struct shoal_queue_ticket *t)
{
	return pop_try(q, me, buf, cap, len, blocker, t);
}

/*
 * Take up to @n ready messages from the head into @buf, claimed with one
 * CAS: the ready run is read first (lengths included), then the head slot
 * is CASed to READING(me, pos, span k), which claims all k (a consumer only
 * claims at the head, and helpers move the head over a whole span). All are
 * copied before any is released; the span's other slots are released
 * first, the head slot last, so recovery can still read the claim: a
 * consumer that dies gives back every message whose slot it had not
 * released, each becoming an orphan as a single pop's would.
 */
static ssize_t pop_batch_try(struct shoal_queue *q, uint32_t me, unsigned char *buf, size_t cap,
			     size_t *lens, size_t n, uint64_t *blocker)
{
	shoal__atomic_u64 *head = &q->h->head;
	uint32_t got_len[BATCH_MAX];
	uint64_t pos;
	size_t k, out = 0, skipped = 0;

	if (n > BATCH_MAX)
		n = BATCH_MAX;
	if (n > q->cap)
		n = q->cap;
	if (SHOAL__UNLIKELY(atomic_load_explicit(&q->h->orphans, memory_order_relaxed))) {
		size_t l;
		int rc = pop_one(q, me, buf, cap, &l, blocker, NULL);

		if (rc == 0 || rc == -EMSGSIZE)
			lens[0] = l; /* the message's length, or the room it needs */
		return rc == 0 ? 1 : rc;
	}
again:
	pos = atomic_load_explicit(head, memory_order_relaxed);
	for (;;) {
		/* A1: pairs with R1 in push (and R1', R3): the message and its
		 * length are visible. */
		uint64_t s = atomic_load_explicit(&slot_at(q, pos)->state, memory_order_acquire);
		int rc;

		if (s == mk(pos + 1, 0, ST_STABLE)) {
			/* Peek before claiming, as pop_try(); a length read from
			 * a slot that changes is discarded with the failed CAS. */
			uint32_t l = atomic_load_explicit(&slot_at(q, pos)->len, memory_order_relaxed);
			size_t used;

			if ((l > cap || l > q->max_msg) && l != TOMBSTONE) {
				if (l > q->max_msg)
					return -EBADMSG;
				lens[0] = l;
				return -EMSGSIZE;
			}
			got_len[0] = l;
			used = l == TOMBSTONE ? 0 : l;
			for (k = 1; k < n; k++) {
				struct slot *sl = slot_at(q, pos + k);

				/* A1, for each slot of the span. */
				if (atomic_load_explicit(&sl->state, memory_order_acquire) !=
				    mk(pos + k + 1, 0, ST_STABLE))
					break;
				l = atomic_load_explicit(&sl->len, memory_order_relaxed);
				if (l != TOMBSTONE && (l > q->max_msg || l > cap - used))
					break; /* the next call reports it at the head */
				got_len[k] = l;
				used += l == TOMBSTONE ? 0 : l;
			}
			if (atomic_compare_exchange_strong_explicit(&slot_at(q, pos)->state, &s,
								    mk_span(pos, me, ST_READING, k),
								    memory_order_acquire,
								    memory_order_relaxed))
				break;
			pos = atomic_load_explicit(head, memory_order_relaxed);
			continue;
		}
		rc = judge(q, head, pos, s, pos + 1, true);
		if (rc != RETRY) {
			*blocker = s;
			return rc;
		}
		pos = atomic_load_explicit(head, memory_order_relaxed);
	}
	HOOK(SHOAL__QP_POP_CLAIMED);
	advance(head, pos + k);
	/* Copy everything before releasing anything: a consumer that dies
	 * before the releases gives every message back (as orphans). */
	for (size_t i = 0; i < k; i++) {
		uint32_t l = got_len[i];

		if (l == TOMBSTONE) {
			skipped++;
		} else {
			if (l)
				memcpy(buf, slot_at(q, pos + i)->data, l);
			buf += l;
			lens[out++] = l;
		}
	}
	if (SHOAL__UNLIKELY(skipped))
		atomic_fetch_add_explicit(&q->h->skipped, skipped, memory_order_relaxed);
	HOOK(SHOAL__QP_POP_COPIED);
	/* R2, for the span's other slots: each message is ours from its
	 * release store on. Producers cannot claim them before the head slot
	 * is free (the tail stops at it). */
	for (size_t i = k - 1; i > 0; i--)
		release_slot(q, slot_at(q, pos + i), pos + i, false);
	if (k > 1)
		HOOK(SHOAL__QP_POP_SPAN_RELEASED);
	/* R2, and D2 for the whole batch (seq_cst). */
	release_slot(q, slot_at(q, pos), pos, true);
	HOOK(SHOAL__QP_POP_RELEASED);
	wake(&q->h->not_full, k > 1 ? INT32_MAX : 1);
	if (out == 0)
		goto again; /* all tombstones */
	return (ssize_t)out;
}

/* ---- waiting ------------------------------------------------------------------ */

/*
 * The common slow path: @attempt tries once and returns -EAGAIN while
 * blocked (setting *blocker). Spin briefly, then sleep on @l in slices,
 * looking for dead owners after each slice that brought nothing.
 */
struct attempt {
	ssize_t (*fn)(struct shoal_queue *q, uint32_t me, void *ctx, uint64_t *blocker);
	void *ctx;
};

static bool closed_now(const struct shoal_queue *q)
{
	return atomic_load_explicit(&q->h->closed, memory_order_seq_cst) != 0;
}

/*
 * A consumer found nothing: is that the end? Only if the queue is closed,
 * no orphan waits, the head slot is free (no producer between claim and
 * publish), and no message is out being read or claimed anywhere (it could
 * still be nacked, or its reader die, and come back). C1: the seq_cst load of closed, the
 * fence, and the seq_cst claim in push make a push that misses "closed"
 * visible here, and one we miss here see "closed" (and tombstone itself).
 * The scan runs only on a closed, empty queue. A claim moves CLAIMED ->
 * orphan -> CLAIMED or released, each slot seen once by the scan in one of
 * those states or after its release; the orphan count is read last, so an
 * orphan made from a slot the scan had passed is seen there.
 */
static bool drained_now(struct shoal_queue *q, bool *stale)
{
	uint64_t pos, s;
	bool held = false;

	if (!closed_now(q))
		return false;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&q->h->orphans, memory_order_seq_cst))
		return false;
	pos = atomic_load_explicit(&q->h->head, memory_order_seq_cst);
	s = atomic_load_explicit(&slot_at(q, pos)->state, memory_order_seq_cst);
	if (s != mk(pos, 0, ST_STABLE))
		return false;
	for (uint64_t i = 0; i < q->cap; i++) {
		uint32_t o;

		s = atomic_load_explicit(&slot_at(q, i)->state, memory_order_seq_cst);
		if (st_of(s) < ST_READING)
			continue;
		/* A pop in flight, an orphan or a claim: not the end. Held by
		 * a handle that died or detached? Nothing else would notice
		 * (it is behind the head, and a detached handle has no entry
		 * for the sweep to find). */
		held = true;
		o = owner_of(s);
		if (o != 0 && o < q->nparts &&
		    !key_alive(atomic_load_explicit(&q->parts[o], memory_order_relaxed))) {
			*stale = true;
			break;
		}
	}
	return !held && atomic_load_explicit(&q->h->orphans, memory_order_seq_cst) == 0;
}

/* The end of the stream is final, so before saying so make sure no dead
 * consumer holds a message that should become an orphan. */
static bool drained(struct shoal_queue *q)
{
	bool stale = false;

	if (!drained_now(q, &stale)) {
		if (stale)
			recover(q, FOUND_ONLY);
		return false;
	}
	sweep(q, true);
	return drained_now(q, &stale);
}

/*
 * Fair wake-up. A futex wakes its longest sleeper first, but a woken sleeper
 * has to get a CPU before it can take what it was woken for, and a caller
 * already running (one that just returned from its last call, or is
 * spinning) takes it first; the sleeper goes back to the end of the futex
 * queue. With 64 consumers on 2 cores one pop waited 130-337 ms that way.
 *
 * So each side has at most one urgent waiter at a time, named in line 1
 * (urgent[side], a token: since when it sleeps | its entry). A sleeper that
 * has waited STARVE_NS and then loses a wake-up claims the turn; an older
 * waiter may take it from a younger one, so the turn goes to the longest
 * waiter. While the turn is fresh, every other caller of that side - a
 * newcomer's fast path, a spinner, a sleeper that wakes - leaves the ring
 * alone and sleeps instead (newcomers queue behind it), and a publisher
 * wakes the urgent waiter alone, on its own futex word (uword). When it
 * has its message (or room), or gives up, it drops the turn and wakes as
 * many of the others as there are messages (or free slots).
 *
 * Nothing may stall on the turn: the urgent waiter stamps urgent_at each
 * time it runs and sleeps in URGENT_SLICE_NS slices, and a turn not
 * stamped for HANDOFF_NS is stale: nobody defers to it and the next caller
 * clears it. A holder that dies, is stopped, or waits that long for a CPU
 * costs the others at most HANDOFF_NS; garbage in these words, the same.
 */
static inline struct line32 *side_line(const struct shoal_queue *q, int side)
{
	return side ? &q->h->not_full : &q->h->not_empty;
}

static inline uint64_t urgent_token(uint64_t since, uint32_t me)
{
	return (since & ~(uint64_t)(NPARTS_MAX - 1)) | me;
}

/* Whether a caller of @side must leave the ring to another's urgent turn;
 * a stale turn is cleared. */
static bool must_defer(struct shoal_queue *q, int side, uint64_t mine)
{
	shoal__atomic_u64 *turn = &q->h->urgent[side];
	uint64_t u = atomic_load_explicit(turn, memory_order_seq_cst);

	if (SHOAL__LIKELY(u == 0) || u == mine)
		return false;
	if (urgent_fresh(side_line(q, side), shoal__now_ns()))
		return true;
	atomic_compare_exchange_strong_explicit(turn, &u, 0, memory_order_seq_cst,
						memory_order_relaxed);
	return false;
}

/* Take the urgent turn if it is free, stale, or held by a younger waiter. */
static bool claim_urgent(struct shoal_queue *q, int side, uint64_t mine, uint64_t now)
{
	shoal__atomic_u64 *turn = &q->h->urgent[side];
	struct line32 *l = side_line(q, side);
	uint64_t u = atomic_load_explicit(turn, memory_order_relaxed);

	for (;;) {
		if (u == mine)
			return true;
		if (u != 0 && urgent_fresh(l, now) && (u >> OWNER_BITS) <= (mine >> OWNER_BITS))
			return false;
		if (atomic_compare_exchange_weak_explicit(turn, &u, mine, memory_order_seq_cst,
							  memory_order_relaxed)) {
			atomic_store_explicit(&l->urgent_at, now, memory_order_relaxed);
			return true;
		}
	}
}

/* Drop our urgent turn and wake the callers who deferred to it: as many as
 * there are messages (consumers) or free slots (producers), plus one for a
 * publish racing with this; all of them once the queue is closed. */
static void drop_urgent(struct shoal_queue *q, int side, uint64_t mine)
{
	struct line32 *l = side_line(q, side);
	uint64_t u = mine, head, tail, depth, n;

	if (!atomic_compare_exchange_strong_explicit(&q->h->urgent[side], &u, 0,
						     memory_order_seq_cst, memory_order_relaxed))
		return; /* taken by an older waiter, or cleared as stale */
	head = atomic_load_explicit(&q->h->head, memory_order_relaxed);
	tail = atomic_load_explicit(&q->h->tail, memory_order_relaxed);
	depth = (int64_t)(tail - head) <= 0 ? 0 : tail - head > q->cap ? q->cap : tail - head;
	n = (side ? q->cap - depth : depth) + 1;
	if (closed_now(q))
		n = INT32_MAX;
	/* D4: the bump before the count, against a deferring sleeper's count
	 * before its look at the turn. */
	atomic_fetch_add_explicit(&l->word, 1, memory_order_seq_cst);
	if (atomic_load_explicit(&l->waiters, memory_order_seq_cst) != 0)
		shoal__futex_wake(&l->word, n > INT32_MAX ? INT32_MAX : (int)n);
}

/* Whether at least n callers of line l are asleep. A sleeper that died
 * asleep leaves the count up for good, so the count only counts while
 * someone has gone to sleep within two slices (a live sleeper does so at
 * least once a slice). */
static bool asleep_at_least(struct line32 *l, uint32_t n, uint64_t now)
{
	uint64_t at;

	if (atomic_load_explicit(&l->waiters, memory_order_relaxed) < n)
		return false;
	at = atomic_load_explicit(&l->slept_at, memory_order_relaxed);
	return at > now ? at - now < SLICE_NS : now - at < 2 * SLICE_NS;
}

static int seats_for_cpus(void)
{
	static _Atomic int cached;
	int n = atomic_load_explicit(&cached, memory_order_relaxed);

	if (n == 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);

		n = c < 1 ? 1 : c > SPIN_SEATS ? SPIN_SEATS : (int)c;
		atomic_store_explicit(&cached, n, memory_order_relaxed);
	}
	return n;
}

/* Takes a free (or stale) spin seat of line l, stamped now; returns its
 * index, or -1 when all are held (the caller sleeps at once). */
static int take_seat(struct line32 *l, uint64_t now)
{
	int n = seats_for_cpus();

	for (int k = 0; k < n; k++) {
		uint64_t at = atomic_load_explicit(&l->seat[k], memory_order_relaxed);

		if (at != 0 && at <= now && now - at < SEAT_STALE_NS)
			continue;
		if (atomic_compare_exchange_strong_explicit(&l->seat[k], &at, now,
							    memory_order_relaxed,
							    memory_order_relaxed))
			return k;
	}
	return -1;
}

static void leave_seat(struct line32 *l, int k, uint64_t stamp)
{
	/* Not ours any more if another caller took it as stale. */
	if (k >= 0)
		atomic_compare_exchange_strong_explicit(&l->seat[k], &stamp, 0,
							memory_order_relaxed,
							memory_order_relaxed);
}

static ssize_t wait_for(struct shoal_queue *q, uint32_t me, struct attempt *a, bool consumer,
			int64_t timeout_ns)
{
	int side = consumer ? 0 : 1;
	struct line32 *l = side_line(q, side);
	/* Our age counts from the first sleep, not from the spin (whose
	 * one clock read stamps the spin seat). */
	uint64_t since = 0, mine = 0;
	uint64_t deadline, blocker = 0, seat_at;
	int seat;
	bool urgent = false, spin;
	ssize_t rc;

	if (timeout_ns == 0) {
		sweep(q, false);
		rc = must_defer(q, side, mine) ? -EAGAIN : a->fn(q, me, a->ctx, &blocker);
		if (rc == -EAGAIN && (consumer ? drained(q) : closed_now(q)))
			return -EPIPE;
		return rc;
	}
	deadline = shoal__deadline(timeout_ns);
	seat_at = shoal__now_ns();
	seat = take_seat(l, seat_at);
	spin = seat >= 0 || !asleep_at_least(l, SEATLESS_FEW, seat_at);
	for (int i = 0; spin && i < SPIN_TRIES; i++) {
		/* A crowd asleep on this side was here first, or an urgent
		 * turn is not ours: queue behind them rather than spin (and
		 * stay runnable) to take what they are woken for. */
		if (i == 0 && asleep_at_least(l, CROWD, seat_at))
			break;
		if (must_defer(q, side, mine))
			break;
		for (int j = 0; j < 16; j++)
			shoal__cpu_relax();
		if (i % 32 == 31)
			sched_yield(); /* more runnable processes than cores */
		rc = a->fn(q, me, a->ctx, &blocker);
		if (rc != -EAGAIN) {
			leave_seat(l, seat, seat_at);
			return rc;
		}
	}
	leave_seat(l, seat, seat_at);
	since = shoal__now_ns();
	mine = urgent_token(since, me);
	for (;;) {
		_Atomic uint32_t *fw = urgent ? &l->uword : &l->word;
		uint32_t w = atomic_load_explicit(fw, memory_order_acquire);
		uint64_t now, until, slice = urgent ? URGENT_SLICE_NS : SLICE_NS;
		bool lost;
		int wr = 0;

		atomic_fetch_add_explicit(&l->waiters, 1, memory_order_seq_cst);
		if (urgent)
			atomic_fetch_add_explicit(&l->usleep, 1, memory_order_seq_cst);
		/* D1/D2 (D3 for usleep): our count before their slot, as
		 * theirs before ours. */
		atomic_thread_fence(memory_order_seq_cst);
		rc = must_defer(q, side, mine) ? -EAGAIN : a->fn(q, me, a->ctx, &blocker);
		if (rc == -EAGAIN && (consumer ? drained(q) : closed_now(q)))
			rc = -EPIPE;
		now = shoal__now_ns();
		if (rc == -EAGAIN && now >= deadline)
			rc = -ETIMEDOUT;
		if (rc == -EAGAIN) {
			if (urgent) /* alive and waiting: the turn stays fresh */
				atomic_store_explicit(&l->urgent_at, now, memory_order_relaxed);
			until = deadline - now > slice ? now + slice : deadline;
			atomic_fetch_add_explicit(&q->h->sleeps, 1, memory_order_relaxed);
			atomic_store_explicit(&l->slept_at, now, memory_order_relaxed);
			wr = shoal__futex_wait(fw, w, until);
		}
		if (urgent)
			atomic_fetch_sub_explicit(&l->usleep, 1, memory_order_relaxed);
		atomic_fetch_sub_explicit(&l->waiters, 1, memory_order_relaxed);
		if (rc != -EAGAIN)
			break;
		lost = must_defer(q, side, mine);
		rc = lost ? -EAGAIN : a->fn(q, me, a->ctx, &blocker);
		if (rc != -EAGAIN)
			break;
		if (wr == -EINTR) {
			rc = -EINTR;
			break;
		}
		if (wr == -ETIMEDOUT)
			check_blocker(q, blocker);
		else
			lost = true; /* woken, and another caller took it */
		if (urgent && atomic_load_explicit(&q->h->urgent[side], memory_order_relaxed) != mine)
			urgent = false; /* an older waiter has it, or it went stale */
		if (!urgent && lost && (now = shoal__now_ns()) - since >= STARVE_NS)
			urgent = claim_urgent(q, side, mine, now);
	}
	if (urgent)
		drop_urgent(q, side, mine);
	return rc;
}

struct push_ctx {
	const void *msg;
	size_t len;
};

static ssize_t push_attempt(struct shoal_queue *q, uint32_t me, void *ctx, uint64_t *blocker)
{
	struct push_ctx *c = ctx;

	return push_try(q, me, c->msg, c->len, blocker);
}

struct pop_ctx {
	void *buf;
	size_t cap;
	size_t *len;
	struct shoal_queue_ticket *t; /* NULL for pop, else claim */
};

static ssize_t pop_attempt(struct shoal_queue *q, uint32_t me, void *ctx, uint64_t *blocker)
{
	struct pop_ctx *c = ctx;

	return pop_one(q, me, c->buf, c->cap, c->len, blocker, c->t);
}

struct many_ctx {
	const unsigned char *data;
	const unsigned char *const *msgs;
	unsigned char *buf;
	size_t cap;
	size_t *lens;
	const size_t *clens;
	size_t n;
};

static ssize_t push_many_attempt(struct shoal_queue *q, uint32_t me, void *ctx, uint64_t *blocker)
{
	struct many_ctx *c = ctx;

	return push_batch_try(q, me, c->data, c->msgs, c->clens, c->n, blocker);
}

static ssize_t pop_many_attempt(struct shoal_queue *q, uint32_t me, void *ctx, uint64_t *blocker)
{
	struct many_ctx *c = ctx;

	return pop_batch_try(q, me, c->buf, c->cap, c->lens, c->n, blocker);
}

/* ---- the API ------------------------------------------------------------------ */

SHOAL_API int shoal_queue_push(struct shoal_queue *q, const void *msg, size_t len,
			       int64_t timeout_ns)
{
	struct push_ctx c = { msg, len };
	struct attempt a = { push_attempt, &c };
	uint64_t blocker;
	uint32_t me;
	int rc;

	shoal__detail_clear();
	if (!q || (!msg && len))
		return -EINVAL;
	if (len > q->max_msg)
		return -EMSGSIZE;
	rc = self_index(q, &me);
	if (rc)
		return rc;
	/* A producer waits for its urgent turn: queue behind it (wait_for()). */
	if (SHOAL__LIKELY(!atomic_load_explicit(&q->h->urgent[1], memory_order_relaxed))) {
		rc = push_try(q, me, msg, len, &blocker);
		if (SHOAL__LIKELY(rc != -EAGAIN))
			return rc;
	}
	return (int)wait_for(q, me, &a, false, timeout_ns);
}

SHOAL_API int shoal_queue_pop(struct shoal_queue *q, void *buf, size_t cap, size_t *len,
			      int64_t timeout_ns)
{
	struct pop_ctx c = { buf, cap, len, NULL };
	struct attempt a = { pop_attempt, &c };
	uint64_t blocker;
	uint32_t me;
	int rc;

	shoal__detail_clear();
	if (!q || !len || (!buf && cap))
		return -EINVAL;
	rc = self_index(q, &me);
	if (rc)
		return rc;
	/* A consumer waits for its urgent turn: queue behind it (wait_for()). */
	if (SHOAL__LIKELY(!atomic_load_explicit(&q->h->urgent[0], memory_order_relaxed))) {
		rc = pop_try(q, me, buf, cap, len, &blocker, NULL);
		if (SHOAL__LIKELY(rc != -EAGAIN))
			return rc;
	}
	return (int)wait_for(q, me, &a, true, timeout_ns);
}

/* shoal_queue_push_many() of messages back to back at @data, or (with
 * @msgs) each at its own address. */
static ssize_t push_many(struct shoal_queue *q, const unsigned char *data,
			 const unsigned char *const *msgs, const size_t *lens, size_t n,
			 int64_t timeout_ns)
{
	struct many_ctx c = { 0 };
	struct attempt a = { push_many_attempt, &c };
	const unsigned char *p = data;
	uint64_t deadline = 0;
	size_t done = 0;
	uint32_t me;
	int rc;

	shoal__detail_clear();
	if (!q || (n && (!lens || (!data && !msgs))))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (lens[i] > q->max_msg)
			return -EMSGSIZE;
	if (n == 0)
		return 0;
	rc = self_index(q, &me);
	if (rc)
		return rc;
	if (timeout_ns > 0)
		deadline = shoal__deadline(timeout_ns);
	while (done < n) {
		uint64_t blocker;
		int64_t left = timeout_ns;
		ssize_t k;

		c.data = p;
		c.msgs = msgs ? msgs + done : NULL;
		c.clens = lens + done;
		c.n = n - done;
		k = push_batch_try(q, me, p, c.msgs, lens + done, n - done, &blocker);
		if (k == -EAGAIN) {
			if (timeout_ns > 0) {
				uint64_t now = shoal__now_ns();

				left = now >= deadline ? 0 : (int64_t)(deadline - now);
				if (left == 0)
					k = -ETIMEDOUT;
			}
			if (k == -EAGAIN)
				k = wait_for(q, me, &a, false, left);
		}
		if (k < 0)
			return done ? (ssize_t)done : k;
		if (!msgs)
			for (ssize_t i = 0; i < k; i++)
				p += lens[done + (size_t)i];
		done += (size_t)k;
	}
	return (ssize_t)done;
}

SHOAL_API ssize_t shoal_queue_push_many(struct shoal_queue *q, const void *data,
					const size_t *lens, size_t n, int64_t timeout_ns)
{
	return push_many(q, data, NULL, lens, n, timeout_ns);
}

ssize_t shoal__queue_push_gather(struct shoal_queue *q, const void *const *msgs,
				 const size_t *lens, size_t n, int64_t timeout_ns)
{
	return push_many(q, NULL, (const unsigned char *const *)msgs, lens, n, timeout_ns);
}

SHOAL_API ssize_t shoal_queue_pop_many(struct shoal_queue *q, void *buf, size_t cap,
				       size_t *lens, size_t n, int64_t timeout_ns)
{
	struct many_ctx c = { .buf = buf, .cap = cap, .lens = lens, .n = n };
	struct attempt a = { pop_many_attempt, &c };
	uint64_t blocker;
	uint32_t me;
	ssize_t rc;

	shoal__detail_clear();
	if (!q || !lens || n == 0 || (!buf && cap))
		return -EINVAL;
	rc = self_index(q, &me);
	if (rc)
		return rc;
	rc = pop_many_attempt(q, me, &c, &blocker);
	if (SHOAL__LIKELY(rc != -EAGAIN))
		return rc;
	return wait_for(q, me, &a, true, timeout_ns);
}

/* ---- acknowledged delivery ------------------------------------------------------ */

SHOAL_API int shoal_queue_claim(struct shoal_queue *q, void *buf, size_t cap, size_t *len,
				int64_t timeout_ns, struct shoal_queue_ticket *ticket)
{
	struct pop_ctx c = { buf, cap, len, ticket };
	struct attempt a = { pop_attempt, &c };
	uint64_t blocker;
	uint32_t me;
	int rc;

	shoal__detail_clear();
	if (!q || !len || !ticket || (!buf && cap))
		return -EINVAL;
	rc = self_index(q, &me);
	if (rc)
		return rc;
	rc = -EAGAIN;
	if (!atomic_load_explicit(&q->h->urgent[0], memory_order_relaxed))
		rc = pop_one(q, me, buf, cap, len, &blocker, ticket);
	if (rc == -EAGAIN)
		rc = (int)wait_for(q, me, &a, true, timeout_ns);
	if (rc == 0)
		atomic_fetch_add_explicit(&q->claims, 1, memory_order_relaxed);
	return rc;
}

/* The slot @ticket names if it is a claim of this handle in this process:
 * 0, or -EINVAL (not a claim ticket of ours; never registers). */
static int ticket_slot(struct shoal_queue *q, const struct shoal_queue_ticket *ticket,
		       struct slot **sl)
{
	uint32_t gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);

	if (!q || !ticket || st_of(ticket->id) != ST_CLAIMED)
		return -EINVAL;
	/* A0: pairs with R0 in do_register(). A forked child has another
	 * generation: its parent's tickets are not its own. */
	if (atomic_load_explicit(&q->reg_gen, memory_order_acquire) != gen + 1 ||
	    owner_of(ticket->id) != atomic_load_explicit(&q->me, memory_order_relaxed))
		return -EINVAL;
	*sl = slot_at(q, pos_of(ticket->id));
	return 0;
}

/* A claim taken again after a nack holds the same state word as the first
 * one (same position, owner, state); its delivery count tells them apart,
 * so a ticket left over from the nacked claim cannot settle the new one.
 * (A count of 0 on a redelivered message is a recoverer that died before
 * counting: its ticket says 1.) */
static bool ticket_current(struct slot *sl, const struct shoal_queue_ticket *ticket)
{
	uint32_t n = atomic_load_explicit(&sl->redeliv, memory_order_relaxed);

	return ticket->redelivered == n || (n == 0 && ticket->redelivered == 1);
}

SHOAL_API int shoal_queue_ack(struct shoal_queue *q, const struct shoal_queue_ticket *ticket)
{
	uint64_t id, pos;
	struct slot *sl;
	int rc = ticket_slot(q, ticket, &sl);

	if (rc)
		return rc;
	id = ticket->id;
	pos = pos_of(id);
	/* Only our claim holds this exact word; anything else is a ticket
	 * already acked or nacked (or a slot corrupted under us). */
	if (atomic_load_explicit(&sl->state, memory_order_relaxed) != id || !ticket_current(sl, ticket))
		return -ENOENT;
	HOOK(SHOAL__QP_ACK_CHECKED);
	/* Only a message that was an orphan has a count; reset it for the
	 * next lap while the slot is still ours. */
	if (SHOAL__UNLIKELY(atomic_load_explicit(&sl->redeliv, memory_order_relaxed)))
		atomic_store_explicit(&sl->redeliv, 0, memory_order_relaxed);
	/* R2, as release_slot(): our reads of the message are done before the
	 * next lap's producer writes it. seq_cst for D2 (wake). The message is
	 * consumed from this CAS on. */
	if (!atomic_compare_exchange_strong_explicit(&sl->state, &id, mk(pos + q->cap, 0, ST_STABLE),
						     memory_order_seq_cst, memory_order_relaxed))
		return -ENOENT;
	HOOK(SHOAL__QP_ACK_RELEASED);
	atomic_fetch_sub_explicit(&q->claims, 1, memory_order_relaxed);
	wake(&q->h->not_full, 1);
	return 0;
}

SHOAL_API int shoal_queue_nack(struct shoal_queue *q, const struct shoal_queue_ticket *ticket)
{
	uint64_t id;
	struct slot *sl;
	bool died;
	int rc = ticket_slot(q, ticket, &sl);

	if (rc)
		return rc;
	id = ticket->id;
	if (atomic_load_explicit(&sl->state, memory_order_relaxed) != id || !ticket_current(sl, ticket))
		return -ENOENT;
	/* Under the lock: orphans and their count change only there. */
	rc = lock_queue(q, &died, NACK_LOCK_NS);
	if (rc)
		return rc;
	if (died)
		recover_locked(q, ALL_ENTRIES);
	HOOK(SHOAL__QP_NACK_LOCKED);
	/* Count first: the slot is ours and nobody reads the count before it
	 * is an orphan (dying between the two stores counts one too many). */
	atomic_fetch_add_explicit(&sl->redeliv, 1, memory_order_relaxed);
	/* R4: pairs with A3 in pop_orphan(): our reads of the message are
	 * done before its next reader releases the slot (the lock orders
	 * them too; this says so where the slot changes hands). */
	if (!atomic_compare_exchange_strong_explicit(&sl->state, &id, mk(pos_of(id), 0, ST_READING),
						     memory_order_release, memory_order_relaxed)) {
		atomic_fetch_sub_explicit(&sl->redeliv, 1, memory_order_relaxed);
		unlock_queue(q, died);
		return -ENOENT;
	}
	HOOK(SHOAL__QP_NACK_ORPHANED);
	atomic_fetch_add_explicit(&q->h->orphans, 1, memory_order_seq_cst);
	unlock_queue(q, died);
	atomic_fetch_sub_explicit(&q->claims, 1, memory_order_relaxed);
	/* D1: the seq_cst count before the sleepers' count. */
	wake(&q->h->not_empty, 1);
	return 0;
}

SHOAL_API int shoal_queue_close(struct shoal_queue *q)
{
	if (!q)
		return -EINVAL;
	/* C1: see drained() and push_try(). */
	atomic_store_explicit(&q->h->closed, 1, memory_order_seq_cst);
	wake_all(q);
	return 0;
}

SHOAL_API bool shoal_queue_is_closed(const struct shoal_queue *q)
{
	return q && atomic_load_explicit(&q->h->closed, memory_order_relaxed);
}

SHOAL_API int shoal_queue_stats(const struct shoal_queue *q, struct shoal_queue_stats *out)
{
	const struct qhdr *h;
	uint64_t head, tail, dropped, skipped, parts = 0;

	if (!q || !out)
		return -EINVAL;
	h = q->h;
	head = atomic_load_explicit(&h->head, memory_order_relaxed);
	tail = atomic_load_explicit(&h->tail, memory_order_relaxed);
	dropped = atomic_load_explicit(&h->dropped, memory_order_relaxed);
	skipped = atomic_load_explicit(&h->skipped, memory_order_relaxed);
	for (uint32_t i = 1; i < q->nparts; i++)
		parts += atomic_load_explicit(&q->parts[i], memory_order_relaxed) != 0;
	memset(out, 0, sizeof(*out));
	out->depth = (int64_t)(tail - head) <= 0 ? 0 : tail - head > q->cap ? q->cap : tail - head;
	out->capacity = q->cap;
	out->max_msg = q->max_msg;
	/* Cursors count every position; tombstones are not messages. */
	out->pushes = tail - dropped;
	out->pops = head - skipped;
	out->sleeps = atomic_load_explicit(&h->sleeps, memory_order_relaxed);
	out->recoveries = atomic_load_explicit(&h->recoveries, memory_order_relaxed);
	out->dropped = dropped;
	out->redelivered = atomic_load_explicit(&h->redelivered, memory_order_relaxed);
	out->participants = parts;
	return 0;
}

SHOAL_API const char *shoal_queue_name(const struct shoal_queue *q)
{
	return q->seg->name;
}

static struct shoal_queue *handle_new(struct shoal_segment *seg, const struct qhdr *cfg)
{
	struct shoal_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->seg = seg;
	q->h = seg->kind_hdr;
	q->ring = seg->data;
	q->cap = cfg->capacity;
	q->mask = cfg->capacity - 1;
	q->max_msg = cfg->max_msg;
	q->stride = cfg->stride;
	/* After the ring; 8-aligned: the ring is page aligned, stride a
	 * multiple of 64. qhdr_check() has checked that it fits. */
	q->parts = (shoal__atomic_u64 *)(q->ring + (size_t)cfg->capacity * cfg->stride);
	q->nparts = cfg->nparts;
	pthread_mutex_init(&q->reg_lock, NULL);
	return q;
}

int shoal__queue_create(const char *name, uint32_t capacity, uint32_t max_msg,
			uint32_t participants, const struct shoal_opts *opts,
			struct shoal_queue **out)
{
	struct shoal_segment *seg;
	struct shoal_queue *q;
	struct qhdr *h;
	size_t stride;
	int rc;

	shoal__detail_clear();
	if (!out)
		return shoal__fail(-EINVAL, "queue create: out is NULL");
	if (capacity < 2 || capacity > SHOAL_QUEUE_CAPACITY_MAX || (capacity & (capacity - 1)))
		return shoal__fail(-EINVAL, "queue '%s': capacity %u must be a power of two in 2..%u",
				   name ? name : "(null)", capacity, SHOAL_QUEUE_CAPACITY_MAX);
	if (max_msg == 0 || max_msg > SHOAL_QUEUE_MSG_MAX)
		return shoal__fail(-EINVAL, "queue '%s': max_msg %u must be in 1..%u bytes",
				   name ? name : "(null)", max_msg, SHOAL_QUEUE_MSG_MAX);
	if (participants == 0 || participants > SHOAL_QUEUE_PARTICIPANTS_MAX)
		return shoal__fail(-EINVAL, "queue '%s': participants %u must be in 1..%u",
				   name ? name : "(null)", participants,
				   SHOAL_QUEUE_PARTICIPANTS_MAX);
	stride = stride_for(max_msg);
	rc = shoal__segment_create(name, SHOAL__KIND_QUEUE, sizeof(struct qhdr),
				   (size_t)capacity * stride + (participants + 1) * sizeof(uint64_t),
				   opts, &seg);
	if (rc)
		return rc;
	h = seg->kind_hdr;
	h->magic = QUEUE_MAGIC;
	h->capacity = capacity;
	h->max_msg = max_msg;
	h->stride = (uint32_t)stride;
	h->nparts = participants + 1; /* entry 0 means "nobody" */
	h->flags = QUEUE_LAYOUT;
	shoal__lock_init(&h->lock.l);
	/* Slot i starts free for position i: STABLE(i). */
	for (uint64_t i = 0; i < capacity; i++)
		atomic_init(&((struct slot *)((unsigned char *)seg->data + i * stride))->state,
			    mk(i, 0, ST_STABLE));
	atomic_store_explicit(&h->sweep_ns, shoal__now_ns(), memory_order_relaxed);
	q = handle_new(seg, h);
	if (!q) {
		shoal__segment_abort(seg);
		return -ENOMEM;
	}
	rc = shoal__segment_publish(seg);
	if (rc) {
		pthread_mutex_destroy(&q->reg_lock);
		free(q);
		return rc;
	}
	*out = q;
	return 0;
}

SHOAL_API int shoal_queue_create(const char *name, uint32_t capacity, uint32_t max_msg,
				 const struct shoal_opts *opts, struct shoal_queue **out)
{
	return shoal__queue_create(name, capacity, max_msg, SHOAL_QUEUE_PARTICIPANTS, opts, out);
}

/* Every field of a queue header from another process, checked once from a
 * copy. */
/* @live: @seg maps the queue, whose cursors are read here as they move.
 * A copy (an observer's pread) is not checked for them: the copy of tail
 * and the later copy of head may straddle a push and a pop, and no retry
 * can tell that from corruption; what reads them there clamps. */
static int qhdr_check(const struct qhdr *c, const struct shoal_segment *seg, bool live)
{
	uint64_t head, tail, h2;

	if (c->magic != QUEUE_MAGIC || c->flags > QUEUE_LAYOUT)
		return -EBADMSG;
	if (c->flags < QUEUE_LAYOUT)
		return -EPROTO; /* an older layout: its fields mean other things */
	/* The ring and the table after it inside the data, in 64 bits: no
	 * field can overflow the sum (2^24 * 2^27 + 2^32 * 8 < 2^64). */
	if (c->capacity < 2 || c->capacity > SHOAL_QUEUE_CAPACITY_MAX ||
	    (c->capacity & (c->capacity - 1)) || c->max_msg == 0 ||
	    c->max_msg > SHOAL_QUEUE_MSG_MAX || c->stride != stride_for(c->max_msg) ||
	    c->nparts < 2 || c->nparts > NPARTS_MAX ||
	    (uint64_t)c->capacity * c->stride + (uint64_t)c->nparts * sizeof(uint64_t) >
		    seg->hdr.data_size)
		return -EBADMSG;
	/* The cursors move while we look; read head, tail, head until the
	 * head holds still, then they must be within a ring of each other. */
	for (int i = 0; live && i < 100; i++) {
		const struct qhdr *h = seg->kind_hdr;

		head = atomic_load_explicit(&h->head, memory_order_acquire);
		tail = atomic_load_explicit(&h->tail, memory_order_acquire);
		h2 = atomic_load_explicit(&h->head, memory_order_acquire);
		if (head == h2)
			return tail - head <= c->capacity ? 0 : -EBADMSG;
	}
	return 0; /* busy; the per-operation checks still hold */
}

SHOAL_API int shoal_queue_open(const char *name, unsigned int flags, struct shoal_queue **out)
{
	struct shoal_segment *seg;
	struct shoal_queue *q;
	struct qhdr cfg;
	int rc;

	shoal__detail_clear();
	if (!out || (flags & ~SHOAL_PREFAULT))
		return shoal__fail(-EINVAL, "queue open: NULL out or unknown flags 0x%x", flags);
	rc = shoal__segment_open(name, SHOAL__KIND_QUEUE, sizeof(struct qhdr), flags, &seg);
	if (rc)
		return rc;
	/* One read of the fixed line; only the copy is trusted from here. */
	memcpy(&cfg, seg->kind_hdr, offsetof(struct qhdr, closed));
	rc = qhdr_check(&cfg, seg, true);
	if (rc == -EPROTO)
		shoal__fail(-EPROTO, "queue '%s' has layout %u (%s), made by an older libshoal; "
			    "this one reads layout %u", name, cfg.flags,
			    cfg.flags == 0 ? "a glibc mutex for its lock" :
					     "a fixed table of 1024 entries, slot claims without spans",
			    QUEUE_LAYOUT);
	if (rc == -EBADMSG)
		shoal__fail(rc, "queue '%s' is corrupt: its queue header fails a check "
			    "(capacity, max_msg, stride, participant table or cursors)", name);
	if (rc == 0 && !(q = handle_new(seg, &cfg)))
		rc = -ENOMEM;
	if (rc) {
		shoal_segment_close(seg);
		return rc;
	}
	*out = q;
	return 0;
}

SHOAL_API int shoal_queue_detach(struct shoal_queue *q)
{
	if (!q)
		return 0;
	/* Give our entry back if it is ours (not the parent's, after fork). */
	if (atomic_load_explicit(&q->reg_gen, memory_order_relaxed) ==
	    atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed) + 1) {
		uint64_t key = q->my_key;
		bool claims = atomic_load_explicit(&q->claims, memory_order_relaxed) != 0;

		/* With claims open, the entry is marked detached, not freed:
		 * recovery hands the claims on and only then frees it, so no
		 * new handle can take an entry our slots still name. Try that
		 * now; if a live process holds the lock, its pass or the next
		 * sweep's (the marked key counts as dead) does it. */
		if (atomic_compare_exchange_strong_explicit(&q->parts[q->me], &key,
							    claims ? key | DETACHED_BIT : 0,
							    memory_order_release,
							    memory_order_relaxed) &&
		    claims)
			recover(q, q->me);
	}
	pthread_mutex_destroy(&q->reg_lock);
	shoal_segment_close(q->seg);
	free(q);
	return 0;
}

/*
 * Observation: the queue as a stranger sees it. A snapshot, not a mapping
 * (shoal__segment_snapshot: its headers, then its participant table, read
 * with pread into private memory), so an owner that truncates or rewrites
 * the file meanwhile cannot stop the observer with SIGBUS: a file that
 * ends too soon is -EBADMSG. No participant entry, no lock: the fixed line
 * is checked as an open checks it, and everything else is counters and
 * table entries where any value is a legal reading.
 */
SHOAL_API int shoal_queue_observe(const char *name, struct shoal_queue_view *out,
				  struct shoal_queue_participant *parts, size_t cap)
{
	struct shoal_segment *seg;
	struct shoal_queue q;
	struct qhdr cfg;
	uint32_t n = 0;
	int rc;

	shoal__detail_clear();
	if (!out || (!parts && cap))
		return shoal__fail(-EINVAL, "queue observe: NULL out or parts");
	rc = shoal__segment_snapshot(name, SHOAL__KIND_QUEUE, sizeof(struct qhdr), &seg);
	if (rc)
		return rc;
	memcpy(&cfg, seg->kind_hdr, offsetof(struct qhdr, closed));
	rc = qhdr_check(&cfg, seg, false);
	if (rc == -EBADMSG)
		shoal__fail(rc, "queue '%s' is corrupt: its queue header fails a check", name);
	memset(&q, 0, sizeof(q));
	q.seg = seg;
	q.h = seg->kind_hdr;
	q.cap = cfg.capacity;
	q.max_msg = cfg.max_msg;
	q.stride = cfg.stride;
	q.nparts = cfg.nparts;
	/* The table after the ring, as handle_new() places it; qhdr_check()
	 * has checked that it fits the data. */
	if (rc == 0 && !(q.parts = calloc(cfg.nparts, sizeof(*q.parts))))
		rc = -ENOMEM;
	if (rc == 0)
		rc = shoal__segment_pread(seg, (void *)q.parts, (size_t)cfg.nparts * sizeof(*q.parts),
					  seg->hdr.data_off + (uint64_t)cfg.capacity * cfg.stride);
	if (rc) {
		free((void *)q.parts);
		shoal_segment_close(seg);
		return rc;
	}
	memset(out, 0, sizeof(*out));
	shoal_queue_stats(&q, &out->stats);
	out->generation = seg->hdr.generation;
	out->closed = atomic_load_explicit(&q.h->closed, memory_order_relaxed) != 0;
	out->table = q.nparts - 1;
	for (uint32_t i = 1; i < q.nparts; i++) {
		uint64_t key = atomic_load_explicit(&q.parts[i], memory_order_relaxed);
		struct shoal_proc p;
		bool alive;

		if (key == 0)
			continue;
		/* A detached entry with claims open is as good as dead: its
		 * owner no longer uses it, recovery frees it. */
		alive = !(key & DETACHED_BIT) && !shoal__key_dead(key);
		if (alive)
			out->live++;
		else
			out->dead++;
		if (n < cap) {
			shoal__proc_unkey(key & ~DETACHED_BIT, &p);
			parts[n].pid = p.pid;
			parts[n].start_time = p.start_time;
			parts[n].alive = alive;
			parts[n].detached = (key & DETACHED_BIT) != 0;
		}
		n++;
	}
	out->stats.participants = n;
	free((void *)q.parts);
	shoal_segment_close(seg);
	return (int)n;
}

int shoal__queue_unlink(const char *name)
{
	struct shoal_queue *q;
	int rc = shoal_queue_open(name, 0, &q);

	if (rc)
		return rc;
	rc = shoal_unlink(name);
	shoal_queue_detach(q);
	return rc;
}

uint64_t shoal__queue_generation(const struct shoal_queue *q)
{
	return q->seg->hdr.generation;
}
