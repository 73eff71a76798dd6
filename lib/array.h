/*
 * array.h - the array's shared layout and its ledger, for the parts of
 * libshoal that hold array references on behalf of something that is not a
 * process (lib/queue_arrays.c: a queue with handles inside it), and for the
 * white-box tests. The holder keys its ledger stores are in internal.h;
 * what the reaper calls (shoal__array_reap) is in reap.h.
 */
#ifndef SHOAL_ARRAY_H
#define SHOAL_ARRAY_H

#include "internal.h"

/* ---- the shared layout ----------------------------------------------- */

/*
 * One ledger line. In use iff key != 0 && count != 0; the count store is
 * each operation's single commit point (see array.c). @given, of a process
 * holder's line: how many of its @count references another process put
 * there for it (shoal_array_hold_for()) and no struct of the holder has
 * taken yet; at most @count. It was padding before (0 in every line older
 * versions took: they zero nothing but what they use, so a line is
 * given a fresh 0 whenever it is taken).
 */
struct shoal__array_entry {
	shoal__atomic_u64 key;
	shoal__atomic_u32 count;
	shoal__atomic_u32 given;
};
_Static_assert(sizeof(struct shoal__array_entry) == 16, "ledger layout is ABI");

enum shoal__array_state {
	SHOAL__ARRAY_ALIVE = 1,
	SHOAL__ARRAY_FREED = 2,
};

/*
 * The array layout, in @layout of the kind header. 0 was the first one,
 * whose ledger lock was a glibc robust mutex: its bytes read as a lock
 * word would name a dead owner while a process of that layout held it, so
 * such an object is refused (-EPROTO), never locked. 1 had the first-page
 * ledger only: a process of that version would not see overflow lines, so
 * it is refused too (-EPROTO). 2 added the overflow ledger past the data;
 * its processes sweep a full ledger under the lock, a /proc read per line
 * (most of a second at 16384 lines, while every other holder waits), so it
 * is refused as well (-EPROTO). 3 adds @sweep_next: a full ledger is swept
 * in bounded chunks from where the last sweep stopped.
 */
#define SHOAL__ARRAY_LAYOUT 3u

/*
 * The kind header, at offset 128 of an array object. The fields above
 * @lock are written once before publish and never change; openers copy
 * them out once and validate the copy. Below @lock everything is guarded
 * by it (reads for display may go without it).
 */
struct shoal__array_hdr {
	uint32_t dtype;
	uint32_t itemsize;
	uint32_t ndim;
	uint32_t layout;                        /* SHOAL__ARRAY_LAYOUT */
	uint64_t nbytes;
	uint64_t shape[SHOAL_ARRAY_MAXDIM];
	int64_t strides[SHOAL_ARRAY_MAXDIM];
	uint32_t ledger_cap;                    /* lines in @ledger */
	uint32_t ovf_cap;                       /* lines in the overflow ledger */
	uint64_t ovf_off;                       /* its file offset: page aligned,
						   past the data (a hole until
						   used, see array.c) */
	uint64_t reserved1[3];
	struct shoal__lock lock;                /* the ledger lock (lib/lock.c) */
	char lock_pad[64 - sizeof(struct shoal__lock)];
	shoal__atomic_u32 state;                /* enum shoal__array_state */
	shoal__atomic_u32 used;                 /* lines at or past this were
						   never used: scans stop here
						   (a hint; clamped to the cap) */
	shoal__atomic_u64 freer;                /* key of who set FREED: it unlinks */
	shoal__atomic_u32 ovf_used;             /* as @used, for the overflow;
						   its pages below this are
						   reserved (clamped to ovf_cap,
						   and to the pages a process
						   finds reserved) */
	shoal__atomic_u32 sweep_next;           /* line where the next sweep of a
						   full ledger starts (a hint:
						   out of range reads as 0) */
	uint64_t reserved3[5];
	struct shoal__array_entry ledger[];
};
_Static_assert(offsetof(struct shoal__array_hdr, layout) == 12, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, nbytes) == 16, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, shape) == 24, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, strides) == 280, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, ledger_cap) == 536, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, lock) == 576, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, state) == 640, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, used) == 644, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, freer) == 648, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, ovf_cap) == 540, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, ovf_off) == 544, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, ovf_used) == 656, "array layout is ABI");
_Static_assert(offsetof(struct shoal__array_hdr, sweep_next) == 660, "array layout is ABI");
_Static_assert(SHOAL__ARRAY_LAYOUT == 3, "a change of the array header bumps its layout");
_Static_assert(offsetof(struct shoal__array_hdr, ledger) % 16 == 0, "ledger aligned");
_Static_assert(sizeof(struct shoal__array_hdr) == 704, "array layout is ABI");

/* Lines in the first-page ledger: the headers fill exactly the first page,
 * so an attach touches one page of metadata (measured: a second page is a
 * second fault, +15% on a 1 MiB hand-off) while 204 or fewer hold it. */
#define SHOAL__ARRAY_LEDGER_CAP \
	((SHOAL__DATA_ALIGN - SHOAL__HDR_SIZE - sizeof(struct shoal__array_hdr)) / \
	 sizeof(struct shoal__array_entry))
_Static_assert(SHOAL__ARRAY_LEDGER_CAP == 204, "the first-page ledger fills the page");
/* Lines in the overflow ledger, used once the first page is full: together
 * SHOAL_ARRAY_HOLDERS_MAX. Its pages (64 KiB per 4096 lines) are a hole in
 * the file until a holder first needs a line there. */
#define SHOAL__ARRAY_OVF_CAP (SHOAL_ARRAY_HOLDERS_MAX - SHOAL__ARRAY_LEDGER_CAP)
/* The most overflow lines an opener accepts (the file size bounds it too). */
#define SHOAL__OVF_CAP_MAX (1u << 24)
#define SHOAL__ARRAY_OVF_BYTES \
	((SHOAL__ARRAY_OVF_CAP * sizeof(struct shoal__array_entry) + SHOAL__DATA_ALIGN - 1) & \
	 ~(size_t)(SHOAL__DATA_ALIGN - 1))

/* ---- the process-local struct ---------------------------------------- */

struct shoal_array {
	struct shoal_array_desc d;      /* what shoal_array_desc() shows */
	struct shoal_segment *seg;
	struct shoal__array_hdr *hdr;   /* shared */
	uint32_t ledger_cap;            /* validated copy */
	uint32_t ovf_cap;               /* validated copy; 0: no overflow */
	struct shoal__array_entry *ovf; /* the overflow ledger (shared) */
	shoal__atomic_u32 ovf_ok;       /* overflow lines on pages this mapping
					   has found reserved (a prefix, whole
					   pages): scans past it check first */
	uint32_t refs;                  /* held by this struct; under the lock */
	uint32_t fork_gen;              /* shoal__fork_gen when @refs was last right */
	uint64_t holder;                /* whose references @refs are */
	bool readonly;
	bool noref;
	bool snapshot;                  /* shoal__array_snapshot(): @hdr and
					   @ovf are private copies, no data */
	char handle[SHOAL_HANDLE_MAX];
};

/* ---- the ledger, for holders that are not this process ---------------- */

/* +1 reference for @holder. -ENOENT once freed; as shoal_array_retain(). */
int shoal__array_hold(struct shoal_array *a, uint64_t holder);
/* -1 reference for @holder: 0, 1 if that freed the array, -ENOENT if
 * @holder holds none; -EDEADLK, SHOAL_EPOISONED. */
int shoal__array_unhold(struct shoal_array *a, uint64_t holder);
/* Move one reference from @from to @to in one critical section (a consumer
 * popping a handle takes over the queue's reference): 0, -ENOENT if @from
 * holds none; as shoal__array_hold() otherwise. */
int shoal__array_transfer(struct shoal_array *a, uint64_t from, uint64_t to);
/* Attach @handle taking over one of @from's references rather than adding
 * one: what a consumer does with a handle it popped. If @from holds none
 * (reaped, or the handle was copied), a fresh reference is taken instead,
 * and -ENOENT if the array is gone. */
int shoal__array_attach_from(const char *handle, uint64_t from, unsigned int flags,
			     struct shoal_array **out);
/* References @holder holds (0 if none); a snapshot. */
uint32_t shoal__array_count_of(const struct shoal_array *a, uint64_t holder);
/* Of them, how many were given to it (shoal_array_hold_for()) and not yet
 * taken by a struct of its own; a snapshot. */
uint32_t shoal__array_given_of(const struct shoal_array *a, uint64_t holder);

/*
 * Test hook: when set, called at numbered points inside the ledger's
 * critical sections (see array.c), so a test can SIGKILL a process there.
 */
extern void (*shoal__array_hook)(int point);
/* Test hook: when not 0, reserving an overflow page fails with this errno
 * instead of asking the kernel (a full /dev/shm without filling one). */
extern int shoal__array_reserve_fail;
/* Lines of processes a sweep of a full ledger judges per chunk: the most
 * it drops in one hold of the lock (array.c, "Making room"). */
#define SHOAL__ARRAY_SWEEP_CHECKS 64
enum shoal__array_hook_point {
	SHOAL__HOOK_LOCKED = 1,     /* lock taken, nothing written */
	SHOAL__HOOK_KEY_WRITTEN,    /* a new line's key written, count not */
	SHOAL__HOOK_COUNT_WRITTEN,  /* the commit store done */
	SHOAL__HOOK_FREED,          /* state set to FREED, name not unlinked */
	SHOAL__HOOK_UNLOCKED,       /* after unlock, before unlink */
	SHOAL__HOOK_OVF_RESERVED,   /* an overflow page reserved, its mark not moved */
};

#endif /* SHOAL_ARRAY_H */
