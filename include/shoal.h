/*
 * shoal.h - share big buffers between processes on one Linux machine.
 *
 * The one public header of libshoal. Conventions, for every function below:
 *  - An action returns 0 (or a count) on success and a negative errno value
 *    on failure; constructors hand the object back through an out parameter,
 *    which is left untouched on failure. Predicates return bool.
 *  - Codes at or above SHOAL_ERRBASE are shoal's own; shoal_strerror() names
 *    every code either kind.
 *  - The library never prints, never calls exit(), and installs no signal
 *    handler.
 *  - Names are the caller's part of a POSIX shm name: 1 to SHOAL_NAME_MAX
 *    bytes of printable ASCII without '/', never containing "..". Objects
 *    live in /dev/shm as "shoal.<name>".
 */
#ifndef SHOAL_H
#define SHOAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <shoal/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SHOAL_BUILDING) && defined(__GNUC__)
#define SHOAL_API __attribute__((visibility("default")))
#else
#define SHOAL_API
#endif

/* ------------------------------------------------------------------ */
/* Errors and version                                                  */
/* ------------------------------------------------------------------ */

/** Codes at or above this are shoal's own (errno values stay below 4096). */
#define SHOAL_ERRBASE 4096

enum shoal_error {
	/** A pool worker died (signal or exit) while running the task. */
	SHOAL_EWORKERLOST = SHOAL_ERRBASE + 1,
	/** The object was left inconsistent by a process that died inside a
	 *  critical section, and could not be repaired. No call of this
	 *  version returns it (shoal's own locks always repair); the value
	 *  stays reserved. */
	SHOAL_EPOISONED = SHOAL_ERRBASE + 2,
};

/**
 * shoal_strerror() - describe an error code.
 * @err: a code as returned by any shoal function, negative or positive.
 *
 * Shoal gives some errno values a meaning of its own (-EBADMSG is a corrupt
 * object, -EPROTO an unknown layout version, -EPROTOTYPE the wrong kind of
 * object) and says so here; other errno values read as strerror() does.
 *
 * Thread-safe; never fails.
 *
 * Return: a static string, never NULL.
 */
SHOAL_API const char *shoal_strerror(int err);

/** Longest error detail, terminating NUL included (longer ones are cut). */
#define SHOAL_ERRDETAIL_MAX 512

/**
 * shoal_errdetail() - why the last call in this thread failed with @err.
 * @err: the code the call returned, negative or positive.
 *
 * Where an error code alone cannot say what was wrong, the failing call
 * also records one line naming the object, the argument and the rule, e.g.
 * "queue 'jobs': capacity 1000 is not a power of two (2..16777216)" or
 * "array 'a.1.2.3': holder ledger full (16384 live holders)". This returns it
 * while it is the explanation of @err: a record made for another code is
 * never returned. The calls that can record one clear the record on entry,
 * so right after one of them it describes that call or is empty: create,
 * open, attach and unlink of segments, queues and arrays; queue push and pop
 * (single and batch); array retain, release, pin, unpin and hold_for;
 * shoal_queue_hold_array(), shoal_queue_unhold_array() and
 * shoal_queue_attach_array(). Other calls leave it as it was.
 * Thread-local: other threads' calls do not touch it. Never fails.
 *
 * Return: the explanation, valid until the next shoal call in this thread;
 * "" (never NULL) when none was recorded for @err.
 */
SHOAL_API const char *shoal_errdetail(int err);

/**
 * shoal_version() - the version of the library that is loaded.
 *
 * Compare with SHOAL_VERSION_STRING to catch a header/library mismatch.
 *
 * Return: "MAJOR.MINOR.PATCH", a static string.
 */
SHOAL_API const char *shoal_version(void);

/**
 * shoal_dir() - the directory this process's objects live in.
 * @out: set to the directory, without a trailing '/' (a static string).
 *
 * The environment variable SHOAL_DIR names it; unset or empty, it is
 * /dev/shm. It is read once per process, at the first call that needs it
 * (children inherit the choice): setting SHOAL_DIR later changes nothing.
 * Every process that shares objects must use the same directory; handles
 * do not carry it, so attaching from a process with another directory is
 * -ENOENT. A directory set by SHOAL_DIR must be an absolute path of a
 * directory, on tmpfs or hugetlbfs (memory a reboot clears), that only its
 * owner may write unless it has the sticky bit. When it is refused, every
 * call that names, creates, lists or reaps an object returns this
 * function's error, with the same detail (shoal_errdetail()). Bindings and
 * tools ask this rather than reading SHOAL_DIR themselves. Thread-safe.
 *
 * Return: 0; -EINVAL for a NULL @out, or a SHOAL_DIR that is not absolute,
 * longer than 254 bytes or not on tmpfs or hugetlbfs; -ENOENT if it does
 * not exist; -ENOTDIR if it is not a directory; -EACCES if others may
 * write to it and it has no sticky bit, or it cannot be looked at.
 */
SHOAL_API int shoal_dir(const char **out);

/* ------------------------------------------------------------------ */
/* Process identity and liveness (lib/proc.c)                          */
/* ------------------------------------------------------------------ */

/**
 * struct shoal_proc - a process, told apart from any later process that
 * reuses its pid.
 * @pid: the process id.
 * @start_time: when it started, in clock ticks since boot (field 22 of
 *              /proc/PID/stat). Two processes with one pid never share it.
 */
struct shoal_proc {
	pid_t pid;
	uint64_t start_time;
};

/**
 * shoal_proc_self() - the identity of the calling process.
 * @out: filled on success.
 *
 * Cached after the first call and renewed in a forked child.
 * Thread-safe.
 *
 * Return: 0, or -EIO if /proc could not be read.
 */
SHOAL_API int shoal_proc_self(struct shoal_proc *out);

/**
 * shoal_proc_get() - the identity of a running process.
 * @pid: a process id, > 0.
 * @out: filled on success.
 *
 * Thread-safe.
 *
 * Return: 0; -EINVAL for pid <= 0 or NULL @out; -ESRCH if no such process
 * runs (a zombie counts as gone); -EIO if /proc could not be parsed.
 */
SHOAL_API int shoal_proc_get(pid_t pid, struct shoal_proc *out);

/**
 * shoal_proc_is_alive() - whether the process @p names still runs.
 * @p: an identity from shoal_proc_self() or shoal_proc_get(), possibly
 *     read back from shared memory.
 *
 * False for a process that exited (zombies included: a killed process that
 * its parent has not reaped yet runs no code), and for a different process
 * that now has the same pid. Costs one read of /proc/PID/stat.
 * Thread-safe.
 *
 * Return: true if it runs, false otherwise (also for a NULL or zero @p).
 */
SHOAL_API bool shoal_proc_is_alive(const struct shoal_proc *p);

/* ------------------------------------------------------------------ */
/* Named shared segments (lib/segment.c)                               */
/* ------------------------------------------------------------------ */

/** Longest name a caller may give (the "shoal." prefix is not counted). */
#define SHOAL_NAME_MAX 200

/** The prefix every shoal object has in its directory (shoal_dir()). */
#define SHOAL_PREFIX "shoal."

/* Flags for struct shoal_opts.flags and shoal_segment_open(). */
/** Map read-only (PROT_READ): writes fault. Open only. */
#define SHOAL_RDONLY 0x1u
/** Fault every page in at map time (MAP_POPULATE). */
#define SHOAL_PREFAULT 0x2u

/**
 * struct shoal_opts - options for creating an object.
 * @mode: permission bits; 0 means 0600. Group or world write bits are
 *        refused (-EINVAL): openers refuse such objects as hostile. The mode
 *        is set with fchmod(), so the umask neither widens nor narrows it.
 * @flags: SHOAL_PREFAULT.
 *
 * A NULL pointer wherever options are taken means all defaults.
 */
struct shoal_opts {
	unsigned int mode;
	unsigned int flags;
};

struct shoal_segment;

/**
 * shoal_segment_create() - create a new named segment of @size bytes.
 * @name: see the naming rules at the top of this header.
 * @size: bytes of data, > 0.
 * @opts: NULL for defaults.
 * @out: the new segment, mapped read-write, its data zeroed.
 *
 * The object is a file in shoal_dir() (/dev/shm unless SHOAL_DIR says
 * otherwise). Its memory is reserved at once, so a full mount is -ENOSPC
 * here rather than SIGBUS on a later write: posix_fallocate for a small
 * object; from 16 MiB on, every page is written in the kernel
 * (MADV_POPULATE_WRITE) by up to one thread per CPU, joined before this
 * returns, so the first writes to the data take no page fault. The object
 * is built under a private name and published by an atomic rename, so no
 * opener ever sees it half made. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name, size 0, NULL @out, unknown flags, or a
 * mode with group or world write bits or without owner read and write;
 * -EOVERFLOW if @size plus the header overflows; -EEXIST if the name is
 * taken; -ENOSPC if the directory's mount has no room (the detail names the
 * size asked, the directory and its free space; on a hugetlbfs, the free
 * huge pages of the system's pool); -ENOMEM if the mapping
 * cannot be made; -EMFILE, -ENFILE; -EACCES if the directory refuses us;
 * -EIO if /proc cannot tell who we are; the errors of shoal_dir() when
 * SHOAL_DIR is refused.
 */
SHOAL_API int shoal_segment_create(const char *name, size_t size, const struct shoal_opts *opts,
				   struct shoal_segment **out);

/**
 * shoal_segment_open() - open and map an existing segment.
 * @name: as given to shoal_segment_create().
 * @flags: SHOAL_RDONLY, SHOAL_PREFAULT.
 * @out: the segment.
 *
 * The object is untrusted input: everything in its header is checked
 * against the file before use. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name, unknown flags or NULL @out; -ENOENT if
 * there is no such object; -EACCES if it belongs to another user, is group
 * or world writable, or the mode forbids the access; -EBADMSG if it is not a
 * regular file, is too short, or its header is corrupt or disagrees with the
 * file's size; -EPROTO for a layout version this library does not know;
 * -EPROTOTYPE if it is a shoal object of another kind (a queue, an array);
 * -ENOMEM; -EMFILE, -ENFILE.
 */
SHOAL_API int shoal_segment_open(const char *name, unsigned int flags, struct shoal_segment **out);

/**
 * shoal_segment_close() - unmap a segment and free the handle.
 * @s: the segment, or NULL (then nothing happens).
 *
 * The object itself stays until shoal_unlink(). Pointers into the data are
 * invalid afterwards. Not to be called concurrently with other uses of @s.
 *
 * Return: 0 (it cannot fail; the int is for symmetry with the other kinds).
 */
SHOAL_API int shoal_segment_close(struct shoal_segment *s);

/**
 * shoal_segment_data() - the first byte of the segment's data.
 * @s: the segment.
 *
 * Aligned to 4096 bytes. Wait-free.
 *
 * Return: the address, valid until shoal_segment_close().
 */
SHOAL_API void *shoal_segment_data(const struct shoal_segment *s);

/**
 * shoal_segment_size() - bytes of data, as given at create.
 * @s: the segment.
 *
 * Return: the size.
 */
SHOAL_API size_t shoal_segment_size(const struct shoal_segment *s);

/**
 * shoal_segment_name() - the name the segment was created or opened with.
 * @s: the segment.
 *
 * Return: the name, without the "shoal." prefix; valid until close.
 */
SHOAL_API const char *shoal_segment_name(const struct shoal_segment *s);

/**
 * shoal_segment_is_readonly() - whether @s is mapped PROT_READ.
 * @s: the segment.
 *
 * Return: true for a SHOAL_RDONLY open.
 */
SHOAL_API bool shoal_segment_is_readonly(const struct shoal_segment *s);

/**
 * shoal_unlink() - remove a named object from /dev/shm.
 * @name: as given at create.
 *
 * Mappings that exist stay valid; the memory returns to the system when the
 * last of them is gone. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name; -ENOENT if there is no such object;
 * -EACCES or -EPERM if it may not be removed.
 */
SHOAL_API int shoal_unlink(const char *name);

/* ---- queue (lib/queue.c) ------------------------------------------ */

/*
 * A bounded multi-producer, multi-consumer FIFO of byte strings in its own
 * named object, usable from any number of processes at once, that keeps
 * working when any of them is SIGKILLed at any instruction (see
 * docs/queue.md). Timeouts, for every call that takes one:
 * 0 = try once, < 0 = wait forever, > 0 = wait at most that many
 * nanoseconds. Blocking calls sleep on a futex in the object; no system call
 * is made on the fast path while nobody sleeps.
 *
 * A handle (struct shoal_queue) may be used by many threads at once, except
 * shoal_queue_detach(), which must be the last call on it. A handle
 * inherited over fork() works in the child.
 *
 * Waiting is fair within a bound: a caller that finds a crowd of its side
 * (consumers, or producers) asleep queues behind them, and one that has
 * waited and lost a wake-up to another caller gets an urgent turn, during
 * which the others of its side (try calls included: they return -EAGAIN)
 * leave the next message, or slot, to it. A turn its holder does not renew
 * (it died, or is stopped) is void after 30 ms.
 *
 * No libc lock lives in the object: whatever bytes it holds, a try call
 * (@timeout_ns 0) returns without waiting and a blocking call returns by
 * its deadline (plus at most one recovery pass over the ring); only
 * shoal_queue_nack() waits for the queue's lock, at most 2 s.
 */

/** Largest capacity (slots) a queue may have. */
#define SHOAL_QUEUE_CAPACITY_MAX (1u << 24)
/** Largest max_msg a queue may have: 64 MiB. */
#define SHOAL_QUEUE_MSG_MAX (1u << 26)
/** How many handles may use one queue at once (each push/pop-ing handle
 *  holds one participant entry until detached or its process dies). */
#define SHOAL_QUEUE_PARTICIPANTS 4096
/** The most any queue's participant table can hold: a slot names its
 *  owner's entry in 14 bits, entry 0 meaning nobody. */
#define SHOAL_QUEUE_PARTICIPANTS_MAX 16383

struct shoal_queue;

/**
 * struct shoal_queue_stats - a snapshot of a queue, from shoal_queue_stats().
 * @depth: messages in the queue (claimed by a producer but not yet taken by
 *         a consumer), 0..capacity.
 * @capacity: slots, as created.
 * @max_msg: largest message, as created.
 * @pushes: messages pushed since create, by every process.
 * @pops: messages popped since create, by every process.
 * @sleeps: times a caller went to sleep on the queue (futex waits).
 * @recoveries: times a survivor repaired what a dead process left.
 * @dropped: pushes that never delivered: a producer died between claiming
 *           a slot and publishing it, or the queue was closed under it.
 * @redelivered: messages handed out again: their consumer died before
 *               its pop released them or before it acked its claim, or
 *               the claim was nacked.
 * @participants: handles currently registered (live or not yet reaped).
 */
struct shoal_queue_stats {
	uint64_t depth;
	uint64_t capacity;
	uint64_t max_msg;
	uint64_t pushes;
	uint64_t pops;
	uint64_t sleeps;
	uint64_t recoveries;
	uint64_t dropped;
	uint64_t redelivered;
	uint64_t participants;
};

/**
 * shoal_queue_create() - create a new named queue.
 * @name: see the naming rules at the top of this header.
 * @capacity: slots, a power of two, 2..SHOAL_QUEUE_CAPACITY_MAX.
 * @max_msg: the largest message in bytes, 1..SHOAL_QUEUE_MSG_MAX.
 * @opts: mode and SHOAL_PREFAULT; NULL for defaults.
 * @out: the new queue's handle.
 *
 * Each slot takes max_msg + 16 bytes rounded up to 64 (a cache line).
 * Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name, capacity not a power of two or out of
 * range, max_msg 0 or too big, bad @opts or NULL @out; -EEXIST if the name
 * is taken; -ENOSPC if /dev/shm has no room; -ENOMEM; -EMFILE, -ENFILE;
 * -EACCES.
 */
SHOAL_API int shoal_queue_create(const char *name, uint32_t capacity, uint32_t max_msg,
				 const struct shoal_opts *opts, struct shoal_queue **out);

/**
 * shoal_queue_open() - open an existing queue by name.
 * @name: as given to shoal_queue_create().
 * @flags: 0 or SHOAL_PREFAULT (a queue cannot be opened read-only: pop
 *         writes too).
 * @out: the handle.
 *
 * The object is untrusted: every field of its header is checked, and
 * anything out of range is -EBADMSG. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name, unknown flags, SHOAL_RDONLY or NULL
 * @out; -ENOENT; -EACCES; -EBADMSG for a corrupt queue; -EPROTO;
 * -EPROTOTYPE if @name is another kind of object; -ENOMEM; -EMFILE, -ENFILE.
 */
SHOAL_API int shoal_queue_open(const char *name, unsigned int flags, struct shoal_queue **out);

/**
 * shoal_queue_detach() - free a handle (the queue itself stays).
 * @q: the handle, or NULL.
 *
 * Gives back the handle's participant entry. Must be the last call on @q,
 * with no other thread inside a call on it.
 *
 * Return: 0.
 */
SHOAL_API int shoal_queue_detach(struct shoal_queue *q);

/**
 * shoal_queue_unlink() - remove a queue's name.
 * @name: the queue.
 *
 * Like shoal_unlink(), but refuses objects that are not queues. Handles that
 * are open keep working; the memory goes when the last is detached. The
 * array references the queue held for handles still inside are dropped
 * (by shoal_reap()), which frees arrays nobody else holds. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name; -ENOENT; -EPROTOTYPE if @name is not a
 * queue; -EBADMSG if it is corrupt (shoal_unlink() removes it anyway);
 * -EACCES if it belongs to another user (it is opened first, as
 * shoal_queue_open() does) or the directory may not be written.
 */
SHOAL_API int shoal_queue_unlink(const char *name);

/**
 * shoal_queue_push() - append one message.
 * @q: the queue.
 * @msg: @len bytes (may be NULL when @len is 0).
 * @len: 0..max_msg.
 * @timeout_ns: how long to wait for room (see above).
 *
 * Lock-free while there is room (some caller always completes in a bounded
 * number of steps); blocking when full. Any number of threads and processes
 * may push and pop at once. If the caller dies inside, the message is
 * delivered whole or not at all. Messages of one producer thread are popped
 * in the order pushed (unless a consumer died holding one, see
 * shoal_queue_pop()).
 *
 * Return: 0 once the message is in the queue; -EMSGSIZE if @len > max_msg;
 * -EAGAIN if full and @timeout_ns is 0; -ETIMEDOUT; -EPIPE if the queue is
 * closed; -EINTR if a signal arrived while asleep (nothing was pushed);
 * -EUSERS if SHOAL_QUEUE_PARTICIPANTS handles already use the queue;
 * -EBADMSG if the queue's shared state is corrupt; -EINVAL for NULL @q or NULL
 * @msg with @len > 0; -EIO if /proc cannot be read.
 */
SHOAL_API int shoal_queue_push(struct shoal_queue *q, const void *msg, size_t len,
			       int64_t timeout_ns);

/**
 * shoal_queue_pop() - take the oldest message.
 * @q: the queue.
 * @buf: where the message is copied.
 * @cap: bytes at @buf; max_msg always suffices.
 * @len: set to the message's length; on -EMSGSIZE, to the size needed.
 * @timeout_ns: how long to wait for a message (see above).
 *
 * Lock-free while there are messages; blocking when empty. Each message is
 * returned by exactly one pop. The delivery contract: a message becomes the
 * consumer's at the store that releases its slot, inside this call after
 * the copy into @buf and before producers are woken and the call returns.
 * A consumer that dies before that store gives the message back: it goes to
 * another consumer (out of FIFO order, counted in stats' @redelivered). A
 * consumer that dies after it, still inside the call or after the call
 * returned, has consumed the message: nobody gets it again. Work that must
 * not be lost with its consumer uses shoal_queue_claim() instead. If @buf
 * is too small, the message stays at the head of the queue, untouched, for
 * a later pop with a big enough buffer.
 *
 * Return: 0; -EMSGSIZE if the message is longer than @cap (*@len says how
 * long); -EAGAIN if empty and @timeout_ns is 0; -ETIMEDOUT; -EPIPE if the
 * queue is closed and empty; -EINTR if a signal arrived while asleep;
 * -EUSERS; -EBADMSG; -EINVAL for NULL @q or @len, or
 * NULL @buf with @cap > 0; -EIO.
 */
SHOAL_API int shoal_queue_pop(struct shoal_queue *q, void *buf, size_t cap, size_t *len,
			      int64_t timeout_ns);

/**
 * shoal_queue_push_many() - append several messages, claiming room for as
 * many as fit in one pass.
 * @q: the queue.
 * @data: the messages back to back, @lens[0] bytes, then @lens[1], ...
 * @lens: @n lengths, each 0..max_msg.
 * @n: how many messages.
 * @timeout_ns: how long to wait for room for the rest (see above).
 *
 * Pushes in order, waiting for room as the timeout allows. Progress and
 * concurrency as shoal_queue_push(); the messages of one call stay in order
 * but may interleave with other producers'. Room is claimed for up to 64
 * messages at a time with one atomic step, and each such group is
 * published at once: a producer that dies inside the call delivers each
 * group whole or not at all (whole once its publication began).
 *
 * Return: how many were pushed, 0..@n, when at least one was or @n is 0
 * (fewer than @n if the timeout ran out, the queue was closed, or a signal
 * arrived); otherwise the error: -EMSGSIZE if any length exceeds max_msg
 * (then nothing is pushed), -EAGAIN, -ETIMEDOUT, -EPIPE, -EINTR, -EUSERS,
 * -EBADMSG, -EINVAL (NULL @q, or NULL @data/@lens with @n > 0), -EIO.
 */
SHOAL_API ssize_t shoal_queue_push_many(struct shoal_queue *q, const void *data,
					const size_t *lens, size_t n, int64_t timeout_ns);

/**
 * shoal_queue_pop_many() - take up to @n messages in one pass.
 * @q: the queue.
 * @buf: the messages are copied here back to back.
 * @cap: bytes at @buf.
 * @lens: receives each message's length (@n entries); on -EMSGSIZE,
 *        @lens[0] is the size the first message needs.
 * @n: at most this many, >= 1.
 * @timeout_ns: how long to wait for the first message (see above).
 *
 * Waits for at least one message, then takes as many as are ready, up to
 * @n (at most 64 per call) and as fit in @cap, with one atomic step.
 * Progress, concurrency and the delivery contract as shoal_queue_pop(): all
 * the messages are copied before any slot is released, and each is the
 * consumer's from its release store; a consumer that dies inside the call
 * gives back every message whose slot it had not released.
 *
 * Return: how many were taken, >= 1; -EMSGSIZE if the first does not fit
 * (it stays in the queue); -EAGAIN, -ETIMEDOUT, -EPIPE, -EINTR, -EUSERS,
 * -EBADMSG as shoal_queue_pop(); -EINVAL for NULL @q or @lens, @n == 0, or
 * NULL @buf with @cap > 0; -EIO.
 */
SHOAL_API ssize_t shoal_queue_pop_many(struct shoal_queue *q, void *buf, size_t cap,
				       size_t *lens, size_t n, int64_t timeout_ns);

/**
 * struct shoal_queue_ticket - an open claim, from shoal_queue_claim().
 * @id: names the claimed slot, its position and the claiming handle;
 *      opaque, only for shoal_queue_ack() / shoal_queue_nack() on the same
 *      handle in the same process.
 * @redelivered: how many times this message was given back before this
 *               claim (its claimer or reader died, or it was nacked); 0 on
 *               its first delivery.
 * @reserved: 0.
 */
struct shoal_queue_ticket {
	uint64_t id;
	uint32_t redelivered;
	uint32_t reserved;
};

/**
 * shoal_queue_claim() - take the oldest message, keeping it recoverable
 * until it is acknowledged.
 * @q: the queue.
 * @buf: where the message is copied.
 * @cap: bytes at @buf; max_msg always suffices.
 * @len: set to the message's length; on -EMSGSIZE, to the size needed.
 * @timeout_ns: how long to wait for a message (see above).
 * @ticket: filled on success; give it to shoal_queue_ack() or
 *          shoal_queue_nack().
 *
 * Acknowledged delivery (the model is RabbitMQ's manual ack, SQS's
 * visibility): like shoal_queue_pop(), but the message stays the queue's
 * until shoal_queue_ack(). If the claiming process dies first (anywhere,
 * inside this call or after it returned), or the handle is detached with
 * the claim open, survivors notice within about 50 ms and the message is
 * delivered again, exactly once more per death, to another pop or claim,
 * before anything at the head; @ticket.redelivered then says how often.
 * shoal_queue_nack() gives it back at once the same way.
 *
 * Capacity: a claimed message keeps its slot until acked. Claims may be
 * taken out of order, but the ring is not: the producer one lap after a
 * claimed message (capacity pushes later) waits until it is acked, nacked
 * or recovered, even if every other slot is free. Keep claims short or the
 * capacity well above the messages a consumer keeps open. Any number of
 * claims may be open per handle.
 *
 * End of stream: on a closed, drained queue, shoal_queue_pop() and this
 * call return -EPIPE only once no message is claimed anywhere (an open
 * claim can still come back); until then they wait, or return -EAGAIN when
 * @timeout_ns is 0. A caller that holds claims itself must ack or nack them
 * before it waits for the end.
 *
 * Lock-free while there are messages (taking a message that came back
 * takes the queue's recovery lock briefly); blocking when empty. Any
 * threads and processes may claim, pop and push at once.
 *
 * Return: 0; -EMSGSIZE if the message is longer than @cap (*@len says how
 * long; it stays in the queue); -EAGAIN, -ETIMEDOUT, -EPIPE, -EINTR,
 * -EUSERS, -EBADMSG, -EIO as shoal_queue_pop(); -EINVAL
 * for NULL @q, @len or @ticket, or NULL @buf with @cap > 0.
 */
SHOAL_API int shoal_queue_claim(struct shoal_queue *q, void *buf, size_t cap, size_t *len,
				int64_t timeout_ns, struct shoal_queue_ticket *ticket);

/**
 * shoal_queue_ack() - the claimed message is done with: consume it.
 * @q: the handle that claimed it.
 * @ticket: from shoal_queue_claim() on @q.
 *
 * Releases the message's slot (one compare-and-swap) and wakes a producer
 * waiting for room. From that store on the message is consumed, even if
 * the caller dies before this call returns. Any thread of the process may
 * ack a claim of the handle. Lock-free.
 *
 * Return: 0; -ENOENT if the claim is no longer open (already acked or
 * nacked: a second ack fails); -EINVAL for NULL @q or @ticket, or a ticket
 * that is not an open-claim ticket of this handle in this process (garbage,
 * another handle's, or inherited over fork()).
 */
SHOAL_API int shoal_queue_ack(struct shoal_queue *q, const struct shoal_queue_ticket *ticket);

/**
 * shoal_queue_nack() - give a claimed message back at once.
 * @q: the handle that claimed it.
 * @ticket: from shoal_queue_claim() on @q.
 *
 * The message goes to the next pop or claim on any handle, before the
 * head of the queue, with its redelivery count raised. Blocking: it takes
 * the queue's recovery lock, waiting at most 2 s for a live holder (a
 * holder that died is taken over at once); any thread of the process.
 *
 * Return: 0; -ENOENT if the claim is no longer open; -EINVAL as
 * shoal_queue_ack(); -EDEADLK if the recovery lock was held by a live
 * process for 2 s (the claim is still open: ack or nack it again).
 */
SHOAL_API int shoal_queue_nack(struct shoal_queue *q, const struct shoal_queue_ticket *ticket);

/**
 * shoal_queue_close() - close the queue for writing, for every process.
 * @q: the queue.
 *
 * Later pushes fail with -EPIPE; a push racing with the close either
 * delivers or fails with -EPIPE. Consumers drain what is left, then get
 * -EPIPE. Everyone asleep on the queue wakes. Closing twice is harmless.
 * Wait-free apart from the wake-up system call. Thread-safe.
 *
 * Return: 0; -EINVAL for NULL @q.
 */
SHOAL_API int shoal_queue_close(struct shoal_queue *q);

/**
 * shoal_queue_is_closed() - whether shoal_queue_close() was called.
 * @q: the queue.
 *
 * Wait-free, thread-safe.
 *
 * Return: true once closed.
 */
SHOAL_API bool shoal_queue_is_closed(const struct shoal_queue *q);

/**
 * shoal_queue_stats() - a snapshot of the queue's counters.
 * @q: the queue.
 * @out: filled on success.
 *
 * The fields are read one by one while others work, so they agree only
 * roughly with each other. Wait-free, thread-safe.
 *
 * Return: 0; -EINVAL for NULL @q or @out.
 */
SHOAL_API int shoal_queue_stats(const struct shoal_queue *q, struct shoal_queue_stats *out);

/**
 * struct shoal_queue_participant - an entry of a queue's participant table,
 * from shoal_queue_observe().
 * @pid: the process that registered it.
 * @start_time: its start time (struct shoal_proc), telling a reused pid apart.
 * @alive: false once the process is certainly gone (shoal_proc_is_alive()'s
 *         judgement, an unreadable /proc counting as alive).
 * @detached: its handle detached with claims open: recovery hands them on
 *         and then frees the entry.
 */
struct shoal_queue_participant {
	pid_t pid;
	uint64_t start_time;
	bool alive;
	bool detached;
};

/**
 * struct shoal_queue_view - a queue seen from outside, by
 * shoal_queue_observe().
 * @stats: as shoal_queue_stats() gives a handle's owner; @stats.participants
 *         counts the registered entries.
 * @generation: the queue's generation (its array holder key names it).
 * @closed: shoal_queue_close() was called.
 * @live: participants whose process runs.
 * @dead: participants whose process is gone (or detached with claims open):
 *        the next recovery or sweep frees their entries.
 * @table: entries in the participant table (its fixed size).
 */
struct shoal_queue_view {
	struct shoal_queue_stats stats;
	uint64_t generation;
	bool closed;
	uint32_t live;
	uint32_t dead;
	uint32_t table;
};

/**
 * shoal_queue_observe() - look at a queue without joining it.
 * @name: the queue.
 * @out: filled on success.
 * @parts: filled with up to @cap registered participants; may be NULL if
 *         @cap is 0.
 * @cap: entries in @parts.
 *
 * Maps nothing: reads the queue's headers and its participant table with
 * pread into private memory, and takes no participant entry, no lock, no
 * reference: nothing in the object changes, and a queue whose table is full
 * can still be observed. Safe against truncation: a queue its owner
 * truncates (or rewrites) before or during the call cannot stop the caller
 * with SIGBUS; a file that ends too soon is -EBADMSG, whose
 * shoal_errdetail() names the queue and says it was truncated. The object
 * is untrusted input, checked as shoal_queue_open() checks it (but for
 * the cursors' distance, which a copy taken while others push and pop
 * cannot show whole: the depth is clamped instead); the counters and the
 * table are read in separate copies, taken while others work, so they
 * agree only roughly. Costs one open, three preads (the table is 8 bytes
 * an entry), and a /proc read per registered participant.
 * Thread-safe.
 *
 * Return: the number of registered participants (may exceed @cap); -EINVAL
 * for a bad name, NULL @out, or NULL @parts with @cap > 0; -ENOENT if there
 * is no such object; -EACCES if it belongs to another user or is group or
 * world writable; -EBADMSG for a corrupt queue, a file that is not one, or
 * one truncated before or while it was read; -EPROTO for a layout this
 * library does not read; -EPROTOTYPE if @name is another kind of object;
 * -ENOMEM; -EMFILE, -ENFILE; -EIO if the file cannot be read.
 */
SHOAL_API int shoal_queue_observe(const char *name, struct shoal_queue_view *out,
				  struct shoal_queue_participant *parts, size_t cap);

/**
 * shoal_queue_name() - the name the handle was created or opened with.
 * @q: the queue.
 *
 * Return: the name, valid until shoal_queue_detach().
 */
SHOAL_API const char *shoal_queue_name(const struct shoal_queue *q);


/* ---- queue ports (lib/queue_port.c) -------------------------------- */

/*
 * A port binds a queue, a buffer, length cells and a timeout once, so that
 * the hot calls take the port's number and at most a length: for callers
 * through a foreign-function interface (Python's ctypes), where each
 * argument costs more to convert than the queue operation behind it. A
 * port is process memory: a number means nothing in another process, and a
 * forked child inherits the parent's ports, each naming the child's copy of
 * the handle. The calls are shoal_queue_push(), _pop() and _pop_many() with
 * the bound arguments: the same delivery contract, progress and errors.
 * One thread uses a port at a time (its buffer is one), and closing a port
 * while another thread is inside a call on it is undefined. Every call
 * below returns -EBADF for a number that is not an open port, or is one
 * unbound from its queue (shoal_queue_port_unbind()).
 */

/**
 * shoal_queue_port_open() - bind a queue, a buffer and length cells to a
 * port number.
 * @q: the queue handle; it must stay attached until the port is closed.
 * @buf: the buffer pops copy into and shoal_queue_port_push() sends from.
 * @cap: bytes at @buf (max_msg always suffices).
 * @lens: @nlens length cells: @lens[0] receives the length of a popped
 *        message (on -EMSGSIZE the size it needs), @lens[0..n) those of a
 *        batch.
 * @nlens: cells at @lens, >= 1: the largest batch shoal_queue_port_pop_many()
 *         takes.
 * @timeout_ns: the timeout of every call on the port (0: try once, < 0:
 *              forever, as for shoal_queue_pop()).
 *
 * The memory at @buf and @lens is the caller's and must outlive the port.
 * Lock-free (a table of compare-and-swap entries); any thread.
 *
 * Return: the port's number, > 0; -EINVAL for NULL @q or @lens, @nlens 0,
 * or NULL @buf with @cap > 0; -ENOMEM; -EMFILE if all 65535 ports of the
 * process are open.
 */
SHOAL_API int shoal_queue_port_open(struct shoal_queue *q, void *buf, size_t cap, size_t *lens,
				    size_t nlens, int64_t timeout_ns);

/**
 * shoal_queue_port_close() - free a port number.
 * @port: from shoal_queue_port_open().
 *
 * The queue handle and the bound memory are the caller's and stay. Its
 * number is refused from then on, until its table entry has been reused
 * 32767 times. Lock-free.
 *
 * Return: 0; -EBADF if @port is not an open port of this process.
 */
SHOAL_API int shoal_queue_port_close(int port);

/**
 * shoal_queue_port_pop() - shoal_queue_pop() into the port's buffer.
 * @port: from shoal_queue_port_open().
 *
 * Return: the message's length (>= 0), also in the port's @lens[0];
 * -EBADF if @port is not an open port; else shoal_queue_pop()'s errors
 * (-EMSGSIZE: @lens[0] is the size the message needs; it stays in the
 * queue).
 */
SHOAL_API ssize_t shoal_queue_port_pop(int port);

/**
 * shoal_queue_port_push() - shoal_queue_push() of the first @len bytes of
 * the port's buffer.
 * @port: from shoal_queue_port_open().
 * @len: bytes to send, 0..the buffer's @cap.
 *
 * Return: 0; -EBADF if @port is not an open port; -EMSGSIZE if @len >
 * max_msg; -EINVAL if @len < 0 or beyond the buffer; else
 * shoal_queue_push()'s errors.
 */
SHOAL_API int shoal_queue_port_push(int port, int len);

/**
 * shoal_queue_port_send() - shoal_queue_push() of @len bytes at @msg with
 * the port's queue and timeout.
 * @port: from shoal_queue_port_open().
 * @msg: the message (not the port's buffer: for callers that hold the
 *       bytes already, one copy fewer).
 * @len: its length, 0..max_msg.
 *
 * Return: 0; -EBADF if @port is not an open port; -EINVAL if @len < 0;
 * else shoal_queue_push()'s errors.
 */
SHOAL_API int shoal_queue_port_send(int port, const void *msg, int len);

/**
 * shoal_queue_port_length_at() - where shoal_queue_port_put() finds a
 * message's length: a ssize_t at @offset bytes from the message.
 * @port: from shoal_queue_port_open().
 * @offset: from the message's first byte to its length cell, in bytes:
 *          negative for a header before the bytes (CPython's bytes keep
 *          ob_size 16 bytes before ob_sval on 64-bit builds), or >= the
 *          largest message for a cell after them.
 *
 * For a runtime whose strings carry their length beside their bytes and
 * whose calls cost per argument: put then takes the message alone. The
 * caller answers for every message it puts having the cell there (a
 * wrong object is a wild read), so a binding checks the layout once and
 * puts only objects of that exact type.
 *
 * Return: 0; -EBADF if @port is not an open port; -EINVAL if @offset is 0
 * or a cell there would overlap the message's first bytes (-8 < @offset < 0).
 */
SHOAL_API int shoal_queue_port_length_at(int port, ptrdiff_t offset);

/**
 * shoal_queue_port_put() - shoal_queue_push() of the message at @msg, its
 * length read from the cell shoal_queue_port_length_at() set.
 * @port: from shoal_queue_port_open(), with shoal_queue_port_length_at() set.
 * @msg: the message's first byte (from Python's ctypes: a bytes object as
 *       is, which ctypes passes as the address of its bytes).
 *
 * When it pushes nothing and the port has a fail function
 * (shoal_queue_port_deliver()), that is called with errno set to the
 * error, as take does: Python's PyErr_SetFromErrno, so the caller's one
 * call raises instead of returning a code to test. The error is also
 * shoal_queue_port_error()'s.
 *
 * Return: 0; -EBADF if @port is not an open port, or is unbound;
 * -EINVAL if the port has no length offset, @msg is NULL or the length
 * read is negative; else shoal_queue_push()'s errors (-EAGAIN,
 * -ETIMEDOUT, -EMSGSIZE, -EPIPE, ...).
 */
SHOAL_API int shoal_queue_port_put(int port, const void *msg);

/**
 * shoal_queue_port_pop_many() - shoal_queue_pop_many() into the port's
 * buffer and length cells.
 * @port: from shoal_queue_port_open().
 * @n: at most this many messages (and at most the port's @nlens), >= 1.
 *
 * Return: how many were taken, >= 1, their lengths in the port's @lens;
 * -EBADF if @port is not an open port; -EINVAL if @n < 1; else
 * shoal_queue_pop_many()'s errors.
 */
SHOAL_API ssize_t shoal_queue_port_pop_many(int port, int n);

/**
 * shoal_queue_port_send_many() - shoal_queue_push_many() with the port's
 * queue and timeout.
 * @port: from shoal_queue_port_open().
 * @data: the messages back to back.
 * @lens: @n lengths, each 0..max_msg.
 * @n: how many messages, >= 0.
 *
 * Return: how many were pushed, as shoal_queue_push_many(); -EBADF if
 * @port is not an open port; -EINVAL if @n < 0; else
 * shoal_queue_push_many()'s errors.
 */
SHOAL_API ssize_t shoal_queue_port_send_many(int port, const void *data, const size_t *lens,
					     int n);

/**
 * shoal_queue_port_gather() - how shoal_queue_port_put_many() walks a
 * sequence of the caller's objects.
 * @port: from shoal_queue_port_open().
 * @count: returns how many objects the sequence holds (< 0: not a
 *         sequence). NULL: unbind (put_many then fails with -EINVAL).
 * @item: returns the object at index i (0 <= i < count), or NULL. Both run
 *        inside put_many and must not change the sequence.
 * @type: the one type put_many takes: the pointer-sized word at @type_at
 *        bytes from each object must equal it.
 * @type_at: from an object to its type word (CPython: ob_type, 8).
 * @data_at: from an object to its first byte (CPython's bytes: ob_sval,
 *           32); the length is at shoal_queue_port_length_at()'s offset
 *           from there.
 *
 * For a runtime whose lists of strings lay each string's type, length and
 * bytes out at fixed offsets (Python's list of bytes: PyList_Size,
 * PyList_GetItem, &PyBytes_Type): put_many then copies each message from
 * its object straight into the queue, with no joined buffer and no
 * lengths array built by the caller. The caller answers for the layout
 * (a wrong offset is a wild read), so a binding checks it once on probes.
 *
 * Return: 0; -EBADF if @port is not an open port; -EINVAL if only one of
 * @count and @item is NULL, or @type is NULL with @count set.
 */
SHOAL_API int shoal_queue_port_gather(int port, ssize_t (*count)(void *seq),
				      void *(*item)(void *seq, ssize_t i), const void *type,
				      ptrdiff_t type_at, ptrdiff_t data_at);

/**
 * shoal_queue_port_put_many() - shoal_queue_push_many() of every object of
 * @seq, each copied from where it lies.
 * @port: from shoal_queue_port_open(), with shoal_queue_port_length_at()
 *        and shoal_queue_port_gather() set.
 * @seq: the caller's sequence (a Python list of bytes).
 *
 * Every object is checked first: if one is not of the bound type or is
 * longer than max_msg, nothing is pushed. Then the objects go in order, up
 * to 64 per claim of a span, each batch whole or not at all (as
 * shoal_queue_push_many()); the port's timeout applies to each group of
 * 64 in turn. Not for objects another thread may change meanwhile
 * (Python: call it holding the GIL, through a PyDLL handle).
 *
 * Return: how many were pushed, the first that many of @seq: all of them,
 * or fewer when the queue filled (or the timeout passed) after some went;
 * 0 for an empty @seq. Else nothing was pushed and: -EBADF if @port is not
 * an open port, or is unbound; -EINVAL if the port has no length offset or
 * no gather functions, @seq is NULL, @count returned < 0, @item returned
 * NULL, an object is not of the bound type or its length is negative;
 * -EMSGSIZE if one is longer than max_msg; else shoal_queue_push_many()'s
 * errors (-EAGAIN, -ETIMEDOUT, -EPIPE, ...).
 */
SHOAL_API ssize_t shoal_queue_port_put_many(int port, void *seq);

/**
 * shoal_queue_port_collect() - how shoal_queue_port_take_many() gathers the
 * objects the port's deliver function makes.
 * @port: from shoal_queue_port_open(), with a buffer.
 * @collect: makes a collection of n slots (Python's PyList_New), or NULL
 *           on failure. NULL for all three: unbind.
 * @add: puts the object in slot i, taking it over even when it fails
 *       (PyList_SetItem); < 0 on failure.
 * @drop: frees a collection and what it holds (Py_DecRef).
 *
 * Return: 0; -EBADF if @port is not an open port; -EINVAL if some of the
 * three are NULL and others not, or the port has no buffer.
 */
SHOAL_API int shoal_queue_port_collect(int port, void *(*collect)(ssize_t n),
				       int (*add)(void *coll, ssize_t i, void *obj),
				       void (*drop)(void *coll));

/**
 * shoal_queue_port_take_many() - shoal_queue_port_pop_many(), then one
 * collection of the deliver function's objects, oldest first.
 * @port: from shoal_queue_port_open(), with shoal_queue_port_deliver() and
 *        shoal_queue_port_collect() set.
 * @n: at most this many messages (and at most the port's @nlens), >= 1.
 *
 * The messages are the caller's from the pop (as in shoal_queue_port_take()):
 * if @collect, @deliver or @add fails, they are gone with that failure
 * (the collection so far is dropped; the runtime's own error stands, for
 * Python a MemoryError). One thread at a time per port; a call made from
 * inside it on the same port (code @collect ran: in Python a finalizer a
 * collection can start) pops nothing and fails with -EBUSY.
 *
 * Return: the collection, >= 1 objects; when nothing was popped, what the
 * port's fail function returned (or NULL without one): the error is
 * -EINVAL for @n < 1, -EBADF for an unbound port, -EBUSY for a call
 * from inside another on @port, else
 * shoal_queue_pop_many()'s (-EAGAIN, -EPIPE, -EMSGSIZE with the size
 * needed in the port's @lens[0], ...), and shoal_queue_port_error() gives
 * it too. NULL if @port is not an open port, has no deliver or no collect
 * function, or a runtime call failed after the pop.
 */
SHOAL_API void *shoal_queue_port_take_many(int port, int n);

/**
 * shoal_queue_port_unbind() - let go of the port's queue, keeping its number.
 * @port: from shoal_queue_port_open().
 *
 * From then on the port's calls fail with -EBADF (shoal_queue_port_take()
 * through its fail function), and the queue handle may be detached. For a
 * binding whose callers may still hold the number after the handle is
 * gone: a closed number is refused too, but a take on a number that is no
 * port has nobody to fail through and returns NULL.
 *
 * Return: 0; -EBADF if @port is not an open port.
 */
SHOAL_API int shoal_queue_port_unbind(int port);

/**
 * shoal_queue_port_deliver() - make the caller's object from each message
 * shoal_queue_port_take() pops, or its error.
 * @port: from shoal_queue_port_open(), with a buffer.
 * @deliver: called with the message in the port's buffer and its length,
 *           inside shoal_queue_port_take(); what it returns, take returns.
 *           NULL: take returns NULL.
 * @fail: called with @fail_arg and errno set to the error when take pops
 *        nothing; what it returns, take returns. NULL: take returns NULL.
 *        Also called when shoal_queue_port_put() pushes nothing (a port
 *        that only sends binds @fail alone, with a NULL @deliver).
 * @fail_arg: for @fail.
 *
 * For a runtime whose calls cost more than copying: @deliver is its own
 * constructor (Python's PyBytes_FromStringAndSize, called through a
 * handle that keeps the GIL) and @fail its way to raise
 * (PyErr_SetFromErrno), so the caller gets its object from one call and
 * no code of its own runs between the pop and the copy: the port's buffer
 * is free again before any other caller can use it.
 *
 * Return: 0; -EBADF if @port is not an open port; -EINVAL if the port has
 * no buffer.
 */
SHOAL_API int shoal_queue_port_deliver(int port, void *(*deliver)(const void *msg, ssize_t len),
				       void *(*fail)(void *arg), void *fail_arg);

/**
 * shoal_queue_port_take() - shoal_queue_port_pop(), then the port's deliver
 * function on the message.
 * @port: from shoal_queue_port_open(), with shoal_queue_port_deliver() set.
 *
 * The message is the caller's from the pop (the queue's delivery
 * contract): if @deliver fails, the message is gone with that failure, as
 * with a consumer that dies after its pop. One thread at a time per port.
 *
 * Return: what @deliver returned; when nothing was popped, what @fail
 * returned (or NULL without one): the error is shoal_queue_pop()'s
 * (-EAGAIN, -EPIPE, -EMSGSIZE with the size needed in the port's
 * @lens[0], ...) or -EBADF for an unbound port, and
 * shoal_queue_port_error() gives it too. NULL if @port is not an open port
 * or has no deliver function.
 */
SHOAL_API void *shoal_queue_port_take(int port);

/**
 * shoal_queue_port_error() - why the port's last take or put failed.
 * @port: from shoal_queue_port_open().
 *
 * Return: the error of the last shoal_queue_port_take() or _take_many()
 * that popped nothing, or shoal_queue_port_put() that pushed nothing (0 if
 * none did);
 * -EBADF if @port is not an open port.
 */
SHOAL_API int shoal_queue_port_error(int port);

/* ---- array (lib/array.c) ------------------------------------------- */

/*
 * A typed, C-contiguous n-d array in its own shoal object, shared by
 * reference count between processes. A process creates it, fills it and
 * passes its handle (a short string) to others; each attach is one
 * reference. References are counted per holder (process) in a ledger inside
 * the object, so what a killed process held can be taken back by
 * shoal_reap(). When the count reaches zero the object is unlinked; its
 * pages return to the system when the last mapping goes.
 *
 * A struct shoal_array is a process-local mapping that owns zero or more
 * references: shoal_array_release() drops one and keeps the mapping (the
 * data stays readable), shoal_array_close() drops what is left and unmaps.
 *
 * Fork: a child inherits the mapping but no reference. In the child,
 * shoal_array_release() on an inherited struct is -EINVAL (it holds
 * nothing), shoal_array_close() only unmaps, and shoal_array_retain() takes
 * a reference of the child's own.
 */

/** Most dimensions an array may have. */
#define SHOAL_ARRAY_MAXDIM 32
/**
 * Most holders (processes, queues, a pin) one array can have at once. The
 * first 204 share the headers' page, so attaching touches one page of
 * metadata; the rest take lines of an overflow ledger past the data, whose
 * pages are reserved only when first needed (-ENOSPC then if /dev/shm is
 * full). Lines of dead processes are swept to make room; past that,
 * attaching is -EUSERS.
 */
#define SHOAL_ARRAY_HOLDERS_MAX 16384
/** Longest handle, terminating NUL included. */
#define SHOAL_HANDLE_MAX 256
/** Every handle starts with this. */
#define SHOAL_HANDLE_PREFIX "shoal:array:"

/* Flag for shoal_array_open(): map without taking a reference (inspect). */
#define SHOAL_ARRAY_NOREF 0x100u

/** enum shoal_dtype - element types; the values are ABI. */
enum shoal_dtype {
	SHOAL_DTYPE_BOOL = 1,
	SHOAL_DTYPE_INT8 = 2,
	SHOAL_DTYPE_INT16 = 3,
	SHOAL_DTYPE_INT32 = 4,
	SHOAL_DTYPE_INT64 = 5,
	SHOAL_DTYPE_UINT8 = 6,
	SHOAL_DTYPE_UINT16 = 7,
	SHOAL_DTYPE_UINT32 = 8,
	SHOAL_DTYPE_UINT64 = 9,
	SHOAL_DTYPE_FLOAT32 = 10,
	SHOAL_DTYPE_FLOAT64 = 11,
	SHOAL_DTYPE_COMPLEX64 = 12,
	SHOAL_DTYPE_COMPLEX128 = 13,
	/** Raw bytes of a caller-given itemsize (numpy 'V<n>'). */
	SHOAL_DTYPE_RAW = 14,
};

struct shoal_array;

/**
 * struct shoal_array_holder - one line of an array's reference ledger.
 * @key: the holder: a process (see @pid) or, with bit 63 set, something
 *       that is not a process (a queue holding handles in transit, or the
 *       pin of a shoal.SharedMemory name).
 * @pid: the holding process, or 0 when @key is not a process.
 * @count: references it holds, > 0.
 * @alive: whether the holder still exists (a process runs; pins always).
 */
struct shoal_array_holder {
	uint64_t key;
	pid_t pid;
	uint32_t count;
	bool alive;
};

/**
 * shoal_dtype_itemsize() - bytes per element of @dtype.
 * @dtype: an enum shoal_dtype.
 *
 * Return: the size; 0 for SHOAL_DTYPE_RAW (caller-given) and unknown values.
 */
SHOAL_API size_t shoal_dtype_itemsize(int dtype);

/**
 * shoal_dtype_name() - the numpy name of @dtype ("float64", "V" for raw).
 * @dtype: an enum shoal_dtype.
 *
 * Return: a static string; "?" for unknown values.
 */
SHOAL_API const char *shoal_dtype_name(int dtype);

/**
 * shoal_array_create() - create a shared array, holding one reference.
 * @name: the object's name (naming rules at the top), or NULL for a fresh
 *        anonymous name ("a.<pid>.<n>.<random>", short so handles are).
 * @dtype: an enum shoal_dtype.
 * @itemsize: bytes per element for SHOAL_DTYPE_RAW (1..2^31-1); for other
 *            dtypes 0 or exactly the dtype's size.
 * @ndim: 1..SHOAL_ARRAY_MAXDIM.
 * @shape: @ndim extents; a zero extent makes an empty array.
 * @opts: mode and SHOAL_PREFAULT, as for segments; NULL for defaults.
 * @out: the array, mapped read-write.
 *
 * The data is C-contiguous, page aligned and zeroed (fresh tmpfs pages are
 * zero, so "uninitialised" would cost the same). Its memory is reserved at
 * once. Thread-safe.
 *
 * Return: 0; -EINVAL for an unknown dtype, a bad itemsize, @ndim out of
 * range, NULL @shape or @out, or a bad name or mode; -EOVERFLOW if the
 * element count or byte size overflows; -EEXIST if @name is taken; -ENOSPC
 * if /dev/shm has no room; -ENOMEM; -EMFILE, -ENFILE; -EACCES; -EIO if
 * /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_array_create(const char *name, int dtype, size_t itemsize, int ndim,
				 const size_t *shape, const struct shoal_opts *opts,
				 struct shoal_array **out);

/**
 * shoal_array_handle() - the handle other processes attach with.
 * @a: the array.
 * @buf: receives "shoal:array:<name>@<generation, 16 hex digits>".
 * @cap: bytes at @buf; SHOAL_HANDLE_MAX always suffices.
 *
 * The generation makes a handle name one array only: once that array is
 * freed, a new array created under the same name does not answer to it.
 * Wait-free.
 *
 * Return: the length without the NUL; -EINVAL for NULL arguments; -ERANGE
 * if @cap is too small.
 */
SHOAL_API int shoal_array_handle(const struct shoal_array *a, char *buf, size_t cap);

/**
 * shoal_array_attach() - map the array a handle names, taking a reference.
 * @handle: from shoal_array_handle(), in any process of the same user.
 * @flags: SHOAL_RDONLY (the data is mapped PROT_READ: writes fault),
 *         SHOAL_PREFAULT.
 * @out: the array.
 *
 * The object is untrusted input; every field is checked against the file.
 * A reference another process gave the caller (shoal_array_hold_for()) is
 * taken over rather than one more added (so too by shoal_array_open() and
 * shoal_array_retain()). Blocking (takes the ledger lock briefly). When
 * every line of the ledger is in use, the lines of dead processes are
 * taken: their holders are judged outside the lock, 64 at a time from
 * where the last such sweep stopped, for at most one round of the ledger
 * (a /proc read per process: about 0.5 s at SHOAL_ARRAY_HOLDERS_MAX live
 * holders). Thread-safe.
 *
 * Return: 0; -EINVAL for a malformed handle, unknown flags or NULL @out;
 * -ENOENT if the array is gone (freed, or its name now belongs to another
 * array); -EBADMSG for a corrupt object; -EPROTO (an older layout);
 * -EPROTOTYPE if the name is another kind of object; -EACCES; -EUSERS if
 * its ledger is full of live holders (SHOAL_ARRAY_HOLDERS_MAX; a round of
 * the ledger found none dead); -ENOSPC if this holder needs a new page of
 * the overflow ledger and /dev/shm has no room for it (never SIGBUS);
 * -EOVERFLOW if this process's count would overflow; -EDEADLK if
 * the ledger lock could not be taken in 10 s (a live process holds it: one
 * stopped inside it, or lock bytes that name a live process; a dead or
 * impossible owner is taken over); -ENOMEM; -EMFILE,
 * -ENFILE; -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_array_attach(const char *handle, unsigned int flags, struct shoal_array **out);

/**
 * shoal_array_open() - attach by name, whatever the generation.
 * @name: the object's name.
 * @flags: SHOAL_RDONLY, SHOAL_PREFAULT, SHOAL_ARRAY_NOREF (take no
 *         reference: for looking at an array, e.g. its ledger).
 * @out: the array.
 *
 * As shoal_array_attach(), for callers that know a name rather than a
 * handle (shoal.SharedMemory). With SHOAL_ARRAY_NOREF the array is still
 * mapped, so, as for any process that maps it, an owner that truncates its
 * file can stop the caller with SIGBUS; the shoal command and
 * shoal_leaks() read arrays with pread instead and are safe against that.
 *
 * Return: as shoal_array_attach(); -EINVAL for a bad name.
 */
SHOAL_API int shoal_array_open(const char *name, unsigned int flags, struct shoal_array **out);

/**
 * shoal_array_retain() - take one more reference for the calling process.
 * @a: the array.
 *
 * In a forked child this is how an inherited struct gets a reference of
 * its own. Blocking (ledger lock). Thread-safe.
 *
 * Return: 0; -EINVAL for NULL or a SHOAL_ARRAY_NOREF struct; -ENOENT if the
 * array has been freed; -EUSERS; -ENOSPC and -ENOMEM as shoal_array_attach();
 * -EOVERFLOW; -EDEADLK; -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_array_retain(struct shoal_array *a);

/**
 * shoal_array_release() - drop one reference this struct holds.
 * @a: the array; stays mapped and valid (shoal_array_close() unmaps).
 *
 * When the ledger's total reaches zero the array is marked freed (nobody
 * can attach it again) and its name is unlinked; the memory returns when
 * the last mapping goes. Blocking (ledger lock). Thread-safe.
 *
 * Return: 0; 1 if this release freed the array; -EINVAL for NULL or a
 * struct that holds no reference (released already, inherited across fork,
 * or SHOAL_ARRAY_NOREF); -EDEADLK.
 */
SHOAL_API int shoal_array_release(struct shoal_array *a);

/**
 * shoal_array_close() - release every reference @a holds, unmap, free @a.
 * @a: the array, or NULL.
 *
 * Not to be called concurrently with other uses of @a.
 *
 * Return: 0, or 1 if the array was freed by it; -EDEADLK if the
 * references could not be released (the mapping is
 * freed anyway; shoal_reap() takes the references back after this process
 * exits).
 */
SHOAL_API int shoal_array_close(struct shoal_array *a);

/**
 * struct shoal_array_desc - everything about an array's data at once.
 * @data: the first element, page aligned.
 * @nbytes: bytes of data.
 * @itemsize: bytes per element.
 * @dtype: the enum shoal_dtype.
 * @ndim: dimensions; @shape and @strides (bytes, C order) have @ndim used
 *        entries.
 * @readonly: the data is mapped PROT_READ.
 */
struct shoal_array_desc {
	void *data;
	size_t nbytes;
	size_t itemsize;
	int dtype;
	int ndim;
	size_t shape[SHOAL_ARRAY_MAXDIM];
	ssize_t strides[SHOAL_ARRAY_MAXDIM];
	bool readonly;
};

/**
 * shoal_array_desc() - the descriptor of @a, in one call (for bindings).
 * @a: the array.
 *
 * Wait-free.
 *
 * Return: a pointer valid until shoal_array_close(@a).
 */
SHOAL_API const struct shoal_array_desc *shoal_array_desc(const struct shoal_array *a);

/**
 * shoal_array_data() - the first element of @a's data.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: the address, page aligned; valid until shoal_array_close(@a).
 */
SHOAL_API void *shoal_array_data(const struct shoal_array *a);

/**
 * shoal_array_dtype() - @a's element type.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: an enum shoal_dtype.
 */
SHOAL_API int shoal_array_dtype(const struct shoal_array *a);

/**
 * shoal_array_itemsize() - bytes per element of @a.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: the itemsize.
 */
SHOAL_API size_t shoal_array_itemsize(const struct shoal_array *a);

/**
 * shoal_array_ndim() - @a's number of dimensions.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: 1..SHOAL_ARRAY_MAXDIM.
 */
SHOAL_API int shoal_array_ndim(const struct shoal_array *a);

/**
 * shoal_array_shape() - @a's extents.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: an array of shoal_array_ndim() extents; valid until shoal_array_close(@a).
 */
SHOAL_API const size_t *shoal_array_shape(const struct shoal_array *a);

/**
 * shoal_array_strides() - @a's strides in bytes, C order.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: an array of shoal_array_ndim() strides; valid until shoal_array_close(@a).
 */
SHOAL_API const ssize_t *shoal_array_strides(const struct shoal_array *a);

/**
 * shoal_array_nbytes() - bytes of @a's data.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: the size.
 */
SHOAL_API size_t shoal_array_nbytes(const struct shoal_array *a);

/**
 * shoal_array_name() - the object's name (no "shoal." prefix).
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: the name; valid until shoal_array_close(@a).
 */
SHOAL_API const char *shoal_array_name(const struct shoal_array *a);

/**
 * shoal_array_is_readonly() - whether @a's data is mapped PROT_READ.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: true for a SHOAL_RDONLY attach or an inspection.
 */
SHOAL_API bool shoal_array_is_readonly(const struct shoal_array *a);

/**
 * shoal_array_refs() - references this struct holds for this process.
 * @a: the array.
 *
 * Wait-free; any thread.
 *
 * Return: the count (0 in a forked child until it retains).
 */
SHOAL_API unsigned int shoal_array_refs(const struct shoal_array *a);

/**
 * shoal_array_refcount() - the array's total references, all holders.
 * @a: the array.
 *
 * A snapshot: other processes may change it at once. Lock-free (reads the
 * ledger without its lock).
 *
 * Return: the total (0 once freed).
 */
SHOAL_API uint64_t shoal_array_refcount(const struct shoal_array *a);

/**
 * shoal_array_holders() - the ledger: who holds how many references.
 * @a: the array.
 * @out: receives up to @cap lines (may be NULL when @cap is 0).
 * @cap: lines at @out.
 *
 * A snapshot, as shoal_array_refcount(). Checks each process holder's
 * liveness (one read of /proc each).
 *
 * Return: the number of holders (may exceed @cap; only @cap are written);
 * -EINVAL for NULL @a, or NULL @out with @cap > 0.
 */
SHOAL_API int shoal_array_holders(const struct shoal_array *a, struct shoal_array_holder *out,
				  size_t cap);

/**
 * shoal_array_is_freed() - whether the array's last reference is gone.
 * @a: the array.
 *
 * Return: true once freed (the mapping stays readable until close).
 */
SHOAL_API bool shoal_array_is_freed(const struct shoal_array *a);

/**
 * shoal_array_pin() - let the name itself hold a reference.
 * @a: the array.
 *
 * The array then outlives every process until shoal_array_unpin(), as a
 * named object that others open later by name (shoal.SharedMemory's
 * create ... unlink). Pins are never reaped. Blocking (ledger lock).
 * Thread-safe.
 *
 * Return: 0; -EINVAL for NULL or a SHOAL_ARRAY_NOREF struct; -ENOENT if the
 * array has been freed; -EUSERS; -ENOSPC and -ENOMEM as shoal_array_attach();
 * -EOVERFLOW; -EDEADLK; -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_array_pin(struct shoal_array *a);

/**
 * shoal_array_unpin() - drop one pin; frees the array if it was the last
 * reference.
 * @a: the array (any struct mapping it, holding references or not, except
 *     a SHOAL_ARRAY_NOREF one).
 *
 * Return: 0; 1 if this freed the array; -EINVAL for NULL or a
 * SHOAL_ARRAY_NOREF struct; -ENOENT if the array holds no pin; -EDEADLK;
 * -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_array_unpin(struct shoal_array *a);

/**
 * shoal_array_hold_for() - take a reference that belongs to another process.
 * @a: the array (any struct mapping it, holding references or not, except
 *     a SHOAL_ARRAY_NOREF one).
 * @p: the process the reference is for: from shoal_proc_get() (a pid and
 *     its start time, so a pid reused by a later process is not taken for
 *     it), shoal_proc_self(), or handed over by that process itself.
 *
 * Adds one reference to @p's line of the ledger, as though @p had
 * attached, and notes it as given. While one given reference is left, a
 * reference a struct of @p takes on this array (shoal_array_attach(),
 * shoal_array_open(), shoal_array_retain(); not shoal_queue_pop_array(),
 * which takes the queue's) takes a given one over instead of adding one
 * (the total stays as it was), so @p's release
 * drops it and nothing is left behind. If @p dies first, the reference is
 * a dead holder's: shoal_reap() (and `shoal gc`, and the last live
 * holder's release) drops it, and the array is freed when nothing else
 * holds it. This is how a process hands an array it made to one that has
 * not attached it yet (a worker's result to its caller) without a pin,
 * which nothing reaps. @p may be the caller. The caller's own references
 * are not changed. Blocking (ledger lock); in a full ledger it makes room
 * as shoal_array_attach() does (up to a round of /proc reads before
 * -EUSERS). Thread-safe.
 *
 * Return: 0; -EINVAL for NULL @a or @p, a SHOAL_ARRAY_NOREF struct, or a
 * pid or start time no process can have; -ESRCH if @p is not alive (exited,
 * a zombie, or its pid now another process's); -EIO if /proc could not be
 * read; -ENOENT if the array has been freed; -EUSERS; -ENOSPC and -ENOMEM
 * as shoal_array_attach(); -EOVERFLOW if @p's count would overflow;
 * -EDEADLK.
 */
SHOAL_API int shoal_array_hold_for(struct shoal_array *a, const struct shoal_proc *p);

/* ---- the reaper (lib/reap.c) ---------------------------------------- */

/**
 * shoal_reap() - take back what dead processes held; no daemon needed.
 *
 * Walks every array in /dev/shm (each opened as untrusted input; corrupt or
 * foreign objects are skipped), drops the references of holders that are
 * gone (processes that exited or were killed, zombies included; queues that
 * no longer exist), and frees the arrays whose total reaches zero, or that
 * a dead process had marked freed without unlinking. Also removes the
 * temporary files ("shoal..tmp.<pid>.*") of creators that died mid-create,
 * and the task board of a pool whose supervisor died without destroying it,
 * with the task and result segments named after it.
 * Any process may call it at any time, concurrently with everything else.
 * Blocking, bounded: linear in the objects in /dev/shm, and at most 10 ms
 * on each array's ledger lock; an array whose lock a live process holds
 * longer is skipped until the next call.
 *
 * Return: the number of objects removed (arrays freed, temporary files, pool
 * boards and their segments);
 * -EACCES or -ENOENT if /dev/shm cannot be read; -ENOMEM.
 */
SHOAL_API int shoal_reap(void);

/* ---- leaks (lib/leaks.c) --------------------------------------------- */

/** Why an object is listed by shoal_leaks() (shoal_leak.reason). */
enum shoal_leak_reason {
	/** An array every process holder of which is dead (or that nobody
	 *  holds, or freed but still named): shoal_reap() frees it. */
	SHOAL_LEAK_DEAD_HOLDERS = 1,
	/** An array held only by queues (handles in transit) none of which
	 *  has a live participant: nobody will pop them. Freed when the
	 *  queues are unlinked (shoal_queue_unlink()). */
	SHOAL_LEAK_UNREAD_QUEUE = 2,
	/** An array a live process has held for at least the age asked
	 *  (judged by the array's and the process's ages: the ledger keeps no
	 *  time per reference). Freed when that process releases or exits. */
	SHOAL_LEAK_OLD_REFERENCE = 3,
	/** A pool's task board whose supervisor died: shoal_reap() removes it
	 *  with its spills. */
	SHOAL_LEAK_DEAD_POOL = 4,
	/** A creator's temporary file ("shoal..tmp.<pid>.*"), its creator
	 *  dead: shoal_reap() removes it. */
	SHOAL_LEAK_DEAD_CREATE = 5,
};

/**
 * struct shoal_leak - one object nobody will free, from shoal_leaks().
 * @name: the object's name (a temporary file: its file name without
 *        "shoal.").
 * @reason: enum shoal_leak_reason.
 * @creator: who created it (pid and start time).
 * @creator_alive: whether the creator still runs.
 * @age_ns: time since it was created (0 for a temporary file).
 * @bytes: what reclaiming it would free: the object's size in the
 *        directory (its file's allocated blocks).
 * @holder: for SHOAL_LEAK_OLD_REFERENCE, the live process that holds it;
 *        else zero.
 * @references: the references involved: dead processes' (DEAD_HOLDERS),
 *        the queues' (UNREAD_QUEUE), the live holder's (OLD_REFERENCE).
 */
struct shoal_leak {
	char name[SHOAL_NAME_MAX + 1];
	int reason;
	struct shoal_proc creator;
	bool creator_alive;
	uint64_t age_ns;
	uint64_t bytes;
	struct shoal_proc holder;
	uint32_t references;
};

/**
 * shoal_leaks() - list the objects in the directory that nobody will free.
 * @min_age_ns: report SHOAL_LEAK_OLD_REFERENCE for references at least
 *        this old; 0 reports none of them.
 * @out: filled with up to @cap leaks, in directory order; may be NULL if
 *        @cap is 0.
 * @cap: entries at @out.
 *
 * Looks, never changes, and maps nothing: every object is read with pread
 * into private memory as untrusted input (corrupt or foreign ones are
 * skipped), arrays without a reference (their headers and ledger), queues
 * without joining them (shoal_queue_observe()). Safe against truncation:
 * an object truncated or rewritten by its owner while the walk reads it
 * cannot stop the caller with SIGBUS; it is skipped as a corrupt one is
 * (`shoal ls` names it), and the walk goes on with the others. Liveness is
 * asked once per process. One array is listed once, under the first
 * reason that holds, in the order of enum shoal_leak_reason. Blocking,
 * bounded: linear in the objects in the directory. Thread-safe.
 *
 * Return: the number of leaks found (may exceed @cap); -EINVAL for NULL
 * @out with @cap > 0; -EACCES or -ENOENT if the directory cannot be read;
 * an error of shoal_dir() (-ENOTDIR, -EINVAL, ...) if SHOAL_DIR was
 * refused; -ENOMEM.
 */
SHOAL_API int shoal_leaks(uint64_t min_age_ns, struct shoal_leak *out, size_t cap);

/* ---- arrays in queues (lib/queue_arrays.c) ------------------------ */

/*
 * A handle in a queue keeps its array alive until a consumer takes it: the
 * queue itself holds one reference per handle inside it (a ledger line of
 * its own, not any process's), so a producer may release right after
 * pushing. The consumer takes that reference over when it attaches. When
 * the queue is unlinked, the references it still holds are dropped
 * (shoal_queue_unlink() reaps them), and so are those of a consumer that
 * died between popping a handle and attaching it.
 */

/**
 * shoal_queue_hold_array() - give queue @q one reference to @a.
 * @q: the queue the handle of @a is about to be pushed into.
 * @a: an array this process holds.
 *
 * Call before pushing the handle; if the push then fails, give it back with
 * shoal_queue_unhold_array(). Blocking (the array's ledger lock, briefly);
 * any thread may call it.
 *
 * Return: 0; -EINVAL for NULL arguments; -ENOENT if @a was freed; -EUSERS
 * if the array's ledger has no free line; -ENOSPC and -ENOMEM as
 * shoal_array_attach() (a new page of the overflow ledger); -EOVERFLOW if
 * the queue's count would overflow; -EDEADLK if the ledger lock could not
 * be had in 10 s; -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_queue_hold_array(struct shoal_queue *q, struct shoal_array *a);

/**
 * shoal_queue_unhold_array() - take back a reference given to @q.
 * @q: the queue.
 * @a: the array.
 *
 * For a push that failed after shoal_queue_hold_array(). If it was the last
 * reference, the array is freed. Blocking, briefly; any thread.
 *
 * Return: 0; -EINVAL for NULL arguments; -ENOENT if @q holds no reference
 * to @a; -EDEADLK; -EIO if /proc could not tell the caller's identity.
 */
SHOAL_API int shoal_queue_unhold_array(struct shoal_queue *q, struct shoal_array *a);

/**
 * shoal_queue_attach_array() - attach a handle popped from @q, taking over
 * the reference the queue held for it.
 * @q: the queue the handle was popped from.
 * @handle: the handle, as popped (NUL-terminated).
 * @flags: SHOAL_RDONLY, SHOAL_PREFAULT.
 * @out: the array, holding one reference of this process.
 *
 * If @q holds no reference for it (the handle was pushed without one, or
 * the queue's references were reaped), a fresh reference is taken instead.
 * Blocking, briefly; any thread.
 *
 * Return: 0; -EINVAL for NULL arguments, bad flags or a malformed handle;
 * -ENOENT if the array is gone; as shoal_array_attach() otherwise.
 */
SHOAL_API int shoal_queue_attach_array(struct shoal_queue *q, const char *handle, unsigned int flags,
				       struct shoal_array **out);

/**
 * shoal_queue_push_array() - push the handle of @a into @q, with a
 * reference for the queue.
 * @q: the queue; its max_msg must be at least SHOAL_HANDLE_MAX.
 * @a: an array this process holds; the caller may release it at once.
 * @timeout_ns: as shoal_queue_push().
 *
 * Lock-free in the queue, blocking briefly on the array's ledger.
 *
 * Return: 0; as shoal_queue_hold_array() and shoal_queue_push() otherwise
 * (on any failure the queue holds nothing more than before).
 */
SHOAL_API int shoal_queue_push_array(struct shoal_queue *q, struct shoal_array *a, int64_t timeout_ns);

/**
 * shoal_queue_pop_array() - pop a handle pushed by shoal_queue_push_array()
 * and attach it.
 * @q: the queue.
 * @flags: SHOAL_RDONLY, SHOAL_PREFAULT.
 * @out: the array, holding one reference of this process.
 * @timeout_ns: as shoal_queue_pop().
 *
 * Return: 0; as shoal_queue_pop() and shoal_queue_attach_array() otherwise:
 * -EMSGSIZE for a message longer than any handle (it stays in the queue);
 * -EINVAL for a shorter message that is not a handle, a NUL byte inside
 * included (it is consumed);
 * -ENOENT for a handle whose array is gone (consumed). A handle popped
 * whose attach then fails (-EUSERS, -ENOSPC, -EDEADLK, -ENOMEM, -EMFILE) is
 * consumed too, and the queue keeps its reference until the queue is
 * unlinked.
 */
SHOAL_API int shoal_queue_pop_array(struct shoal_queue *q, unsigned int flags, struct shoal_array **out,
				    int64_t timeout_ns);


/* ---- memstat (lib/memstat.c) --------------------------------------- */

/** Also read /proc/PID/smaps_rollup (PSS, USS, private dirty, swap PSS). */
#define SHOAL_MEMSTAT_SMAPS 0x1u

/**
 * struct shoal_memstat - what a process costs in memory, in bytes.
 * @rss: resident set (VmRSS): every page mapped and present, shared or not.
 * @anon: resident anonymous pages (RssAnon): heap, stacks, private copies.
 * @shmem: resident shared-memory pages (RssShmem): shm segments, tmpfs.
 * @file: resident file-backed pages (RssFile): code, mapped files.
 * @swap: swapped-out anonymous pages (VmSwap).
 * @peak: the RSS high-water mark (VmHWM).
 * @private_bytes: @anon + @swap: what the process alone holds, and what
 *         returns to the system when it ends. Worker recycling uses this.
 * @pss: proportional set size (smaps_rollup only).
 * @uss: unique set size, private clean + private dirty (smaps_rollup only).
 * @private_dirty: private dirty pages (smaps_rollup only).
 * @swap_pss: proportional swap (smaps_rollup only).
 * @flags: SHOAL_MEMSTAT_SMAPS if the smaps_rollup fields were filled.
 */
struct shoal_memstat {
	uint64_t rss;
	uint64_t anon;
	uint64_t shmem;
	uint64_t file;
	uint64_t swap;
	uint64_t peak;
	uint64_t private_bytes;
	uint64_t pss;
	uint64_t uss;
	uint64_t private_dirty;
	uint64_t swap_pss;
	unsigned int flags;
};

/**
 * shoal_memstat() - read the memory use of a process.
 * @pid: the process, or 0 for the caller.
 * @flags: 0 for the cheap reading from /proc/PID/status (kernel counters:
 *         a few microseconds whatever the process maps), or
 *         SHOAL_MEMSTAT_SMAPS to add PSS, USS, private dirty and swap PSS
 *         from /proc/PID/smaps_rollup (the kernel walks the page tables:
 *         cost grows with the mapped size, see docs/memstat.md).
 * @out: filled on success; fields not asked for are zero.
 *
 * Thread-safe; blocking only as a /proc read is.
 *
 * Return: 0; -EINVAL for a negative @pid, unknown @flags or NULL @out;
 * -ESRCH if no such process runs (a zombie counts as gone); -EACCES or
 * -EPERM if the process belongs to another user and smaps_rollup was asked
 * for; -EIO if smaps_rollup could not be parsed.
 */
SHOAL_API int shoal_memstat(pid_t pid, unsigned int flags, struct shoal_memstat *out);


/* ---- pool (lib/pool*.c) -------------------------------------------- */

struct shoal_pool;
struct shoal_pool_worker;

/**
 * typedef shoal_pool_fn - the function a C worker runs for each task.
 * @arg: shoal_pool_config.fn_arg.
 * @in: the task's bytes, @len of them (valid for the call only).
 * @out: set to a malloc()ed result (or NULL for none); the pool frees it.
 * @out_len: its length.
 *
 * Return: 0, or a negative error code delivered as the task's result.err.
 */
typedef int (*shoal_pool_fn)(void *arg, const void *in, size_t len, void **out, size_t *out_len);

/**
 * typedef shoal_pool_spawn_fn - start a worker (for hosts such as Python
 * that start their own processes).
 * @arg: shoal_pool_config.hook_arg.
 * @board: the pool's board name, for shoal_pool_worker_open().
 * @seat: the worker's seat, for shoal_pool_worker_open().
 * @gen: the seat's generation, for shoal_pool_worker_open().
 *
 * Called from the supervisor thread, with no pool lock held.
 * Return: the new process's pid, or a negative errno.
 */
typedef pid_t (*shoal_pool_spawn_fn)(void *arg, const char *board, uint32_t seat, uint64_t gen);

/**
 * typedef shoal_pool_join_fn - join a worker the host started: collect its
 * exit status, once it has exited.
 * @arg: shoal_pool_config.hook_arg.
 * @pid: as returned by the spawn hook.
 *
 * Called from the pool's exit watcher thread, with no pool lock held.
 * Return: a waitpid() status, or a negative errno if unknown.
 */
typedef int (*shoal_pool_join_fn)(void *arg, pid_t pid);

/** Why a worker was replaced (indices of shoal_pool_stats.recycles). */
enum shoal_pool_reason {
	SHOAL_POOL_TASKS = 0,  /**< max_tasks reached */
	SHOAL_POOL_MEMORY = 1, /**< over max_private after trimming (soft) */
	SHOAL_POOL_HARD = 2,   /**< over hard_private: terminated mid-task */
	SHOAL_POOL_AGE = 3,    /**< max_age_ns reached */
	SHOAL_POOL_DIED = 4,   /**< died on its own: signal, OOM, exit */
	SHOAL_POOL_NREASONS = 5,
};

/* Limits of struct shoal_pool_config, and the defaults its zero fields take. */
#define SHOAL_POOL_WORKERS_MAX 256              /**< @workers: 1..this */
#define SHOAL_POOL_PREFETCH_MAX 256             /**< @prefetch: at most this */
#define SHOAL_POOL_INLINE_BYTES_MAX (64u << 20) /**< @inline_bytes: at most this */
#define SHOAL_POOL_MAX_ATTEMPTS_DEFAULT 3
#define SHOAL_POOL_GRACE_NS_DEFAULT 1000000000ull /**< 1 s */
#define SHOAL_POOL_CHECK_NS_DEFAULT 20000000ull   /**< 20 ms */
/** @inline_bytes and @prefetch for workers the fork server runs (@fn). */
#define SHOAL_POOL_INLINE_BYTES_DEFAULT 4096
#define SHOAL_POOL_PREFETCH_DEFAULT 32
/**
 * @prefetch for @fn workers when there are no more of them than CPUs the
 * caller may run on: a worker that runs out of cells then leaves its CPU
 * idle until the supervisor refills them, so it is handed more ahead.
 */
#define SHOAL_POOL_PREFETCH_FEW_DEFAULT 64
/**
 * @inline_bytes and @prefetch for workers a @spawn hook starts: a host's
 * worker (an interpreter) pays far more per task taken from the board than
 * a C worker, so it is handed more tasks ahead and reads larger pickles in
 * place (bench/run pool, pool.tiny_tasks).
 */
#define SHOAL_POOL_HOSTED_INLINE_BYTES_DEFAULT 8192
#define SHOAL_POOL_HOSTED_PREFETCH_DEFAULT 128

/**
 * struct shoal_pool_config - how a pool runs. Zero fields take defaults.
 * @name: the board's object name; NULL makes "pool.<pid>.<random>".
 * @workers: how many workers run at once, 1..SHOAL_POOL_WORKERS_MAX.
 * @max_tasks: recycle a worker after this many tasks; 0: never.
 * @max_tasks_jitter: percent, 0..100: each worker's task limit is drawn
 *         from [max_tasks * (100 - jitter) / 100, max_tasks] so workers do
 *         not all restart together.
 * @max_private: soft limit on a worker's private memory (anonymous RSS +
 *         swap), bytes; 0: none. Checked between tasks: the worker trims
 *         first (malloc_trim; gc in Python) and is recycled only if still
 *         over.
 * @hard_private: hard limit, bytes; 0: none. Checked while tasks run: the
 *         worker gets SIGTERM, then SIGKILL after @grace_ns; its task runs
 *         again (it counts as an attempt).
 * @max_age_ns: recycle a worker this long after it started; 0: never.
 * @max_attempts: runs of one task before it fails with SHOAL_EWORKERLOST;
 *         default SHOAL_POOL_MAX_ATTEMPTS_DEFAULT (3).
 * @grace_ns: SIGTERM to SIGKILL, and how long shoal_pool_destroy() waits
 *         for workers to leave; default 1 s.
 * @check_ns: how often busy workers' memory is read; default 20 ms.
 * @inline_bytes: task and result bytes that travel inside the board,
 *         rounded up to 64; larger ones go through a shoal segment. Default
 *         SHOAL_POOL_INLINE_BYTES_DEFAULT (4096) with @fn,
 *         SHOAL_POOL_HOSTED_INLINE_BYTES_DEFAULT (8192) with @spawn.
 * @prefetch: tasks handed to one worker ahead of time, 1..256; default
 *         SHOAL_POOL_PREFETCH_DEFAULT (32) with @fn, or
 *         SHOAL_POOL_PREFETCH_FEW_DEFAULT (64) when @workers is at most the
 *         CPUs the caller may run on (sched_getaffinity());
 *         SHOAL_POOL_HOSTED_PREFETCH_DEFAULT (128) with @spawn.
 * @fn: what C workers run, forked by the pool's fork server (a child of
 *         the caller forked at shoal_pool_create(), before the pool's
 *         threads): they start with fds 0-2 only and the caller's memory as
 *         of shoal_pool_create().
 * @fn_arg: passed to @fn.
 * @spawn: start workers another way (NULL: the fork server runs @fn).
 * @join: collect the status of workers @spawn started (NULL: the server's).
 * @hook_arg: passed to @spawn and @join.
 */
struct shoal_pool_config {
	const char *name;
	unsigned int workers;
	uint64_t max_tasks;
	unsigned int max_tasks_jitter;
	uint64_t max_private;
	uint64_t hard_private;
	uint64_t max_age_ns;
	unsigned int max_attempts;
	uint64_t grace_ns;
	uint64_t check_ns;
	size_t inline_bytes;
	unsigned int prefetch;
	shoal_pool_fn fn;
	void *fn_arg;
	shoal_pool_spawn_fn spawn;
	shoal_pool_join_fn join;
	void *hook_arg;
};

/**
 * struct shoal_pool_result - a finished task.
 * @id: as returned by shoal_pool_submit().
 * @err: 0; the worker function's error; SHOAL_EWORKERLOST (negated) if its
 *       worker died @attempts times running it; -ECANCELED if the pool was
 *       destroyed first; -ECHILD if no worker could be started.
 * @signal: for SHOAL_EWORKERLOST, the signal that ended the last worker
 *       (0 if it exited).
 * @attempts: how many times the task was started.
 * @exit_code: for SHOAL_EWORKERLOST with @signal 0, the exit status the
 *       last worker exited with (0-255).
 * @hard_limit: for SHOAL_EWORKERLOST, 1 if the pool's hard memory limit
 *       (@hard_private) ended the last worker (it sent the signal), else 0.
 * @reserved: zero.
 * @last_private: for SHOAL_EWORKERLOST, the last private memory reading of
 *       the worker that died, bytes.
 * @data: the result bytes (malloc()ed; NULL if none); free with
 *       shoal_pool_result_free().
 * @len: their length.
 */
struct shoal_pool_result {
	uint64_t id;
	int err;
	int signal;
	uint32_t attempts;
	uint8_t exit_code;
	uint8_t hard_limit;
	uint8_t reserved[2];
	uint64_t last_private;
	void *data;
	size_t len;
};

/**
 * struct shoal_pool_stats - one worker position (a worker and the ones that
 * replaced it).
 * @pid: the current worker (0 while none runs).
 * @tasks: tasks the current worker has finished.
 * @tasks_total: tasks finished at this position, all workers.
 * @private_now: the current worker's last private memory reading, bytes.
 * @private_peak: the highest reading at this position, bytes.
 * @recycles: replacements by reason (enum shoal_pool_reason).
 * @last_reason: the reason of the last replacement, or -1.
 * @trims: soft-limit trims asked of workers at this position.
 */
struct shoal_pool_stats {
	pid_t pid;
	uint64_t tasks;
	uint64_t tasks_total;
	uint64_t private_now;
	uint64_t private_peak;
	uint64_t recycles[SHOAL_POOL_NREASONS];
	int last_reason;
	uint64_t trims;
};

/**
 * struct shoal_pool_info - the pool as a whole.
 * @pending: tasks waiting for a worker.
 * @running: tasks handed to workers and not finished.
 * @completed: results delivered or waiting to be.
 * @lost: tasks failed with SHOAL_EWORKERLOST.
 * @config_reason: -1, or the enum shoal_pool_reason of a limit a fresh
 *       worker already exceeded (reported once; that limit is then not
 *       applied to workers that start over it).
 * @config_private: the fresh worker's private memory then, bytes.
 * @spawn_error: the last error of starting a worker (0 if none).
 * @recycle_ns_median: over the last 64 replacements, the median time from
 *       the decision to replace a worker (or its death) to its replacement
 *       being ready; 0 before the first.
 */
struct shoal_pool_info {
	uint64_t pending;
	uint64_t running;
	uint64_t completed;
	uint64_t lost;
	int config_reason;
	uint64_t config_private;
	int spawn_error;
	uint64_t recycle_ns_median;
};

/**
 * shoal_pool_create() - create a task board and start its workers.
 * @cfg: the configuration; @cfg->fn, or @cfg->spawn and @cfg->join.
 * @out: the pool.
 *
 * Without @cfg->spawn, first forks the fork server (one child process
 * until shoal_pool_destroy()). Then starts a supervisor thread and an
 * exit watcher thread in the caller, and @cfg->workers workers. Reaps, on
 * the way, the boards of default name whose supervisor is dead.
 * Thread-safe.
 *
 * Return: 0; -EINVAL for a NULL argument, workers outside 1..256, jitter
 * over 100, prefetch over 256, no @fn and no @spawn, or @spawn without @join;
 * -EEXIST if @cfg->name is taken; the errors of shoal_segment_create();
 * -EAGAIN or -ENOMEM if a thread, or the fork server, could not be
 * started; -EMFILE or -ENFILE if its socketpair could not be made.
 */
SHOAL_API int shoal_pool_create(const struct shoal_pool_config *cfg, struct shoal_pool **out);

/**
 * shoal_pool_submit() - queue a task.
 * @p: the pool.
 * @data: the task's bytes (copied).
 * @len: how many; more than inline_bytes travel through a shoal segment.
 * @id: set to the task's id (ids rise from 1).
 *
 * Never blocks on workers. Thread-safe.
 *
 * Return: 0; -EINVAL for a NULL @p or @id, or NULL @data with @len > 0;
 * -ENOMEM; -ENOSPC if a large task's segment did not fit, or another error
 * of shoal_segment_create() for it (-EEXIST if its name was taken, -EMFILE,
 * ...); -EPIPE if the pool is being destroyed (a call from its join hook
 * then); -ECHILD if workers keep failing to start (five in a row: the spawn
 * fails, or they die before they are ready).
 */
SHOAL_API int shoal_pool_submit(struct shoal_pool *p, const void *data, size_t len, uint64_t *id);

/**
 * shoal_pool_submit_many() - queue @n tasks at once (one lock, one wake).
 * @p: the pool.
 * @data: the tasks' bytes, back to back (copied).
 * @lens: @n lengths.
 * @n: how many tasks.
 * @first_id: set to the first task's id; the others follow in order.
 *
 * All or nothing. Thread-safe.
 *
 * Return: 0; -EINVAL for NULL arguments or lengths that overflow; -ENOMEM;
 * -ENOSPC or another error of shoal_segment_create() for a large task's
 * segment, as shoal_pool_submit(); -EPIPE if the pool is being destroyed;
 * -ECHILD if workers keep failing to start (five in a row: the spawn
 * fails, or they die before they are ready).
 */
SHOAL_API int shoal_pool_submit_many(struct shoal_pool *p, const void *data, const size_t *lens,
				     size_t n, uint64_t *first_id);

/**
 * shoal_pool_wait() - take finished tasks.
 * @p: the pool.
 * @timeout_ns: 0 to poll, < 0 to wait for ever.
 * @out: up to @cap results, in completion order.
 * @cap: at least 1.
 *
 * Blocking. Thread-safe; each result goes to exactly one caller.
 *
 * Return: the number of results (>= 1); -EINVAL for NULL arguments or
 * @cap 0; -ETIMEDOUT; -EPIPE once the pool is being destroyed.
 */
SHOAL_API int shoal_pool_wait(struct shoal_pool *p, int64_t timeout_ns, struct shoal_pool_result *out,
			      size_t cap);

/**
 * shoal_pool_wait_into() - take finished tasks, their data copied into one
 * buffer (for bindings: nothing to free, one copy per batch).
 * @p: the pool.
 * @timeout_ns: 0 to poll, < 0 to wait for ever.
 * @out: up to @cap results, in completion order; each @data points into
 *       @buf, one after another, and must not be passed to
 *       shoal_pool_result_free().
 * @cap: at least 1.
 * @buf: where the results' bytes go.
 * @buf_len: its size. Results that do not fit stay for the next call.
 *
 * Blocking. Thread-safe; each result goes to exactly one caller.
 *
 * Return: the number of results (>= 1); -ENOBUFS if the first result's
 * data alone does not fit (it stays queued, and @out[0].len says how many
 * bytes it needs); the errors of shoal_pool_wait().
 */
SHOAL_API int shoal_pool_wait_into(struct shoal_pool *p, int64_t timeout_ns,
				   struct shoal_pool_result *out, size_t cap, void *buf, size_t buf_len);

/**
 * shoal_pool_result_free() - free a result's data.
 * @r: a result from shoal_pool_wait(), or NULL.
 */
SHOAL_API void shoal_pool_result_free(struct shoal_pool_result *r);

/**
 * shoal_pool_cancel() - drop a task that no worker has started.
 * @p: the pool.
 * @id: the task.
 *
 * A cancelled task produces no result. A task a worker was handed ahead
 * of time (prefetched) but has not started counts as not started: it is
 * taken back from the worker's cells, with the ones handed after it, which
 * go back to the head of the backlog in their order. Thread-safe; blocking
 * (the pool's lock, held for a walk of the backlog's head and the cells).
 *
 * Return: 0; -EBUSY if a worker has started it (its result will come);
 * -ENOENT if no such task is waiting (unknown, finished or cancelled);
 * -EINVAL for a NULL @p.
 */
SHOAL_API int shoal_pool_cancel(struct shoal_pool *p, uint64_t id);

/**
 * shoal_pool_cancel_range() - drop every task of a range that no worker
 * has started.
 * @p: the pool.
 * @first: the range's first task id.
 * @count: how many ids, from @first.
 * @cancelled: NULL, or @count bytes: byte k is set to 1 if task
 *             @first + k was cancelled, else to 0.
 *
 * shoal_pool_cancel() for each id in [@first, @first + @count), in one
 * call under one hold of the pool's lock: one walk of the cells and one of
 * the backlog (up to its first id past the range), however long the
 * range, where a call per task costs a foreign caller a million calls for
 * a map of a million tasks. Ids in the range that are running, done,
 * unknown or cancelled before are left as they are. Thread-safe; blocking
 * (the pool's lock).
 *
 * Return: how many tasks were cancelled (0 or more); -EINVAL for a NULL
 * @p or a range past the largest id (@first + @count over 2^64 - 1, or
 * @count over INT64_MAX).
 */
SHOAL_API int64_t shoal_pool_cancel_range(struct shoal_pool *p, uint64_t first, uint64_t count,
					  uint8_t *cancelled);

/**
 * enum shoal_pool_task_state - where a task is (shoal_pool_task_state()).
 */
enum shoal_pool_task_state {
	SHOAL_POOL_TASK_PENDING = 0,  /**< waiting for a worker */
	SHOAL_POOL_TASK_ASSIGNED = 1, /**< handed to a worker, not started */
	SHOAL_POOL_TASK_RUNNING = 2,  /**< a worker runs it */
	SHOAL_POOL_TASK_DONE = 3,     /**< its result waits to be taken */
};

/**
 * shoal_pool_task_state() - where a task is now.
 * @p: the pool.
 * @id: the task.
 *
 * A snapshot: the task may move on before the caller looks. A worker that
 * has finished the task but not yet handed its result to the supervisor
 * shows it RUNNING. Thread-safe; blocking (takes the pool's lock, walks the
 * backlog and the workers' cells: meant for a query now and then, not per
 * task).
 *
 * Return: an enum shoal_pool_task_state; -ENOENT if no such task is in the
 * pool (never submitted, cancelled, or its result already taken); -EINVAL
 * for a NULL @p.
 */
SHOAL_API int shoal_pool_task_state(struct shoal_pool *p, uint64_t id);

/**
 * shoal_pool_stats() - per worker position statistics.
 * @p: the pool.
 * @out: filled with up to @cap entries, one per position.
 * @cap: entries in @out.
 *
 * Thread-safe.
 *
 * Return: the number of positions (may exceed @cap); -EINVAL for NULL.
 */
SHOAL_API int shoal_pool_stats(struct shoal_pool *p, struct shoal_pool_stats *out, size_t cap);

/**
 * shoal_pool_info() - the pool's counters.
 * @p: the pool.
 * @out: filled.
 *
 * Return: 0; -EINVAL for NULL.
 */
SHOAL_API int shoal_pool_info(struct shoal_pool *p, struct shoal_pool_info *out);

/** What a seat of a pool's board is doing (shoal_pool_worker_view.state). */
enum shoal_pool_seat_state {
	SHOAL_POOL_SEAT_STARTING = 1, /**< started, not yet ready */
	SHOAL_POOL_SEAT_READY = 2,    /**< takes tasks */
	SHOAL_POOL_SEAT_RETIRING = 3, /**< told to leave once its tasks are done */
};

/**
 * struct shoal_pool_worker_view - a worker of a pool, from
 * shoal_pool_observe().
 * @seat: its seat on the board.
 * @position: the worker position it serves (0..workers-1, as in
 *         shoal_pool_stats()), or -1 on a board of a library that does
 *         not publish it.
 * @state: enum shoal_pool_seat_state.
 * @pid: the worker (0 while it has not opened the board yet).
 * @alive: false once @pid is certainly gone.
 * @generation: the seat's count of workers.
 * @tasks: tasks this worker finished.
 * @private_bytes: its private memory now (anonymous RSS + swap,
 *         shoal_memstat()); 0 if it could not be read.
 * @recycles: its position's replacements by reason (enum shoal_pool_reason).
 */
struct shoal_pool_worker_view {
	uint32_t seat;
	int position;
	int state;
	pid_t pid;
	bool alive;
	uint64_t generation;
	uint64_t tasks;
	uint64_t private_bytes;
	uint64_t recycles[SHOAL_POOL_NREASONS];
};

/**
 * struct shoal_pool_view - a pool's task board seen from outside, by
 * shoal_pool_observe().
 * @supervisor: the process that owns the pool (the board's creator).
 * @supervisor_alive: false once it is certainly gone (the board is then
 *         stale: shoal_reap() removes it).
 * @seats: seats on the board (2 * workers + 2).
 * @prefetch: cells per seat.
 * @inline_bytes: task and result bytes a cell carries.
 * @workers: seats that hold a worker.
 * @tasks_running: cells holding a task handed out and not yet collected.
 * @tasks_done: tasks the current workers finished (the sum of @tasks).
 * @recycles: replacements by reason, summed over positions.
 * @published: the supervisor publishes the per-worker figures (@position,
 *         @tasks, @recycles); false on a board of an older library.
 */
struct shoal_pool_view {
	struct shoal_proc supervisor;
	bool supervisor_alive;
	uint32_t seats;
	uint32_t prefetch;
	uint64_t inline_bytes;
	uint32_t workers;
	uint64_t tasks_running;
	uint64_t tasks_done;
	uint64_t recycles[SHOAL_POOL_NREASONS];
	bool published;
};

/**
 * shoal_pool_observe() - look at a pool's task board without joining it.
 * @board: the board's object name (shoal_pool_name()).
 * @out: filled on success.
 * @workers: filled with up to @cap workers, by seat; may be NULL if @cap
 *         is 0.
 * @cap: entries in @workers.
 *
 * Any process may call it, not only the pool's owner: nothing is mapped
 * (the board's headers, each seat and its cells' state words are read with
 * pread into private memory) and nothing on it changes. Safe against
 * truncation: a board truncated (or rewritten) before or during the call
 * cannot stop the caller with SIGBUS; a file that ends too soon is
 * -EBADMSG, whose shoal_errdetail() names the board and says it was
 * truncated. The figures are those the supervisor keeps for
 * shoal_pool_stats(), as it last wrote them to the board, plus each
 * worker's private memory read now (a /proc read per worker). The board is
 * untrusted input, checked as a worker checks it before reading anything.
 * Thread-safe.
 *
 * Return: the number of seats that hold a worker (may exceed @cap);
 * -EINVAL for a bad name, NULL @out, or NULL @workers with @cap > 0;
 * -ENOENT if there is no such object; -EACCES if it belongs to another
 * user or is group or world writable; -EBADMSG for a corrupt board, a file
 * that is not one, or one truncated before or while it was read; -EPROTO
 * for a layout this library does not read; -EPROTOTYPE if @board is
 * another kind of object; -ENOMEM; -EMFILE, -ENFILE; -EIO if the file
 * cannot be read.
 */
SHOAL_API int shoal_pool_observe(const char *board, struct shoal_pool_view *out,
				 struct shoal_pool_worker_view *workers, size_t cap);

/**
 * shoal_pool_name() - the board's object name.
 * @p: the pool.
 *
 * Return: the name, valid until shoal_pool_destroy().
 */
SHOAL_API const char *shoal_pool_name(const struct shoal_pool *p);

/**
 * shoal_pool_destroy() - stop the workers and free the pool.
 * @p: the pool, or NULL.
 *
 * Workers finish the task they run and leave; any still there after the
 * grace time are killed. Tasks not finished are dropped, results not taken
 * are freed, every segment the pool made is unlinked, and so is what a
 * worker killed inside a create left ("shoal..tmp.<pid>.*", removed as
 * each such worker is joined). The fork server ends. Callers blocked in
 * shoal_pool_wait() get -EPIPE, and destroy waits for them to leave before
 * it frees @p. Must not race with other calls on @p except
 * shoal_pool_wait(); no call may follow it, a wait included.
 *
 * Return: 0; -EDEADLK, and nothing done, when called from the pool's spawn
 * or join hook (the pool's own threads run them: call it from another).
 */
SHOAL_API int shoal_pool_destroy(struct shoal_pool *p);

/**
 * shoal_pool_hooks_hold() - hold back every pool's spawn and join hook
 * calls in this process, for a host about to fork().
 * @timeout_ns: how long to wait for the hook calls under way; 0: try once;
 *         < 0: as long as they take.
 *
 * Waits for the hook calls under way to return, then makes the pools'
 * threads wait before their next hook call until this thread calls
 * shoal_pool_hooks_release(). A host whose hooks enter an interpreter
 * calls it just before fork(): Python's ctypes makes a thread state for
 * each call from a pool thread under the interpreter's own lock, and a
 * child forked while another thread held that lock waits for it forever
 * (CPython 3.11). The caller must not hold what a hook waits for (the
 * GIL: call it through a handle that lets the GIL go), or it waits for
 * itself; a bounded @timeout_ns keeps such a hook from stopping the fork.
 * A hook that waits for another pool's hook calls (as destroying another
 * pool does) can wait for a hold that waits for it: hooks should not. While
 * it holds, the holder must not destroy a pool (the pool's threads may
 * wait at the hold). Holds from several threads take turns. The child of a
 * fork() starts with nothing held: the library makes the gate anew there,
 * so only the parent releases.
 *
 * Return: 0; -ETIMEDOUT, and nothing held, if the calls under way (or
 * another thread's hold) outlast @timeout_ns; -EDEADLK, and nothing held,
 * when called from a spawn or join hook, or by the thread that holds it.
 */
SHOAL_API int shoal_pool_hooks_hold(int64_t timeout_ns);

/**
 * shoal_pool_hooks_release() - let the pools' hook calls go on again.
 *
 * Call it after fork(), in the parent, from the thread that called
 * shoal_pool_hooks_hold().
 *
 * Return: 0; -EPERM if this thread holds nothing (in the child of a fork,
 * too).
 */
SHOAL_API int shoal_pool_hooks_release(void);

/* Worker side: for hosts that start their own workers (spawn hook). */

/**
 * struct shoal_pool_task - a task handed to a worker.
 * @id: the task's id.
 * @attempt: 1 for the first run, more when a worker died running it.
 * @data: its bytes, valid until shoal_pool_worker_done().
 * @len: how many.
 */
struct shoal_pool_task {
	uint64_t id;
	uint32_t attempt;
	const void *data;
	size_t len;
};

/** shoal_pool_worker_next() results. */
#define SHOAL_POOL_EXIT 0 /**< the supervisor retires this worker */
#define SHOAL_POOL_TASK 1 /**< run the task, then shoal_pool_worker_done() */
#define SHOAL_POOL_TRIM 2 /**< give memory back, then shoal_pool_worker_trimmed() */

/**
 * shoal_pool_worker_open() - join a pool as the worker of @seat.
 * @board: the name the spawn hook was given.
 * @seat: likewise.
 * @gen: likewise.
 * @out: the worker handle.
 *
 * Announces the worker ready. Call once, in the new process.
 *
 * Return: 0; -EINVAL for NULL arguments; -ESTALE if @seat is not (any
 * more) of generation @gen; the errors of shoal_segment_open() (-EBADMSG if
 * the board's geometry does not hold).
 */
SHOAL_API int shoal_pool_worker_open(const char *board, uint32_t seat, uint64_t gen,
				     struct shoal_pool_worker **out);

/**
 * shoal_pool_worker_next() - wait for the next thing to do.
 * @w: the worker.
 * @timeout_ns: 0 to poll, < 0 to wait for ever.
 * @t: filled for SHOAL_POOL_TASK.
 *
 * Sleeps on a futex in the board (never spins). Not thread-safe per @w.
 *
 * Return: SHOAL_POOL_TASK, SHOAL_POOL_TRIM or SHOAL_POOL_EXIT; -ETIMEDOUT;
 * -EPIPE if the supervisor died; -EINVAL if a task is already open. A
 * large task that cannot be read (-ENOMEM, a segment error) or a corrupt
 * cell is not returned: it is finished at once with that error as its
 * result, and the call goes on to the next task.
 */
SHOAL_API int shoal_pool_worker_next(struct shoal_pool_worker *w, int64_t timeout_ns,
				     struct shoal_pool_task *t);

/**
 * shoal_pool_worker_done() - hand back the current task's result.
 * @w: the worker.
 * @err: 0 or the task's error code.
 * @data: the result bytes (copied), NULL if @len is 0; they may lie among
 *         the task's own bytes (the task's @data), which the result is
 *         written over.
 * @len: how many; more than the board's inline space go through a segment.
 *
 * The result is written before the task is marked done, so a worker that
 * dies in between leaves a task that runs again, never a torn result.
 *
 * Return: 0; -EINVAL if no task is open; -ENOSPC, -ENOMEM or another error
 * of shoal_segment_create() if a large result could not be stored (the
 * task is then done with that error).
 */
SHOAL_API int shoal_pool_worker_done(struct shoal_pool_worker *w, int err, const void *data,
				     size_t len);

/**
 * shoal_pool_worker_step() - shoal_pool_worker_done() for the open task, if
 * any, then shoal_pool_worker_next(), in one call (for bindings, where each
 * call costs).
 * @w: the worker.
 * @err: the open task's error code, as for shoal_pool_worker_done().
 * @data: its result bytes, as for shoal_pool_worker_done().
 * @len: how many.
 * @timeout_ns: as for shoal_pool_worker_next().
 * @t: as for shoal_pool_worker_next().
 *
 * With no task open (the first call, or after SHOAL_POOL_TRIM) @err, @data
 * and @len are ignored.
 *
 * Return: as shoal_pool_worker_next(); -EINVAL for a NULL @w or @t, or
 * NULL @data with a non-zero @len while a task is open (that task stays
 * open). A large result that could not be stored is not an error here:
 * the task is done with that error, and the call goes on.
 */
SHOAL_API int shoal_pool_worker_step(struct shoal_pool_worker *w, int err, const void *data,
				     size_t len, int64_t timeout_ns, struct shoal_pool_task *t);

/**
 * shoal_pool_worker_trimmed() - after SHOAL_POOL_TRIM: return freed heap to
 * the system (malloc_trim) and tell the supervisor, which then measures.
 * @w: the worker.
 *
 * Return: 0.
 */
SHOAL_API int shoal_pool_worker_trimmed(struct shoal_pool_worker *w);

/**
 * shoal_pool_worker_run() - the whole worker loop: run @fn on each task
 * until retired.
 * @w: the worker.
 * @fn: the task function.
 * @arg: passed to @fn.
 *
 * Return: 0 when retired; -EPIPE if the supervisor died.
 */
SHOAL_API int shoal_pool_worker_run(struct shoal_pool_worker *w, shoal_pool_fn fn, void *arg);

/**
 * shoal_pool_worker_close() - leave the board.
 * @w: the worker, or NULL.
 */
SHOAL_API void shoal_pool_worker_close(struct shoal_pool_worker *w);


#ifdef __cplusplus
}
#endif

#endif /* SHOAL_H */
