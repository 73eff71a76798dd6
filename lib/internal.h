/*
 * internal.h - what the parts of libshoal share and nobody else sees.
 */
#ifndef SHOAL_INTERNAL_H
#define SHOAL_INTERNAL_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "atomic.h"
#include "shoal.h"

#define SHOAL__UNUSED __attribute__((unused))
#define SHOAL__LIKELY(x) __builtin_expect(!!(x), 1)
#define SHOAL__UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- the segment header ------------------------------------------------ */

/* "SHOAL\0\0\1" read as a little-endian u64 would be fragile across
 * endianness; the magic is compared as bytes. */
/* Where objects live unless SHOAL_DIR says otherwise (see shoal__dir()). */
#define SHOAL__DEFAULT_DIR "/dev/shm"
/* The longest directory SHOAL_DIR may name, its trailing '/' and NUL
 * included; and a buffer for any path of a file in it. */
#define SHOAL__DIR_MAX 256u
#define SHOAL__PATH_MAX (SHOAL__DIR_MAX + 256u)
/* The private file a creator builds an object in before publishing it
 * (segment.c): "shoal..tmp.<pid>.<random>". A caller's name cannot hold
 * "..", so no object is ever named like this. */
#define SHOAL__TMP_PREFIX SHOAL_PREFIX ".tmp."
#define SHOAL__MAGIC "SHOALOBJ"
#define SHOAL__LAYOUT_VERSION 1u
#define SHOAL__HDR_SIZE 128u
/* Where data begins inside every object: one page, so data is page aligned
 * and the kind's own header (queue cursors, array shape) fits before it. */
#define SHOAL__DATA_ALIGN 4096u

enum shoal__kind {
	SHOAL__KIND_ANY = 0, /* to shoal__segment_peek(): what the header says */
	SHOAL__KIND_SEGMENT = 1,
	SHOAL__KIND_QUEUE = 2,
	SHOAL__KIND_ARRAY = 3,
	SHOAL__KIND_POOL = 4,
	SHOAL__KIND_MAX = 4,
};

/*
 * struct shoal__hdr - offset 0 of every shoal object. Written once by the
 * creator before the object is published (renamed into place); read-only
 * after that except @reserved, which later layout versions may use.
 * Openers copy it out once and validate the copy.
 */
struct shoal__hdr {
	char magic[8];          /* SHOAL__MAGIC */
	uint32_t version;       /* SHOAL__LAYOUT_VERSION */
	uint32_t kind;          /* enum shoal__kind */
	uint64_t total_size;    /* bytes in the object, == fstat size */
	uint64_t kind_off;      /* the kind's header: == SHOAL__HDR_SIZE */
	uint64_t kind_size;     /* bytes of the kind's header */
	uint64_t data_off;      /* first data byte, SHOAL__DATA_ALIGN aligned */
	uint64_t data_size;     /* data bytes; data_off + data_size <= total */
	uint64_t generation;    /* random, never 0: tells apart objects that
				   had the same name at different times */
	uint64_t creator_start; /* creator's struct shoal_proc */
	int32_t creator_pid;
	uint32_t creator_uid;
	uint64_t created_ns;    /* CLOCK_REALTIME at create */
	uint64_t reserved[5];
};
_Static_assert(sizeof(struct shoal__hdr) == SHOAL__HDR_SIZE, "header size is ABI");
_Static_assert(offsetof(struct shoal__hdr, version) == 8, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, kind) == 12, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, total_size) == 16, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, data_off) == 40, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, generation) == 56, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, creator_pid) == 72, "header layout is ABI");
_Static_assert(offsetof(struct shoal__hdr, created_ns) == 80, "header layout is ABI");

/* The process-local handle of a mapped object. */
struct shoal_segment {
	void *base;             /* the whole mapping, header included */
	size_t map_size;
	struct shoal__hdr hdr;  /* validated copy */
	void *kind_hdr;         /* base + hdr.kind_off */
	void *data;             /* base + hdr.data_off */
	unsigned int flags;     /* SHOAL_RDONLY, SHOAL_PREFAULT */
	bool published;         /* false between create and publish */
	/* A snapshot (shoal__segment_snapshot): @base is private memory
	 * holding the headers read with pread, @data is NULL, and @fd stays
	 * open until shoal__segment_snapshot_end() (-1 after it). */
	bool snapshot;
	int fd;
	char tmp_name[64];      /* the private name before publish */
	char name[SHOAL_NAME_MAX + 1];
};

/* ---- error detail (lib/error.c) ------------------------------------------- */

/*
 * Record why the call fails (printf-style, one line, truncated to
 * SHOAL_ERRDETAIL_MAX) for shoal_errdetail(), and return @rc, so an error
 * site reads "return shoal__fail(-EINVAL, "...", ...);".
 */
int shoal__fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Forget the detail: called on entry by every public call that can record
 * one, so after it the detail describes that call or is empty. One store. */
extern __thread int shoal__detail_code __attribute__((tls_model("initial-exec")));
static inline void shoal__detail_clear(void)
{
	shoal__detail_code = 0;
}
/* The word for an object kind in details: "segment", "queue", ... */
const char *shoal__kind_name(uint32_t kind);

/* Validate a caller's name: 0 or -EINVAL (with a detail naming the rule). */
int shoal__name_check(const char *name);

/* Write "<dir>/shoal.<name>" into @buf (SHOAL__PATH_MAX bytes): 0, -EINVAL
 * for a bad name, or the error of a refused SHOAL_DIR (shoal__dir()). */
#define SHOAL__FILE_MAX (sizeof(SHOAL_PREFIX) + SHOAL_NAME_MAX)
int shoal__file_name(char *buf, size_t cap, const char *name);

/*
 * The directory every object of this process lives in, with a trailing
 * '/': $SHOAL_DIR, else /dev/shm. Read and checked once per process (the
 * first call; children inherit it), so it cannot change under a live
 * object. NULL when SHOAL_DIR is set and refused: the detail is then
 * recorded again (shoal__path() and shoal_dir() return its code).
 */
const char *shoal__dir(void);
/* Write "<dir>/<file>" into @buf: 0, or the error of a refused SHOAL_DIR,
 * or -ENAMETOOLONG. */
int shoal__path(char *buf, size_t cap, const char *file);

/*
 * Create an object of @kind, not yet visible under @name: the caller fills
 * the kind's header (zeroed, @kind_size bytes at seg->kind_hdr) and then
 * calls shoal__segment_publish(), or shoal__segment_abort() on failure.
 */
int shoal__segment_create(const char *name, enum shoal__kind kind, size_t kind_size,
			  size_t data_size, const struct shoal_opts *opts,
			  struct shoal_segment **out);
/*
 * As shoal__segment_create(), with a tail of @tail_size bytes past the data
 * (from the next page on) that is sized but not reserved: a hole in the
 * file, so a full /dev/shm cannot SIGBUS at create and an unused tail costs
 * no memory. Its owner reserves a page before writing to it (an array's
 * overflow ledger, array.c). Prefaulting never touches it.
 */
int shoal__segment_create_tail(const char *name, enum shoal__kind kind, size_t kind_size,
			       size_t data_size, size_t tail_size, const struct shoal_opts *opts,
			       struct shoal_segment **out);
/* Make a created object visible under its name: 0 or -EEXIST. On failure
 * the object is destroyed and the handle freed. */
int shoal__segment_publish(struct shoal_segment *s);
/* Destroy an unpublished object and free the handle. */
void shoal__segment_abort(struct shoal_segment *s);
/* Open and validate an object that must be of @kind, with a kind header of
 * at least @kind_min bytes. Returns as shoal_segment_open(). */
int shoal__segment_open(const char *name, enum shoal__kind kind, size_t kind_min,
			unsigned int flags, struct shoal_segment **out);
/*
 * Read the common header of object @name, whatever its kind, into @out,
 * validated as shoal__segment_open() validates it (the kind only checked
 * to be one this library knows). Nothing is mapped: an open, a read of
 * 128 bytes, a close. Returns as shoal__segment_open(), never -EPROTOTYPE.
 */
int shoal__segment_peek(const char *name, struct shoal__hdr *out);
/*
 * An observer's look at array @name: its headers, first-page ledger and the
 * overflow lines under its mark, read with pread into private memory (no
 * mapping, no reference, no file kept open), so a file truncated or
 * rewritten meanwhile cannot stop the caller with SIGBUS: that is -EBADMSG
 * "truncated while read". Overflow pages that are holes read as zeros, so
 * an overflow mark past the reserved pages cannot either. The accessors
 * and shoal_array_holders() read the copy; shoal_array_data() is NULL;
 * shoal_array_close() frees it. Returns as shoal_array_open(NOREF).
 */
int shoal__array_snapshot(const char *name, struct shoal_array **out);
/*
 * What observers read instead of a mapping: a copy, so a file truncated
 * (or rewritten) under them cannot stop them with SIGBUS or change a field
 * between two reads. Opens @name as shoal__segment_open() does (the same
 * checks), reads the common and kind headers ([0, kind_off + kind_size),
 * at most SHOAL__SNAPSHOT_KIND_MAX bytes) with pread into private memory,
 * and keeps the file open for shoal__segment_pread() until
 * shoal__segment_snapshot_end() or shoal_segment_close(). Returns as
 * shoal__segment_open(); -EBADMSG also for a kind header bigger than that
 * and for a file that ends before the headers do (truncated meanwhile).
 */
#define SHOAL__SNAPSHOT_KIND_MAX (1u << 20)
/* Test hook: when set, called inside shoal__segment_snapshot() with 1 once
 * the common header is read and checked, 2 once the kind header is read,
 * so a test can truncate the file exactly there. */
extern void (*shoal__snapshot_hook)(const char *name, int stage);
int shoal__segment_snapshot(const char *name, enum shoal__kind kind, size_t kind_min,
			    struct shoal_segment **out);
/* Read @len bytes at file offset @off of a snapshot's object into @buf.
 * 0; -EBADMSG (with a detail naming the object) if the range is outside
 * what its header says or the file now ends before it: truncated since it
 * was opened; -EBADF after shoal__segment_snapshot_end(); -errno of pread. */
int shoal__segment_pread(struct shoal_segment *s, void *buf, size_t len, uint64_t off);
/* Close a snapshot's file: its copy stays. */
void shoal__segment_snapshot_end(struct shoal_segment *s);
/*
 * Call @fn on every "shoal.*" entry of the directory (shoal__dir(); its
 * file name: prefix included, not yet validated) and add up what the calls
 * return. -errno (-ENOMEM, -ENOENT, else -EACCES) if the directory cannot
 * be read; the error of a refused SHOAL_DIR.
 */
int shoal__each_object(int (*fn)(const char *file, void *arg), void *arg);
/* Unlink "shoal..tmp.<pid>.*", what process @pid left of a create it died
 * in (lib/segment.c); how many. Call only while @pid is pinned (alive, or
 * a zombie not yet joined), or another process may by then own the pid and
 * its files. shoal__tmp_reap() is the same for any pid seen dead. */
int shoal__unlink_tmp_of(pid_t pid);
/* The creator pid in a temporary file's name ("shoal..tmp.<pid>.*"), or 0
 * if @file is not one: the one parse the reaper, shoal_leaks() and the CLI
 * share. */
pid_t shoal__tmp_pid(const char *file);
/* Replace in @s every byte a terminal could take for control (below 0x20,
 * 0x7f and up) with '?': for names anyone could have made. */
void shoal__printable(char *s);

/* Overflow-safe "off + len <= size". */
static inline bool shoal__range_ok(uint64_t off, uint64_t len, uint64_t size)
{
	return off <= size && len <= size - off;
}

/* ---- processes ----------------------------------------------------------- */

/*
 * A process identity packed into one 64-bit word, so it can be stored and
 * compared-and-swapped atomically in shared memory: pid in the low 22 bits
 * (PID_MAX_LIMIT is 2^22), start time in ticks in the high 42 (1300 years at
 * 100 Hz). 0 is never a valid key.
 */
#define SHOAL__PID_BITS 22
uint64_t shoal__proc_key(const struct shoal_proc *p);
void shoal__proc_unkey(uint64_t key, struct shoal_proc *out);
/*
 * Whether the process @key names is certainly gone: exited (zombies
 * included) or its pid now another process's. False when /proc cannot be
 * read, and for key 0. Everything that takes back what a dead process held
 * asks this, never shoal_proc_is_alive(): a live process judged dead would
 * lose what it holds while still using it; a dead one judged alive only
 * waits for a later look.
 */
bool shoal__key_dead(uint64_t key);
/* The caller's key; cheap (cached, renewed after fork). */
uint64_t shoal__self_key(void);
/* Bumped in every forked child: a handle that registered itself somewhere
 * under the parent's identity compares this to know it must register anew. */
extern _Atomic uint32_t shoal__fork_gen;

/*
 * Holder keys: who holds an array reference (a line of its ledger). A
 * process holds under shoal__self_key(): pid in the low 22 bits, start time
 * in ticks above; start times stay below 2^41 ticks (700 years at 100 Hz),
 * so bit 63 of a process key is always 0. Bit 63 set means "not a process",
 * and bits 62..60 say what:
 *   QUEUE: handles in transit inside the queue whose common-header
 *          generation has these low 60 bits (lib/queue_arrays.c). Gone when
 *          no queue in /dev/shm has that generation any more (lib/reap.c).
 *   PIN:   the name itself holds a reference until someone unlinks it
 *          (shoal.SharedMemory's create/unlink semantics). Never reaped.
 * The array stores them, arrays in queues make queue keys, the reaper
 * judges them, the CLI shows them.
 */
#define SHOAL__HOLDER_NONPROC (UINT64_C(1) << 63)
#define SHOAL__HOLDER_KIND_SHIFT 60
#define SHOAL__HOLDER_KIND_MASK (UINT64_C(7) << SHOAL__HOLDER_KIND_SHIFT)
#define SHOAL__HOLDER_ID_MASK ((UINT64_C(1) << SHOAL__HOLDER_KIND_SHIFT) - 1)
enum shoal__holder_kind {
	SHOAL__HOLDER_QUEUE = 1,
	SHOAL__HOLDER_PIN = 2,
};

static inline uint64_t shoal__holder_queue(uint64_t queue_generation)
{
	return SHOAL__HOLDER_NONPROC | ((uint64_t)SHOAL__HOLDER_QUEUE << SHOAL__HOLDER_KIND_SHIFT) |
	       (queue_generation & SHOAL__HOLDER_ID_MASK);
}

#define SHOAL__HOLDER_PIN_KEY \
	(SHOAL__HOLDER_NONPROC | ((uint64_t)SHOAL__HOLDER_PIN << SHOAL__HOLDER_KIND_SHIFT))

/* What a non-process key names (enum shoal__holder_kind; other values are
 * kinds of later versions). */
static inline uint64_t shoal__holder_kind_of(uint64_t key)
{
	return (key & SHOAL__HOLDER_KIND_MASK) >> SHOAL__HOLDER_KIND_SHIFT;
}

/* shoal_array_holders() with the liveness of each process holder judged by
 * @alive (lib/array.c): a caller that reads many ledgers (the shoal tool)
 * asks /proc once per process, not once per line. */
int shoal__array_holders_judged(const struct shoal_array *a, struct shoal_array_holder *out,
				size_t cap, bool (*alive)(uint64_t key, void *arg), void *arg);

/* ---- time and waiting (lib/futex.c) -------------------------------------- */

uint64_t shoal__now_ns(void);      /* CLOCK_MONOTONIC */
uint64_t shoal__realtime_ns(void); /* CLOCK_REALTIME */
/* A deadline for a shoal timeout: 0 = try once, < 0 = forever (UINT64_MAX). */
uint64_t shoal__deadline(int64_t timeout_ns);
/* lib/pool_spawn.c: the hooks gate made anew in a fork's child (proc.c). */
void shoal__pool_hooks_forked(void);

/*
 * Sleep while *@addr == @val, until woken, until the absolute
 * CLOCK_MONOTONIC @deadline_ns (UINT64_MAX: none), or a signal.
 * Return: 0 when woken, -EAGAIN if *@addr != @val already, -ETIMEDOUT,
 * -EINTR.
 */
int shoal__futex_wait(shoal__atomic_u32 *addr, uint32_t val, uint64_t deadline_ns);
/* Wake up to @n sleepers on @addr (INT32_MAX: all). Returns how many. */
int shoal__futex_wake(shoal__atomic_u32 *addr, int n);

/* ---- shoal's lock word (lib/lock.c) --------------------------------------- */

/*
 * struct shoal__lock - a mutual-exclusion lock that may live in a segment.
 * @owner:   0 = free, else the holder's process key; the CAS that takes the
 *           lock writes it, so a held lock always names its holder.
 * @word:    what waiters sleep on (a futex); bumped by releases.
 * @waiters: processes or threads (about to be) asleep on @word.
 * Every byte pattern is a legal state: an owner that is not a live process
 * is taken over, a live one is waited for until the caller's deadline.
 * Zeroed bytes are an unlocked lock.
 */
struct shoal__lock {
	shoal__atomic_u64 owner;
	shoal__atomic_u32 word;
	shoal__atomic_u32 waiters;
};

/* Make @l a free lock (zeroed memory already is one). */
void shoal__lock_init(struct shoal__lock *l);
/*
 * shoal__lock_acquire - take @l, waiting at most @timeout_ns.
 * @timeout_ns: 0 = try once (still takes over a dead owner), < 0 = no
 *              deadline (liveness is still rechecked every slice).
 *
 * Threads of one process exclude each other too; never re-entrant.
 * Return: 0 when taken; 1 when taken over from a dead owner (or an owner
 * that no process can be): the caller repairs what it left; -EAGAIN when
 * @timeout_ns is 0 and a live process holds it; -ETIMEDOUT when the
 * deadline passed with a live holder; -EIO when this process cannot learn
 * its own key (/proc unreadable). Blocking, bounded by @timeout_ns.
 */
int shoal__lock_acquire(struct shoal__lock *l, int64_t timeout_ns);
/* Release @l, which the caller holds. One exchange; a futex wake only if
 * someone waits. */
void shoal__lock_release(struct shoal__lock *l);
/* Whether a lock held by @owner will never be released by it: the process
 * is gone, or @owner cannot be a process key (pid 0). False for 0. */
bool shoal__lock_owner_dead(uint64_t owner);

/* Fill @buf with random bytes (getrandom, falling back to time and pid). */
void shoal__random(void *buf, size_t len);

/* ---- a pool's objects in /dev/shm (lib/pool_objects.c) -------------------- */

/* Reap the default-named pool boards ("pool.<pid>.<hex>") of dead
 * supervisors, with their task and result segments: shoal_reap()'s work
 * for them alone, cheap enough for every shoal_pool_create(). How many
 * objects went, or -errno if /dev/shm cannot be read. */
int shoal__reap_pools(void);

/* ---- queue (lib/queue.c) ------------------------------------------------- */

/* The queue's generation (its common header's): names it as an array holder. */
uint64_t shoal__queue_generation(const struct shoal_queue *q);
/* shoal_queue_create() with a participant table of @participants entries
 * (1..SHOAL_QUEUE_PARTICIPANTS_MAX) instead of SHOAL_QUEUE_PARTICIPANTS:
 * the format is sized at create; tests use small and full-size tables. */
int shoal__queue_create(const char *name, uint32_t capacity, uint32_t max_msg,
			uint32_t participants, const struct shoal_opts *opts,
			struct shoal_queue **out);
/* shoal_queue_unlink() without its last step (dropping the references the
 * queue held, lib/queue_arrays.c): open, unlink, detach. As shoal_unlink(),
 * and as shoal_queue_open() when @name is not a queue. */
int shoal__queue_unlink(const char *name);
/* shoal_queue_push_many() of @n messages each at its own address, @msgs[i]
 * (a gather: copied straight into the claimed slots). Same errors; NULL
 * entries are read only when their length is not 0. */
ssize_t shoal__queue_push_gather(struct shoal_queue *q, const void *const *msgs,
				 const size_t *lens, size_t n, int64_t timeout_ns);

/* Test hook: when set, called at the named points inside push, pop, the
 * batch calls, claim, ack, nack and recovery, so tests can kill a process exactly there. NULL in production. */
enum shoal__queue_point {
	SHOAL__QP_PUSH_CLAIMED = 1, /* slot claimed, tail not yet advanced */
	SHOAL__QP_PUSH_WRITTEN,     /* half the payload written, not published */
	SHOAL__QP_POP_CLAIMED,      /* slot claimed, head not yet advanced */
	SHOAL__QP_POP_COPIED,       /* message copied out, slot not released */
	SHOAL__QP_RECOVER_FIXED,    /* recovery repaired one slot, lock held */
	SHOAL__QP_POP_RELEASED,     /* pop released its slot, producers not woken */
	SHOAL__QP_ACK_CHECKED,      /* ack found its claim, slot not released */
	SHOAL__QP_ACK_RELEASED,     /* ack released the slot, producers not woken */
	SHOAL__QP_NACK_LOCKED,      /* nack holds the lock, claim not yet orphaned */
	SHOAL__QP_NACK_ORPHANED,    /* nack made the orphan, count not raised */
	SHOAL__QP_PUSH_SPAN_PUBLISHED, /* push_many published all but its first slot */
	SHOAL__QP_POP_SPAN_RELEASED,   /* pop_many released all but its first slot */
};
extern void (*shoal__queue_hook)(enum shoal__queue_point where);

#endif /* SHOAL_INTERNAL_H */
