/*
 * array.c - refcounted shared n-d arrays: their ledger of references,
 * their handles, and what the reaper asks of one array.
 *
 * An array is one shoal object (segment.c): the common header, this kind's
 * header (struct shoal__array_hdr, array.h: dtype, shape, strides, the
 * ledger lock (lib/lock.c), a state word and the reference ledger), then
 * the page-aligned data.
 *
 * The ledger. References are counted per holder: a line {key, count} per
 * process (or per queue holding handles in transit, or the pin of a
 * SharedMemory name). The lines are the only record: there is no total kept
 * beside them that could disagree. Every change happens under the lock and
 * is committed by exactly one aligned store to one line's count (release
 * order, so a line's key is in memory before its count makes it count):
 *   new holder:   key := K (not yet in use: count is 0), then count := 1
 *   more:         count := c + 1
 *   fewer:        count := c - 1; at zero the key is cleared afterwards
 * A process that dies before the commit store changed nothing; after it,
 * the change is complete. (A line's @given, the references another process
 * put there for its holder, is written before the count for a new line and
 * after it for an old one, so a death in between leaves one reference too
 * many on the holder's line, held until the holder dies, never a given one
 * the count does not back.) Either way the ledger is consistent, so the next
 * locker, which takes the lock over from the dead owner (acquire returns
 * 1), finishes the one thing a dead locker can leave undone: a ledger whose
 * total is zero while the state still says ALIVE gets freed.
 *
 * Waiting. The lock word is shoal's own, so no byte pattern in it can
 * abort or hang a process; a lock held by a live process is waited for at
 * most LEDGER_TIMEOUT_NS by attach, retain and release (then -EDEADLK), and
 * at most REAP_TIMEOUT_NS per array by shoal_reap() and a release's sweep
 * of dead holders, which skip that array until their next walk.
 *
 * Freeing. The state word goes ALIVE -> FREED under the lock when the
 * total reaches zero, and never back: attach checks it under the lock, so
 * a freed array cannot be resurrected by a stale handle. The process that
 * set FREED records its key in `freer` and is the one that unlinks the
 * name. If it dies before unlinking, shoal_reap() finds FREED with a dead
 * freer, claims the unlink under the lock (freer := itself), and unlinks.
 * So the name is unlinked once, by one process. The memory is never freed
 * under anyone: unlink removes the name, and pages live until the last
 * mapping of them goes.
 *
 * Reaping: shoal_reap() (lib/reap.c) walks /dev/shm and hands each array
 * to shoal__array_reap(), which drops the lines of the holders the
 * reaper's judge calls gone (processes by pid + start time, zombies dead;
 * queues by whether one with that generation is still in /dev/shm: the
 * judge knows, this file does not), judged outside the lock and dropped
 * under it a chunk at a time, then frees what that emptied as any locker
 * would. No daemon: any process may reap, at any
 * time. Of the holders that are not processes (internal.h's holder keys),
 * queues come from lib/queue_arrays.c and pins from shoal_array_pin(); this
 * file counts their lines and never judges them.
 *
 * Holding for another process: shoal_array_hold_for() adds a reference to
 * the line of a named live process (pid + start time, so a reused pid is
 * not it) and counts it in that line's @given. While one is left, a
 * reference a struct of that process takes (attach, open, retain) takes a
 * given one over instead of adding one, so its release drops the line and no
 * reference is left behind; if the process dies first, its line is a dead
 * holder's like any other, dropped by a reap or by the last live holder's
 * release.
 *
 * Handles are "shoal:array:<name>@<generation>". The generation is the
 * common header's random 64-bit value, so a handle to a freed array whose
 * name was reused by a new array gets -ENOENT, never the new data.
 */
#include "array.h"
#include "reap.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* How long attach, retain and release wait for a live holder of the
 * ledger lock (which holds it for microseconds) before -EDEADLK. */
#define LEDGER_TIMEOUT_NS (10ll * 1000000000)
/* How long the reaper (and a release's sweep) waits for one array's lock:
 * a walk over N arrays that live processes keep locked costs N times this
 * at most, then those arrays wait for the next walk. */
#define REAP_TIMEOUT_NS (10ll * 1000000)

void (*shoal__array_hook)(int point);
int shoal__array_reserve_fail;

#define HOOK(p)                                   \
	do {                                      \
		if (SHOAL__UNLIKELY(shoal__array_hook)) \
			shoal__array_hook(p);     \
	} while (0)

/* ---- dtypes ---------------------------------------------------------- */

static const struct {
	const char *name;
	size_t size;
} dtypes[] = {
	[SHOAL_DTYPE_BOOL] = { "bool", 1 },          [SHOAL_DTYPE_INT8] = { "int8", 1 },
	[SHOAL_DTYPE_INT16] = { "int16", 2 },        [SHOAL_DTYPE_INT32] = { "int32", 4 },
	[SHOAL_DTYPE_INT64] = { "int64", 8 },        [SHOAL_DTYPE_UINT8] = { "uint8", 1 },
	[SHOAL_DTYPE_UINT16] = { "uint16", 2 },      [SHOAL_DTYPE_UINT32] = { "uint32", 4 },
	[SHOAL_DTYPE_UINT64] = { "uint64", 8 },      [SHOAL_DTYPE_FLOAT32] = { "float32", 4 },
	[SHOAL_DTYPE_FLOAT64] = { "float64", 8 },    [SHOAL_DTYPE_COMPLEX64] = { "complex64", 8 },
	[SHOAL_DTYPE_COMPLEX128] = { "complex128", 16 }, [SHOAL_DTYPE_RAW] = { "V", 0 },
};

static bool dtype_known(uint64_t d)
{
	return d >= SHOAL_DTYPE_BOOL && d <= SHOAL_DTYPE_RAW;
}

SHOAL_API size_t shoal_dtype_itemsize(int dtype)
{
	return dtype_known((uint64_t)(int64_t)dtype) ? dtypes[dtype].size : 0;
}

SHOAL_API const char *shoal_dtype_name(int dtype)
{
	return dtype_known((uint64_t)(int64_t)dtype) ? dtypes[dtype].name : "?";
}

/*
 * Check a dtype, itemsize and shape; compute C-order strides and the byte
 * size. Strides follow numpy: a zero extent counts as one, so they can
 * overflow even when the array is empty. -EINVAL or -EOVERFLOW.
 */
static int layout(uint64_t dtype, uint64_t itemsize, uint64_t ndim, const uint64_t *shape,
		  int64_t *strides, uint64_t *nbytes)
{
	uint64_t stride, total;

	if (!dtype_known(dtype) || ndim < 1 || ndim > SHOAL_ARRAY_MAXDIM)
		return -EINVAL;
	if (dtype == SHOAL_DTYPE_RAW ? itemsize < 1 || itemsize > INT32_MAX
				     : itemsize != dtypes[dtype].size)
		return -EINVAL;
	stride = itemsize;
	total = itemsize;
	for (uint64_t i = ndim; i-- > 0;) {
		if (shape[i] > INT64_MAX)
			return -EOVERFLOW;
		strides[i] = (int64_t)stride;
		if (shape[i] && __builtin_mul_overflow(stride, shape[i], &stride))
			return -EOVERFLOW;
		if (__builtin_mul_overflow(total, shape[i], &total))
			return -EOVERFLOW;
		if (stride > INT64_MAX || total > INT64_MAX)
			return -EOVERFLOW;
	}
	*nbytes = total;
	return 0;
}

/* ---- the ledger ------------------------------------------------------ */

static uint32_t line_count(const struct shoal__array_entry *e, uint64_t *key)
{
	/* Display and scan reads; under the lock they see the locked state. */
	uint32_t c = atomic_load_explicit(&e->count, memory_order_acquire); /* A1: pairs with R1 */

	*key = atomic_load_explicit(&e->key, memory_order_relaxed);
	return *key ? c : 0;
}

/*
 * Line @i of the ledger: [0, ledger_cap) are the first page's lines,
 * [ledger_cap, ledger_cap + ovf_cap) the overflow's. One index space, so
 * every scan is one loop over [0, lines()).
 */
static struct shoal__array_entry *line_at(const struct shoal_array *a, uint32_t i)
{
	return SHOAL__LIKELY(i < a->ledger_cap) ? &a->hdr->ledger[i] : &a->ovf[i - a->ledger_cap];
}

static size_t page_size(void)
{
	static _Atomic long page;
	long pg = atomic_load_explicit(&page, memory_order_relaxed);

	if (!pg) {
		pg = sysconf(_SC_PAGESIZE);
		if (pg <= 0)
			pg = SHOAL__DATA_ALIGN;
		atomic_store_explicit(&page, pg, memory_order_relaxed);
	}
	return (size_t)pg;
}

/* This mapping found overflow lines [from, to) on reserved pages: extend
 * its verified prefix when that range starts inside it. */
static void ovf_ok_raise(struct shoal_array *a, uint32_t from, uint32_t to)
{
	uint32_t cur = atomic_load_explicit(&a->ovf_ok, memory_order_relaxed);

	if (to > a->ovf_cap)
		to = a->ovf_cap;
	while (from <= cur && cur < to &&
	       !atomic_compare_exchange_weak_explicit(&a->ovf_ok, &cur, to, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/* Whether every page of [start, end) is in the object's page cache (a
 * hole is not; a page swapped out is not either, and is then faulted in).
 * mincore() only looks: populating pages that are there anyway touches
 * each one's LRU state, which thousands of holders doing it at once under
 * the lock made a convoy of. */
static bool pages_resident(uintptr_t start, uintptr_t end)
{
	const size_t pg = page_size();
	unsigned char vec[64];

	while (start < end) {
		size_t n = (end - start) / pg;

		if (n > sizeof(vec))
			n = sizeof(vec);
		if (mincore((void *)start, n * pg, vec) != 0)
			return false;
		for (size_t i = 0; i < n; i++)
			if (!(vec[i] & 1))
				return false;
		start += n * pg;
	}
	return true;
}

/*
 * The overflow mark @o (clamped to the cap) is past the pages this mapping
 * has seen reserved. Every process that moves the mark reserves the page
 * first, so the pages are there, unless a same-user process wrote the mark
 * (or punched holes): then a scan would read holes, which on a full mount
 * is SIGBUS. So once per mapping, before a scan reads them, the pages are
 * looked at (pages_resident), and if one is missing they are faulted in,
 * in one call: a hole is allocated if the mount has room (a read fault on
 * a shared tmpfs mapping allocates), and if it has none (EFAULT, where a
 * load would be SIGBUS) the scan stops at the last page found reserved,
 * whose lines are all a legal mark can cover there. Other errors (out of
 * memory, a signal) say nothing about holes: the scan goes on as before.
 * (Populating every time, even pages that were there, made 4096 holders
 * closing at once wait over 10 s for the lock: -EDEADLK.)
 */
static uint32_t ovf_verify(struct shoal_array *a, uint32_t o)
{
	const size_t line = sizeof(struct shoal__array_entry), pg = page_size();
	uint32_t ok = atomic_load_explicit(&a->ovf_ok, memory_order_relaxed);
	uintptr_t base = (uintptr_t)a->ovf;
	uintptr_t start = (base + (uintptr_t)ok * line) & ~(uintptr_t)(pg - 1);
	uintptr_t end = (base + (uintptr_t)o * line + pg - 1) & ~(uintptr_t)(pg - 1);

	if (pages_resident(start, end) ||
	    madvise((void *)start, end - start, MADV_POPULATE_READ) == 0) {
		/* The overflow need not start on a page (64 KiB pages, 4 KiB
		 * aligned offsets): the first page may begin before it. */
		ovf_ok_raise(a, start > base ? (uint32_t)((start - base) / line) : 0,
			     (uint32_t)((end - base) / line));
		return o;
	}
	if (errno != EFAULT && errno != ENOSPC && errno != EINVAL && errno != EHWPOISON)
		return o;
	/* EINVAL: no MADV_POPULATE_* (before 5.14), where no process can
	 * have reserved an overflow page: the mark was written by hand. The
	 * call goes on over the pages that are there: its own error, if it
	 * has one, is the detail to keep. */
	if (!shoal__detail_code)
		shoal__fail(-EBADMSG, "array '%s': its overflow mark (%u lines) covers pages "
			    "that were never reserved and cannot be now: scans stop at line %u",
			    a->seg->name, o, a->ledger_cap + ok);
	return ok;
}

/*
 * Lines that may be in use: the first page's high-water mark; once the
 * overflow has a line, the whole first page and the overflow's mark. Both
 * hints are clamped to their validated caps, and the overflow's mark to
 * the pages this mapping finds reserved (ovf_verify), so a scan touches
 * only pages that exist. While 204 or fewer hold the array, scans stay in
 * the first page.
 */
static uint32_t lines(const struct shoal_array *a)
{
	uint32_t n = atomic_load_explicit(&a->hdr->used, memory_order_acquire); /* A3: pairs with R3 */
	/* A4: pairs with R4 in line_free (its page was reserved before). */
	uint32_t o = atomic_load_explicit(&a->hdr->ovf_used, memory_order_acquire);

	if (SHOAL__LIKELY(o == 0 || a->ovf_cap == 0))
		return n < a->ledger_cap ? n : a->ledger_cap;
	if (o > a->ovf_cap)
		o = a->ovf_cap;
	if (SHOAL__UNLIKELY(o > atomic_load_explicit(&a->ovf_ok, memory_order_relaxed)))
		o = ovf_verify((struct shoal_array *)a, o); /* the struct is ours, not shared */
	return a->ledger_cap + o;
}

static uint64_t ledger_total(const struct shoal_array *a)
{
	uint32_t n = lines(a);
	uint64_t sum = 0, key;

	for (uint32_t i = 0; i < n; i++)
		sum += line_count(line_at(a, i), &key);
	return sum;
}

/* Whether no line is in use: stops at the first that is (with many
 * holders, usually the first line), where a total would scan them all. */
static bool ledger_empty(const struct shoal_array *a)
{
	uint32_t n = lines(a);
	uint64_t key;

	for (uint32_t i = 0; i < n; i++)
		if (line_count(line_at(a, i), &key))
			return false;
	return true;
}

/* The commit store of every ledger change. */
static void line_set(struct shoal__array_entry *e, uint64_t key, uint32_t count)
{
	if (atomic_load_explicit(&e->key, memory_order_relaxed) != key) {
		atomic_store_explicit(&e->key, key, memory_order_relaxed);
		HOOK(SHOAL__HOOK_KEY_WRITTEN);
	}
	/* R1: the key is in memory before the count makes the line count. */
	atomic_store_explicit(&e->count, count, memory_order_release);
	HOOK(SHOAL__HOOK_COUNT_WRITTEN);
	/* Given references are some of the count's: never more (at 0, none). */
	if (atomic_load_explicit(&e->given, memory_order_relaxed) > count)
		atomic_store_explicit(&e->given, count, memory_order_relaxed);
	if (count == 0)
		atomic_store_explicit(&e->key, 0, memory_order_relaxed);
}

/*
 * The commit of a line taken for a new holder: key and @given first (the
 * line does not count yet, so nobody reads them), then the count. @given
 * is written whatever it was: a line left by a holder of an older version
 * (which never writes it) or by a locker that died before its commit may
 * hold anything there.
 */
static void line_claim(struct shoal__array_entry *e, uint64_t key, uint32_t count, uint32_t given)
{
	atomic_store_explicit(&e->key, key, memory_order_relaxed);
	atomic_store_explicit(&e->given, given, memory_order_relaxed);
	HOOK(SHOAL__HOOK_KEY_WRITTEN);
	/* R1 (as in line_set). */
	atomic_store_explicit(&e->count, count, memory_order_release);
	HOOK(SHOAL__HOOK_COUNT_WRITTEN);
}

/* @key's line, or NULL; *@first_free (if not NULL) gets the first line not
 * in use seen on the way, so a new holder's attach scans the ledger once. */
static struct shoal__array_entry *line_find_or_free(struct shoal_array *a, uint64_t key,
						    struct shoal__array_entry **first_free)
{
	uint32_t n = lines(a);
	uint64_t k;

	for (uint32_t i = 0; i < n; i++) {
		struct shoal__array_entry *e = line_at(a, i);

		if (!line_count(e, &k)) {
			if (first_free && !*first_free)
				*first_free = e;
		} else if (k == key) {
			return e;
		}
	}
	return NULL;
}

static struct shoal__array_entry *line_find(struct shoal_array *a, uint64_t key)
{
	return line_find_or_free(a, key, NULL);
}

static bool holder_alive(uint64_t key);
static bool holder_gone_fast(uint64_t key);
static void drop_dead(struct shoal_array *a, const uint32_t *at, const uint64_t *dead, size_t n);

/*
 * Under the lock: reserve the page of overflow line @j unless this mapping
 * has found it reserved (the scan that led here verified every page below
 * the mark, so that is once per page: when @j is the first line on it). A
 * page is reserved by faulting it in for writing through the mapping
 * (MADV_POPULATE_WRITE): the object's file is not kept open, and this gives
 * a full /dev/shm as an error where a plain store would be SIGBUS. A death
 * after it leaves a reserved page below no mark: memory of the object,
 * freed with it, reused by the next line.
 */
static int ovf_reserve(struct shoal_array *a, uint32_t j)
{
	const size_t line = sizeof(struct shoal__array_entry), pg = page_size();
	uintptr_t base = (uintptr_t)a->ovf, start;

	if (j < atomic_load_explicit(&a->ovf_ok, memory_order_relaxed))
		return 0;
	start = (base + (uintptr_t)j * line) & ~(uintptr_t)(pg - 1);
	if (SHOAL__UNLIKELY(shoal__array_reserve_fail))
		errno = shoal__array_reserve_fail;
	else if (madvise((void *)start, pg, MADV_POPULATE_WRITE) == 0)
		goto reserved;
	switch (errno) {
	case EFAULT:  /* the fault was SIGBUS: the mount is full */
	case ENOSPC:
		return shoal__fail(-ENOSPC, "array '%s': no room in %s for a page of its "
				   "overflow ledger (holder %u)", a->seg->name,
				   shoal__dir() ? shoal__dir() : "its directory", a->ledger_cap + j + 1);
	case EINVAL:
		return shoal__fail(-EUSERS, "array '%s': holder ledger full (%u holders): more "
				   "need MADV_POPULATE_WRITE (Linux 5.14)", a->seg->name,
				   a->ledger_cap);
	case ENOMEM:
		return shoal__fail(-ENOMEM, "array '%s': out of memory reserving a page of its "
				   "overflow ledger", a->seg->name);
	default:
		return -errno;
	}
reserved:
	ovf_ok_raise(a, start > base ? (uint32_t)((start - base) / line) : 0,
		     (uint32_t)((start + pg - base) / line));
	HOOK(SHOAL__HOOK_OVF_RESERVED);
	return 0;
}

/*
 * Under the lock, after a scan found no free line under the marks: a line
 * for a new holder. The next line of the first page; else the next
 * overflow line (its page reserved first). NULL with *@err: -EUSERS (every
 * line in use: the caller sweeps the dead, see "Making room"), -ENOSPC,
 * -ENOMEM.
 */
static struct shoal__array_entry *line_free(struct shoal_array *a, int *err)
{
	uint32_t used, o;

	used = atomic_load_explicit(&a->hdr->used, memory_order_relaxed);
	o = atomic_load_explicit(&a->hdr->ovf_used, memory_order_relaxed);
	/* Once the overflow has a line, scans cover the whole first page
	 * (lines()), so the line at @used is not known free: a mark written
	 * by hand could have it in use. Only the overflow is past them. */
	if (used < a->ledger_cap && (o == 0 || a->ovf_cap == 0)) {
		/* R3: the mark covers the line before the line is written; a
		 * death here leaves an unused line inside the mark, which
		 * costs a scan step, nothing more. */
		atomic_store_explicit(&a->hdr->used, used + 1, memory_order_release);
		return &a->hdr->ledger[used];
	}
	if (o < a->ovf_cap) {
		*err = ovf_reserve(a, o);
		if (*err)
			return NULL;
		/* R4: as R3, and the page under the mark is reserved before
		 * the mark covers it (pairs with A4). */
		atomic_store_explicit(&a->hdr->ovf_used, o + 1, memory_order_release);
		return &a->ovf[o];
	}
	*err = shoal__fail(-EUSERS, "array '%s': holder ledger full (%u live holders, the most "
			   "one array can have)", a->seg->name, a->ledger_cap + a->ovf_cap);
	return NULL;
}

static uint32_t state_of(const struct shoal_array *a)
{
	/* A2: pairs with R2 in free_if_unheld. */
	return atomic_load_explicit(&a->hdr->state, memory_order_acquire);
}

/* Under the lock: if nobody holds @a any more, mark it FREED, with us as the
 * process that unlinks it. True if it did. */
static bool free_if_unheld(struct shoal_array *a)
{
	if (state_of(a) != SHOAL__ARRAY_ALIVE || !ledger_empty(a))
		return false;
	atomic_store_explicit(&a->hdr->freer, shoal__self_key(), memory_order_relaxed);
	/* R2: pairs with A2 in attach's and reap's state loads (also under
	 * the lock; the order matters only to lock-free readers). */
	atomic_store_explicit(&a->hdr->state, SHOAL__ARRAY_FREED, memory_order_release);
	HOOK(SHOAL__HOOK_FREED);
	return true;
}

/*
 * Take the ledger lock, waiting at most @timeout_ns for a live holder.
 * *must_free is set when a dead locker left a total of zero with the state
 * ALIVE: the caller frees (it is the freer now). 0, -EDEADLK when the wait
 * ran out, -EIO when this process cannot tell its own key.
 */
static int ledger_lock_within(struct shoal_array *a, int64_t timeout_ns, bool *must_free)
{
	int rc;

	*must_free = false;
	/* Check the overflow pages this mapping has not seen (ovf_verify)
	 * before the lock, not at the first scan under it: a system call
	 * there, in each of thousands of holders closing at once, was a
	 * convoy. (Cheap when there is nothing new: two loads.) */
	(void)lines(a);
	rc = shoal__lock_acquire(&a->hdr->lock, timeout_ns);
	if (rc == -ETIMEDOUT || rc == -EAGAIN)
		return shoal__fail(-EDEADLK, "array '%s': ledger lock held by a live process for %lld ms",
				   a->seg->name, (long long)(timeout_ns / 1000000));
	if (rc < 0)
		return rc;
	if (rc == 1 && free_if_unheld(a)) /* consistent by construction (top of file) */
		*must_free = true;
	HOOK(SHOAL__HOOK_LOCKED);
	return 0;
}

static int ledger_lock(struct shoal_array *a, bool *must_free)
{
	return ledger_lock_within(a, LEDGER_TIMEOUT_NS, must_free);
}

/* Unlock, and unlink the name if this process set FREED. */
static int ledger_unlock(struct shoal_array *a, bool freed)
{
	shoal__lock_release(&a->hdr->lock);
	HOOK(SHOAL__HOOK_UNLOCKED);
	if (freed) {
		shoal_unlink(a->seg->name);
		return 1;
	}
	return 0;
}

/* The refs of an inherited struct belong to the parent: a child has none. */
static void own_refs(struct shoal_array *a)
{
	uint32_t gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);

	if (a->fork_gen != gen) {
		a->fork_gen = gen;
		a->refs = 0;
		a->holder = 0;
	}
}

/* How a reference comes to a holder's line (hold_mode_locked). */
enum hold_mode {
	HOLD_PLAIN, /* one more (a queue's, a pin, a transfer's receiver) */
	HOLD_TAKE,  /* a struct of the holder's own: a given one if any, else one more */
	HOLD_GIVE,  /* one more, given by another process (shoal_array_hold_for) */
};

/* Under the lock: +n for @holder (n is 1 for HOLD_TAKE and HOLD_GIVE). */
static int hold_mode_locked(struct shoal_array *a, uint64_t holder, uint32_t n,
			    enum hold_mode mode)
{
	struct shoal__array_entry *e, *free_e = NULL;
	uint64_t k;
	uint32_t c, g;
	int rc;

	if (state_of(a) != SHOAL__ARRAY_ALIVE)
		return shoal__fail(-ENOENT, "array '%s' was freed: its last reference was dropped",
				   a->seg->name);
	e = line_find_or_free(a, holder, &free_e);
	if (e) {
		c = line_count(e, &k);
		g = atomic_load_explicit(&e->given, memory_order_relaxed);
		if (g > c) {
			/* Never stored so (the count store lowers it): written by
			 * hand. Trusted, a take-over would make the struct's own
			 * new reference a given one, and its release could free
			 * what it still holds. Read as none given: at worst one
			 * reference too many. */
			atomic_store_explicit(&e->given, 0, memory_order_relaxed);
			g = 0;
		}
		if (mode == HOLD_TAKE && g) {
			/* Taken over: the count stays, the struct owns it now.
			 * A death after this store owned it with the process. */
			atomic_store_explicit(&e->given, g - 1, memory_order_relaxed);
			return 0;
		}
		if (c > UINT32_MAX - n)
			return -EOVERFLOW;
		line_set(e, holder, c + n);
		/* After the commit: a death between the two leaves one
		 * reference too many on the line (held until its holder
		 * dies), never a given one that the count does not back. */
		if (mode == HOLD_GIVE)
			atomic_store_explicit(&e->given, (g < c ? g : c) + 1, memory_order_relaxed);
		return 0;
	}
	e = free_e ? free_e : line_free(a, &rc);
	if (!e)
		return rc;
	line_claim(e, holder, n, mode == HOLD_GIVE ? n : 0);
	return 0;
}

static int hold_locked(struct shoal_array *a, uint64_t holder, uint32_t n)
{
	return hold_mode_locked(a, holder, n, HOLD_PLAIN);
}

/* Under the lock: -n for @holder; *freed when that made the total zero. */
static int unhold_locked(struct shoal_array *a, uint64_t holder, uint32_t n, bool *freed)
{
	struct shoal__array_entry *e = line_find(a, holder);
	uint64_t k;
	uint32_t c;

	if (!e)
		return -ENOENT;
	c = line_count(e, &k);
	if (c < n)
		return -ENOENT;
	line_set(e, holder, c - n);
	if (free_if_unheld(a))
		*freed = true;
	return 0;
}

/*
 * Making room. A new holder that finds every line in use (-EUSERS from
 * line_free, or -ENOSPC: no room for a new overflow page) takes the lines
 * of dead processes. Judging a process is a /proc read, and a full ledger
 * has 16384 lines: judged under the lock that was most of a second during
 * which every attach and release of the array waited. So the judging is
 * done outside the lock (dead is forever: a key is never reused, so a line
 * seen dead may be dropped later if it still holds that key), in chunks of
 * SHOAL__ARRAY_SWEEP_CHECKS processes, each followed by one hold of the
 * lock that drops the chunk's dead (at their lines, no search) and tries
 * again. The chunks start where the last sweep stopped (@sweep_next, as
 * the queue's participant sweep), so repeated attaches go round the whole
 * ledger rather than judging its live head again each time. One round
 * with nothing reclaimed (or reclaimed and taken by others) ends in the
 * error. Lines of holders that are not processes are never judged here
 * (the reaper judges queues); this process's own line is alive.
 */
struct room {
	uint32_t n;      /* lines in the round; 0: not started */
	uint32_t pos;    /* next line to judge */
	uint32_t walked; /* lines judged or passed this round */
	uint32_t ndead;  /* found in the last chunk */
	uint32_t line[SHOAL__ARRAY_SWEEP_CHECKS];
	uint64_t key[SHOAL__ARRAY_SWEEP_CHECKS];
};

/* Outside the lock: judge the next chunk, from @sweep_next at first. */
static void room_judge(struct shoal_array *a, struct room *r)
{
	uint32_t n = lines(a), checks = 0;
	uint64_t self = shoal__self_key(), k;

	if (!r->n) {
		/* Untrusted: a cursor out of range starts at line 0. */
		uint32_t c = atomic_load_explicit(&a->hdr->sweep_next, memory_order_relaxed);

		r->n = n ? n : 1;
		r->walked = n ? 0 : 1;
		r->pos = c < n ? c : 0;
	}
	r->ndead = 0;
	while (r->walked < r->n && checks < SHOAL__ARRAY_SWEEP_CHECKS) {
		if (r->pos >= n)
			r->pos = 0;
		if (line_count(line_at(a, r->pos), &k) && !(k & SHOAL__HOLDER_NONPROC) && k != self) {
			checks++;
			if (holder_gone_fast(k) || !holder_alive(k)) {
				r->line[r->ndead] = r->pos;
				r->key[r->ndead++] = k;
			}
		}
		r->pos++;
		r->walked++;
	}
	atomic_store_explicit(&a->hdr->sweep_next, r->pos < n ? r->pos : 0, memory_order_relaxed);
}

/*
 * Run @op (a hold of some kind) under the ledger lock; while it finds no
 * line, sweep a chunk outside the lock and try again, for one round at
 * most. Returns @op's result (a hold frees nothing, so there is no freed
 * to report).
 */
static int locked_with_room(struct shoal_array *a, int (*op)(struct shoal_array *, void *),
			    void *arg)
{
	struct room r = { 0 };
	bool freed;
	int rc;

	rc = ledger_lock(a, &freed);
	if (rc)
		return rc;
	rc = op(a, arg);
	while ((rc == -EUSERS || rc == -ENOSPC) && (!r.n || r.walked < r.n)) {
		ledger_unlock(a, freed);
		do
			room_judge(a, &r);
		while (!r.ndead && r.walked < r.n);
		rc = ledger_lock(a, &freed);
		if (rc)
			return rc;
		drop_dead(a, r.line, r.key, r.ndead);
		rc = op(a, arg);
	}
	if (rc == -EUSERS && lines(a) == a->ledger_cap + a->ovf_cap)
		rc = shoal__fail(-EUSERS, "array '%s': holder ledger full (%u live holders, the "
				 "most one array can have): a sweep of every line found none "
				 "dead", a->seg->name, a->ledger_cap + a->ovf_cap);
	if (rc && free_if_unheld(a)) /* all it dropped, and then no line for us */
		freed = true;
	ledger_unlock(a, freed);
	return rc;
}

static int op_hold(struct shoal_array *a, void *holder)
{
	return hold_locked(a, *(const uint64_t *)holder, 1);
}

int shoal__array_hold(struct shoal_array *a, uint64_t holder)
{
	if (!a || a->noref || !holder)
		return -EINVAL;
	return locked_with_room(a, op_hold, &holder);
}

int shoal__array_unhold(struct shoal_array *a, uint64_t holder)
{
	bool freed;
	int rc, rc2;

	if (!a || a->noref || !holder)
		return -EINVAL;
	rc = ledger_lock(a, &freed);
	if (rc)
		return rc;
	rc = unhold_locked(a, holder, 1, &freed);
	rc2 = ledger_unlock(a, freed);
	return rc ? rc : rc2;
}

/* Under the lock: move one reference. The receiving line is committed
 * first: a death between the two stores leaves one reference too many
 * (the array lives a little longer), never one too few. */
static int transfer_locked(struct shoal_array *a, uint64_t from, uint64_t to)
{
	struct shoal__array_entry *src = line_find(a, from);
	bool freed = false;
	uint64_t k;
	int rc;

	if (!src || !line_count(src, &k))
		return -ENOENT;
	rc = hold_locked(a, to, 1);
	if (rc)
		return rc;
	return unhold_locked(a, from, 1, &freed); /* the total stays > 0 */
}

static int op_transfer(struct shoal_array *a, void *keys)
{
	const uint64_t *k = keys;

	return transfer_locked(a, k[0], k[1]);
}

int shoal__array_transfer(struct shoal_array *a, uint64_t from, uint64_t to)
{
	uint64_t keys[2] = { from, to };

	if (!a || a->noref || !from || !to || from == to)
		return -EINVAL;
	return locked_with_room(a, op_transfer, keys);
}

uint32_t shoal__array_count_of(const struct shoal_array *a, uint64_t holder)
{
	uint32_t n = lines(a);
	uint64_t k;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = line_count(line_at(a, i), &k);

		if (c && k == holder)
			return c;
	}
	return 0;
}

uint32_t shoal__array_given_of(const struct shoal_array *a, uint64_t holder)
{
	uint32_t n = lines(a);
	uint64_t k;

	for (uint32_t i = 0; i < n; i++) {
		const struct shoal__array_entry *e = line_at(a, i);

		if (line_count(e, &k) && k == holder)
			return atomic_load_explicit(&e->given, memory_order_relaxed);
	}
	return 0;
}

/* ---- opening --------------------------------------------------------- */

static void array_free(struct shoal_array *a)
{
	if (a->snapshot)
		free(a->ovf);
	shoal_segment_close(a->seg);
	free(a);
}

static void make_handle(struct shoal_array *a)
{
	snprintf(a->handle, sizeof(a->handle), SHOAL_HANDLE_PREFIX "%s@%016" PRIx64, a->seg->name,
		 a->seg->hdr.generation);
}

/* Where the data's last page ends: an overflow ledger starts there or later. */
static uint64_t data_end(const struct shoal__hdr *h)
{
	return (h->data_off + h->data_size + SHOAL__DATA_ALIGN - 1) & ~(uint64_t)(SHOAL__DATA_ALIGN - 1);
}

/* Validate the kind header of an opened object; fill @a from the copy. */
static int array_check(struct shoal_array *a, struct shoal_segment *s)
{
	struct shoal__array_hdr h;
	int64_t strides[SHOAL_ARRAY_MAXDIM];
	uint64_t nbytes, cap_max;
	int rc;

	/* One read of the immutable part; only the copy is looked at. */
	memcpy(&h, s->kind_hdr, offsetof(struct shoal__array_hdr, lock));
	if (h.layout < SHOAL__ARRAY_LAYOUT)
		return -EPROTO; /* 0: a glibc mutex; 1: no overflow; 2: sweeps under the lock */
	rc = layout(h.dtype, h.itemsize, h.ndim, h.shape, strides, &nbytes);
	if (rc)
		return -EBADMSG;
	if (h.layout != SHOAL__ARRAY_LAYOUT || nbytes != h.nbytes || nbytes > s->hdr.data_size ||
	    memcmp(strides, h.strides, h.ndim * sizeof(strides[0])) != 0)
		return -EBADMSG;
	cap_max = (s->hdr.kind_size - sizeof(struct shoal__array_hdr)) / sizeof(struct shoal__array_entry);
	if (h.ledger_cap < 1 || h.ledger_cap > cap_max)
		return -EBADMSG;
	/* The overflow: whole pages past the data, inside the file. Its
	 * pages may be holes; only those under its mark are ever touched. */
	if (h.ovf_cap > SHOAL__OVF_CAP_MAX ||
	    (h.ovf_cap && (h.ovf_off % SHOAL__DATA_ALIGN != 0 ||
			   h.ovf_off < data_end(&s->hdr) ||
			   !shoal__range_ok(h.ovf_off, (uint64_t)h.ovf_cap *
					    sizeof(struct shoal__array_entry), s->hdr.total_size))))
		return -EBADMSG;

	a->seg = s;
	a->hdr = s->kind_hdr;
	a->d.data = s->data;
	a->d.dtype = (int)h.dtype;
	a->d.itemsize = h.itemsize;
	a->d.ndim = (int)h.ndim;
	a->d.nbytes = nbytes;
	for (uint32_t i = 0; i < h.ndim; i++) {
		a->d.shape[i] = h.shape[i];
		a->d.strides[i] = (ssize_t)h.strides[i];
	}
	a->ledger_cap = h.ledger_cap;
	a->ovf_cap = h.ovf_cap;
	a->ovf = h.ovf_cap ? (struct shoal__array_entry *)((char *)s->base + h.ovf_off) : NULL;
	a->fork_gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);
	make_handle(a);
	return 0;
}

/* Under the lock: this process's reference, over from keys[0] when it
 * holds one, else a fresh one (keys[1] is this process). */
static int op_open(struct shoal_array *a, void *keys)
{
	const uint64_t *k = keys;

	if (k[0] && k[0] != k[1] && line_find(a, k[0]))
		return transfer_locked(a, k[0], k[1]);
	return hold_mode_locked(a, k[1], 1, HOLD_TAKE);
}

/* A struct for segment @s (which it owns from here, closing it on any
 * error), once the header passes array_check(); the detail names @name. */
static int array_of(const char *name, struct shoal_segment *s, struct shoal_array **out)
{
	struct shoal_array *a = calloc(1, sizeof(*a));
	int rc;

	if (!a) {
		shoal_segment_close(s);
		return -ENOMEM;
	}
	rc = array_check(a, s);
	if (rc) {
		shoal__fail(rc, "array '%s' is corrupt: its array header fails a check (dtype, "
			    "shape, strides or ledger)", name);
		a->seg = s;
		array_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

/*
 * Open @name, check the generation if @gen is not 0, and take a reference:
 * over from @from when it holds one (0: none), else a fresh one.
 */
static int array_open(const char *name, uint64_t gen, uint64_t from, unsigned int flags,
		      struct shoal_array **out)
{
	bool noref = flags & SHOAL_ARRAY_NOREF, rdonly = flags & SHOAL_RDONLY;
	struct shoal_segment *s;
	struct shoal_array *a;
	uint64_t keys[2];
	int rc;

	if (!out || (flags & ~(SHOAL_RDONLY | SHOAL_PREFAULT | SHOAL_ARRAY_NOREF)))
		return -EINVAL;
	/* A reference is a write to the ledger, so only an inspection maps
	 * everything read-only; a read-only attach protects the data alone. */
	rc = shoal__segment_open(name, SHOAL__KIND_ARRAY, sizeof(struct shoal__array_hdr),
				 (flags & SHOAL_PREFAULT) | (noref ? SHOAL_RDONLY : 0), &s);
	if (rc)
		return rc;
	rc = array_of(name, s, &a);
	if (rc)
		return rc;
	if (gen && s->hdr.generation != gen) {
		rc = shoal__fail(-ENOENT, "array '%s' of generation %016" PRIx64 " is gone (the "
				 "name now belongs to a newer array)", name, gen);
		array_free(a);
		return rc;
	}
	a->noref = noref;
	a->d.readonly = rdonly || noref;
	if (rdonly && !noref) {
		size_t off = s->hdr.data_off, end = data_end(&s->hdr);

		/* The data only: the overflow ledger past it stays writable. */
		if (end > s->map_size)
			end = s->map_size;
		if (mprotect((char *)s->base + off, end - off, PROT_READ) != 0) {
			rc = -errno;
			array_free(a);
			return rc;
		}
	}
	if (!noref) {
		keys[0] = from;
		keys[1] = shoal__self_key();
		if (!keys[1]) {
			array_free(a);
			return -EIO;
		}
		rc = locked_with_room(a, op_open, keys);
		if (rc) {
			array_free(a);
			return rc;
		}
		a->holder = keys[1];
		a->refs = 1;
	}
	*out = a;
	return 0;
}

/* Split "shoal:array:<name>@<16 hex>" into @name and @gen. */
static int parse_handle(const char *handle, char *name, uint64_t *gen)
{
	const char *p, *at;
	size_t len;
	char *end;

	if (!handle || strncmp(handle, SHOAL_HANDLE_PREFIX, strlen(SHOAL_HANDLE_PREFIX)) != 0)
		return shoal__fail(-EINVAL, "handle '%.64s' does not start with '"
				   SHOAL_HANDLE_PREFIX "'", handle ? handle : "(null)");
	p = handle + strlen(SHOAL_HANDLE_PREFIX);
	at = strrchr(p, '@');
	if (!at || strlen(at + 1) != 16)
		return shoal__fail(-EINVAL, "handle '%.64s' does not end in '@' and 16 hex digits",
				   handle);
	for (const char *c = at + 1; *c; c++)
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
			return shoal__fail(-EINVAL, "handle '%.64s': generation is not 16 "
					   "lower-case hex digits", handle);
	len = (size_t)(at - p);
	if (len == 0 || len > SHOAL_NAME_MAX)
		return shoal__fail(-EINVAL, "handle '%.64s': name of %zu bytes, not 1..%d",
				   handle, len, SHOAL_NAME_MAX);
	memcpy(name, p, len);
	name[len] = '\0';
	*gen = strtoull(at + 1, &end, 16);
	if (*gen == 0)
		return shoal__fail(-EINVAL, "handle '%.64s': generation 0", handle);
	return shoal__name_check(name);
}

SHOAL_API int shoal_array_attach(const char *handle, unsigned int flags, struct shoal_array **out)
{
	char name[SHOAL_NAME_MAX + 1];
	uint64_t gen;
	int rc;

	shoal__detail_clear();
	rc = parse_handle(handle, name, &gen);
	if (rc)
		return rc;
	if (flags & SHOAL_ARRAY_NOREF)
		return shoal__fail(-EINVAL, "array '%s': attach takes a reference; "
				   "SHOAL_ARRAY_NOREF is for shoal_array_open()", name);
	return array_open(name, gen, 0, flags, out);
}

int shoal__array_attach_from(const char *handle, uint64_t from, unsigned int flags,
			     struct shoal_array **out)
{
	char name[SHOAL_NAME_MAX + 1];
	uint64_t gen;
	int rc = parse_handle(handle, name, &gen);

	if (rc)
		return rc;
	if (flags & SHOAL_ARRAY_NOREF)
		return -EINVAL;
	return array_open(name, gen, from, flags, out);
}

SHOAL_API int shoal_array_open(const char *name, unsigned int flags, struct shoal_array **out)
{
	shoal__detail_clear();
	return array_open(name, 0, 0, flags, out);
}

int shoal__array_snapshot(const char *name, struct shoal_array **out)
{
	struct shoal_segment *s;
	struct shoal_array *a;
	uint32_t o;
	int rc;

	shoal__detail_clear();
	if (!out)
		return -EINVAL;
	rc = shoal__segment_snapshot(name, SHOAL__KIND_ARRAY, sizeof(struct shoal__array_hdr), &s);
	if (rc)
		return rc;
	rc = array_of(name, s, &a);
	if (rc)
		return rc;
	a->snapshot = true;
	a->noref = true;
	a->d.readonly = true;
	a->d.data = NULL;
	/* The overflow lines under the copy's mark (clamped as lines()
	 * clamps it), read now: what lines() will scan. array_check() has
	 * put the whole overflow inside the file. */
	o = atomic_load_explicit(&a->hdr->ovf_used, memory_order_relaxed);
	if (o > a->ovf_cap)
		o = a->ovf_cap;
	a->ovf = NULL;
	if (a->ovf_cap) {
		struct shoal__array_hdr h;

		memcpy(&h, s->kind_hdr, offsetof(struct shoal__array_hdr, lock));
		a->ovf = calloc(o ? o : 1, sizeof(*a->ovf));
		if (!a->ovf) {
			array_free(a);
			return -ENOMEM;
		}
		if (o)
			rc = shoal__segment_pread(s, a->ovf, (size_t)o * sizeof(*a->ovf), h.ovf_off);
		/* Only the lines read count: the copy's mark says as much.
		 * The copy has no holes (pread reads one as zeros): every line
		 * of it is verified, so no scan of it calls ovf_verify(). */
		a->ovf_cap = o;
		atomic_store_explicit(&a->ovf_ok, o, memory_order_relaxed);
		if (rc) {
			array_free(a);
			return rc;
		}
	}
	shoal__segment_snapshot_end(s);
	*out = a;
	return 0;
}

/* ---- creating -------------------------------------------------------- */

static int create_named(const char *name, uint64_t dtype, uint64_t itemsize, uint64_t ndim,
			const uint64_t *shape, const int64_t *strides, uint64_t nbytes,
			const struct shoal_opts *opts, uint64_t self, struct shoal_array **out)
{
	size_t cap = SHOAL__ARRAY_LEDGER_CAP;
	struct shoal__array_hdr *h;
	struct shoal_segment *s;
	struct shoal_array *a;
	int rc;

	a = calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	rc = shoal__segment_create_tail(name, SHOAL__KIND_ARRAY,
					sizeof(*h) + cap * sizeof(struct shoal__array_entry),
					nbytes ? nbytes : 1, SHOAL__ARRAY_OVF_BYTES, opts, &s);
	if (rc) {
		free(a);
		return rc;
	}
	h = s->kind_hdr; /* zeroed by fallocate */
	h->dtype = (uint32_t)dtype;
	h->itemsize = (uint32_t)itemsize;
	h->ndim = (uint32_t)ndim;
	h->nbytes = nbytes;
	for (uint64_t i = 0; i < ndim; i++) {
		h->shape[i] = shape[i];
		h->strides[i] = strides[i];
	}
	h->layout = SHOAL__ARRAY_LAYOUT;
	h->ledger_cap = (uint32_t)cap;
	h->ovf_cap = SHOAL__ARRAY_OVF_CAP;
	h->ovf_off = data_end(&s->hdr);
	shoal__lock_init(&h->lock);
	atomic_store_explicit(&h->state, SHOAL__ARRAY_ALIVE, memory_order_relaxed);
	/* The creator's reference, written before anyone can see the object
	 * (publish is a rename, which orders these stores for openers). */
	atomic_store_explicit(&h->ledger[0].key, self, memory_order_relaxed);
	atomic_store_explicit(&h->ledger[0].count, 1, memory_order_relaxed);
	atomic_store_explicit(&h->used, 1, memory_order_relaxed);

	rc = array_check(a, s);
	if (rc) {
		shoal__segment_abort(s);
		free(a);
		return rc;
	}
	rc = shoal__segment_publish(s);
	if (rc) {
		free(a);
		return rc;
	}
	a->holder = self;
	a->refs = 1;
	*out = a;
	return 0;
}

SHOAL_API int shoal_array_create(const char *name, int dtype, size_t itemsize, int ndim,
				 const size_t *shape, const struct shoal_opts *opts,
				 struct shoal_array **out)
{
	static _Atomic uint32_t counter;
	uint64_t shp[SHOAL_ARRAY_MAXDIM], nbytes, self;
	int64_t strides[SHOAL_ARRAY_MAXDIM];
	char anon[64];
	int rc;

	shoal__detail_clear();
	if (!out || !shape)
		return shoal__fail(-EINVAL, "array create: NULL %s", out ? "shape" : "out");
	if (ndim < 1 || ndim > SHOAL_ARRAY_MAXDIM)
		return shoal__fail(-EINVAL, "array '%s': ndim %d is not in 1..%d",
				   name ? name : "(anonymous)", ndim, SHOAL_ARRAY_MAXDIM);
	if (!dtype_known((uint64_t)(int64_t)dtype))
		return shoal__fail(-EINVAL, "array '%s': unknown dtype code %d",
				   name ? name : "(anonymous)", dtype);
	if (itemsize == 0 && dtype != SHOAL_DTYPE_RAW)
		itemsize = dtypes[dtype].size;
	for (int i = 0; i < ndim; i++)
		shp[i] = shape[i];
	rc = layout((uint64_t)dtype, itemsize, (uint64_t)ndim, shp, strides, &nbytes);
	if (rc == -EINVAL)
		return shoal__fail(rc, "array '%s': itemsize %zu for dtype %s: %s",
				   name ? name : "(anonymous)", itemsize, dtypes[dtype].name,
				   dtype == SHOAL_DTYPE_RAW ? "raw items have 1..2^31-1 bytes"
							    : "must be 0 or the dtype's size");
	if (rc == -EOVERFLOW)
		return shoal__fail(rc, "array '%s': shape of %d dimensions with %zu-byte items "
				   "overflows: more than 2^63-1 bytes",
				   name ? name : "(anonymous)", ndim, itemsize);
	if (rc)
		return rc;
	if (name && (rc = shoal__name_check(name)) != 0)
		return rc;
	self = shoal__self_key();
	if (!self)
		return -EIO;
	if (name)
		return create_named(name, (uint64_t)dtype, itemsize, (uint64_t)ndim, shp, strides,
				    nbytes, opts, self, out);
	/* Anonymous: pid and a counter make it unique among live processes,
	 * the random part across pid reuse. A clash is retried. */
	for (int tries = 0; tries < 8; tries++) {
		uint32_t rnd;

		shoal__random(&rnd, sizeof(rnd));
		snprintf(anon, sizeof(anon), "a.%x.%x.%08x", (unsigned)getpid(),
			 atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed), rnd);
		rc = create_named(anon, (uint64_t)dtype, itemsize, (uint64_t)ndim, shp, strides,
				  nbytes, opts, self, out);
		if (rc != -EEXIST)
			return rc;
	}
	return rc;
}

/* ---- references ------------------------------------------------------ */

/* Under the lock: one more reference for this struct (@self's). */
static int op_retain(struct shoal_array *a, void *self)
{
	uint64_t key = *(const uint64_t *)self;
	int rc;

	own_refs(a);
	if (a->refs == UINT32_MAX)
		return -EOVERFLOW;
	rc = hold_mode_locked(a, key, 1, HOLD_TAKE);
	if (!rc) {
		a->holder = key;
		a->refs++;
	}
	return rc;
}

SHOAL_API int shoal_array_retain(struct shoal_array *a)
{
	uint64_t self = shoal__self_key();

	shoal__detail_clear();
	if (!a || a->noref)
		return -EINVAL;
	if (!self)
		return -EIO;
	return locked_with_room(a, op_retain, &self);
}

SHOAL_API int shoal_array_pin(struct shoal_array *a)
{
	shoal__detail_clear();
	return shoal__array_hold(a, SHOAL__HOLDER_PIN_KEY);
}

SHOAL_API int shoal_array_unpin(struct shoal_array *a)
{
	shoal__detail_clear();
	return shoal__array_unhold(a, SHOAL__HOLDER_PIN_KEY);
}

/* Under the lock: a reference given to the process of key *@holder. */
static int op_give(struct shoal_array *a, void *holder)
{
	return hold_mode_locked(a, *(const uint64_t *)holder, 1, HOLD_GIVE);
}

SHOAL_API int shoal_array_hold_for(struct shoal_array *a, const struct shoal_proc *p)
{
	struct shoal_proc now;
	uint64_t key;
	int rc;

	shoal__detail_clear();
	if (!a || a->noref || !p)
		return -EINVAL;
	/* What a process key can hold: bit 63 stays 0 (internal.h). */
	if (p->pid <= 0 || p->pid >= (1 << SHOAL__PID_BITS) ||
	    p->start_time >= (UINT64_C(1) << (63 - SHOAL__PID_BITS)))
		return shoal__fail(-EINVAL, "array '%s': no process has pid %d and start time "
				   "%" PRIu64, a->seg->name, (int)p->pid, p->start_time);
	/* Dead now is refused; dying after this is what the reaper is for:
	 * the line then names a dead holder and is dropped. */
	rc = shoal_proc_get(p->pid, &now);
	if (rc == -ESRCH || (rc == 0 && now.start_time != p->start_time))
		return shoal__fail(-ESRCH, "array '%s': process %d (start time %" PRIu64 ") "
				   "is not alive", a->seg->name, (int)p->pid, p->start_time);
	if (rc)
		return rc;
	key = shoal__proc_key(p);
	return locked_with_room(a, op_give, &key);
}

/*
 * Whether a process holder is certainly gone, cheaply: its pid no longer
 * exists at all. One kill(pid, 0) instead of reading /proc, so a release
 * stays cheap with many holders; a zombie, or a pid already reused, reads
 * as alive here and is left for shoal_reap(), which looks closer.
 */
static bool holder_gone_fast(uint64_t key)
{
	pid_t pid = (pid_t)(key & ((UINT64_C(1) << SHOAL__PID_BITS) - 1));

	if (key & SHOAL__HOLDER_NONPROC || pid <= 0)
		return false;
	return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Under the lock: drop lines @at[i] if they still hold the keys @dead[i]
 * seen dead there (at their lines: no search per key, so a batch costs 64
 * line reads, not 64 scans of the ledger). */
static void drop_dead(struct shoal_array *a, const uint32_t *at, const uint64_t *dead, size_t n)
{
	uint32_t used = lines(a);
	uint64_t k;

	for (size_t i = 0; i < n; i++) {
		struct shoal__array_entry *e;

		if (at[i] >= used)
			continue;
		e = line_at(a, at[i]);
		if (line_count(e, &k) && k == dead[i])
			line_set(e, k, 0);
	}
}

/*
 * A process letting go of an array also takes back what dead processes
 * held on it, so the last live holder's release frees the array even when
 * workers were killed (a terminated Pool) and nobody runs shoal_reap().
 * The walk stops at the first holder that may be alive (then this release
 * cannot be the last; usually the first line, so one kill() per release
 * with thousands of holders); the dead before it are dropped, so no line
 * is judged twice by releases. Liveness is read outside the lock: dead is
 * forever (a key is never reused), so a key seen dead may be dropped later
 * under the lock.
 */
static int sweep_dead(struct shoal_array *a)
{
	uint64_t dead[64], k;
	uint32_t at[64];
	uint32_t used = lines(a);
	bool freed, any = false;
	size_t n = 0;
	int rc;

	for (uint32_t i = 0; i <= used; i++) {
		bool stop = i == used;

		if (!stop && line_count(line_at(a, i), &k)) {
			if (holder_gone_fast(k)) {
				at[n] = i;
				dead[n++] = k;
			}
			else
				stop = true;
		}
		if (n == 64 || (stop && (n || any))) {
			rc = ledger_lock_within(a, REAP_TIMEOUT_NS, &freed);
			if (rc)
				return 0; /* shoal_reap() will do it */
			drop_dead(a, at, dead, n);
			n = 0;
			any = true;
			if (stop || freed) {
				if (free_if_unheld(a))
					freed = true;
				return ledger_unlock(a, freed);
			}
			ledger_unlock(a, false);
		}
		if (stop)
			break;
	}
	return 0;
}

/* Drop @n of the references @a holds (all if n is 0). */
static int release_n(struct shoal_array *a, uint32_t n)
{
	bool freed;
	int rc, rc2;

	rc = ledger_lock(a, &freed);
	if (rc)
		return rc;
	own_refs(a);
	if (n == 0)
		n = a->refs;
	if (n == 0 || a->refs < n) {
		ledger_unlock(a, freed);
		return -EINVAL;
	}
	rc = unhold_locked(a, a->holder, n, &freed);
	/* Reaped already (we were thought dead?) or not: ours are gone. */
	a->refs -= n;
	rc2 = ledger_unlock(a, freed);
	if (rc == -ENOENT)
		rc = 0;
	if (!rc && !rc2 && shoal__array_count_of(a, a->holder) == 0)
		rc2 = sweep_dead(a);
	return rc ? rc : rc2;
}

SHOAL_API int shoal_array_release(struct shoal_array *a)
{
	shoal__detail_clear();
	if (!a || a->noref)
		return -EINVAL;
	return release_n(a, 1);
}

SHOAL_API int shoal_array_close(struct shoal_array *a)
{
	int rc = 0;

	if (!a)
		return 0;
	if (!a->noref) {
		own_refs(a);
		if (a->refs)
			rc = release_n(a, 0);
	}
	array_free(a);
	return rc;
}

/* ---- accessors ------------------------------------------------------- */

SHOAL_API const struct shoal_array_desc *shoal_array_desc(const struct shoal_array *a)
{
	return &a->d;
}

SHOAL_API void *shoal_array_data(const struct shoal_array *a)
{
	return a->d.data;
}

SHOAL_API int shoal_array_dtype(const struct shoal_array *a)
{
	return a->d.dtype;
}

SHOAL_API size_t shoal_array_itemsize(const struct shoal_array *a)
{
	return a->d.itemsize;
}

SHOAL_API int shoal_array_ndim(const struct shoal_array *a)
{
	return a->d.ndim;
}

SHOAL_API const size_t *shoal_array_shape(const struct shoal_array *a)
{
	return a->d.shape;
}

SHOAL_API const ssize_t *shoal_array_strides(const struct shoal_array *a)
{
	return a->d.strides;
}

SHOAL_API size_t shoal_array_nbytes(const struct shoal_array *a)
{
	return a->d.nbytes;
}

SHOAL_API const char *shoal_array_name(const struct shoal_array *a)
{
	return a->seg->name;
}

SHOAL_API bool shoal_array_is_readonly(const struct shoal_array *a)
{
	return a->d.readonly;
}

SHOAL_API unsigned int shoal_array_refs(const struct shoal_array *a)
{
	uint32_t gen = atomic_load_explicit(&shoal__fork_gen, memory_order_relaxed);

	return a->fork_gen == gen ? a->refs : 0;
}

SHOAL_API uint64_t shoal_array_refcount(const struct shoal_array *a)
{
	return ledger_total(a);
}

SHOAL_API bool shoal_array_is_freed(const struct shoal_array *a)
{
	return state_of(a) == SHOAL__ARRAY_FREED;
}

SHOAL_API int shoal_array_handle(const struct shoal_array *a, char *buf, size_t cap)
{
	size_t len;

	if (!a || !buf)
		return -EINVAL;
	len = strlen(a->handle);
	if (len + 1 > cap)
		return -ERANGE;
	memcpy(buf, a->handle, len + 1);
	return (int)len;
}

/*
 * Whether a holder may still use its references. Only a certain death
 * counts: the pid is gone or a zombie (-ESRCH), or it now belongs to a
 * process with another start time. When /proc cannot be read (-EIO: out of
 * file descriptors, say) the holder is taken to be alive: dropping a live
 * holder's references would free an array under it, keeping a dead one's
 * only delays a free until the next sweep.
 */
static bool holder_alive(uint64_t key)
{
	if (key & SHOAL__HOLDER_NONPROC)
		return true; /* queues are judged by the reaper, which can see them */
	return !shoal__key_dead(key);
}

static bool holder_alive_fn(uint64_t key, void *arg SHOAL__UNUSED)
{
	return holder_alive(key);
}

SHOAL_API int shoal_array_holders(const struct shoal_array *a, struct shoal_array_holder *out,
				  size_t cap)
{
	return shoal__array_holders_judged(a, out, cap, holder_alive_fn, NULL);
}

int shoal__array_holders_judged(const struct shoal_array *a, struct shoal_array_holder *out,
				size_t cap, bool (*alive)(uint64_t key, void *arg), void *arg)
{
	uint32_t used;
	int n = 0;
	uint64_t k;

	if (!a || (!out && cap))
		return -EINVAL;
	used = lines(a);
	for (uint32_t i = 0; i < used; i++) {
		uint32_t c = line_count(line_at(a, i), &k);
		struct shoal_proc p = { 0 };

		if (!c)
			continue;
		if ((size_t)n < cap) {
			if (!(k & SHOAL__HOLDER_NONPROC))
				shoal__proc_unkey(k, &p);
			out[n].key = k;
			out[n].pid = p.pid;
			out[n].count = c;
			out[n].alive = alive(k, arg);
		}
		n++;
	}
	return n;
}

/* ---- reaping (called by lib/reap.c) ---------------------------------- */

/*
 * The judge reads /proc for each process holder, so it runs outside the
 * lock (what it calls gone is gone for good: a dead process, a queue
 * generation no longer in the directory), and the lines it condemns are
 * dropped under the lock a chunk at a time, each only if it still holds
 * the key judged: a full ledger judged under the lock held it for most of
 * a second. Then the last hold frees what that emptied, or claims the
 * unlink of a freer that died.
 */
int shoal__array_reap(const char *name, shoal__judge_fn judge, void *arg, bool *ask_again)
{
	struct shoal_segment *s;
	struct shoal_array a = { 0 };
	uint32_t at[SHOAL__ARRAY_SWEEP_CHECKS], n = 0;
	uint64_t gone[SHOAL__ARRAY_SWEEP_CHECKS], freer, k;
	bool freed, noted = false;
	int rc = 0;

	*ask_again = false;
	if (shoal__segment_open(name, SHOAL__KIND_ARRAY, sizeof(struct shoal__array_hdr), 0, &s))
		return 0;
	if (array_check(&a, s) != 0) {
		shoal_segment_close(s);
		return 0;
	}
	for (uint32_t i = 0, used = lines(&a); i <= used; i++) {
		bool end = i == used;

		if (!end && line_count(line_at(&a, i), &k)) {
			switch (judge(k, arg)) {
			case SHOAL__GONE:
				at[n] = i;
				gone[n++] = k;
				break;
			case SHOAL__ASK_AGAIN:
				noted = true;
				break;
			case SHOAL__KEEP:
				break;
			}
		}
		if (n < SHOAL__ARRAY_SWEEP_CHECKS && !end)
			continue;
		if (ledger_lock_within(&a, REAP_TIMEOUT_NS, &freed) != 0)
			break; /* a live process keeps it locked: the next walk */
		drop_dead(&a, at, gone, n);
		n = 0;
		if (!end && !freed) {
			ledger_unlock(&a, false);
			continue;
		}
		if (free_if_unheld(&a)) {
			freed = true;
		} else if (state_of(&a) == SHOAL__ARRAY_FREED && !freed) {
			/* A freer that died before unlinking: claim its unlink. */
			freer = atomic_load_explicit(&a.hdr->freer, memory_order_relaxed);
			if (freer != shoal__self_key() && (!freer || !holder_alive(freer))) {
				atomic_store_explicit(&a.hdr->freer, shoal__self_key(),
						      memory_order_relaxed);
				freed = true;
			}
		}
		rc = ledger_unlock(&a, freed);
		*ask_again = noted && !rc;
		break;
	}
	shoal_segment_close(s);
	return rc;
}
