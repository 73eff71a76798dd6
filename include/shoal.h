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
	 *  critical section, and could not be repaired. */
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

/**
 * shoal_version() - the version of the library that is loaded.
 *
 * Compare with SHOAL_VERSION_STRING to catch a header/library mismatch.
 *
 * Return: "MAJOR.MINOR.PATCH", a static string.
 */
SHOAL_API const char *shoal_version(void);

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

/** The prefix every shoal object has in /dev/shm. */
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
 * The memory is reserved at once (posix_fallocate), so a full /dev/shm is
 * -ENOSPC here rather than SIGBUS on a later write. The object is built
 * under a private name and published by an atomic rename, so no opener ever
 * sees it half made. Thread-safe.
 *
 * Return: 0; -EINVAL for a bad name, size 0, NULL @out, unknown flags, or a
 * mode with group or world write bits or without owner read and write;
 * -EOVERFLOW if @size plus the header overflows; -EEXIST if the name is
 * taken; -ENOSPC if /dev/shm has no room; -ENOMEM if the mapping cannot be
 * made; -EMFILE, -ENFILE; -EACCES if /dev/shm refuses us; -EIO if /proc
 * cannot tell who we are.
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

/* ---- end queue ----------------------------------------------------- */

/* ---- array (lib/array.c) ------------------------------------------- */

/* ---- end array ----------------------------------------------------- */

/* ---- memstat (lib/memstat.c) --------------------------------------- */

/* ---- end memstat --------------------------------------------------- */

/* ---- pool (lib/pool.c) --------------------------------------------- */

/* ---- end pool ------------------------------------------------------ */

#ifdef __cplusplus
}
#endif

#endif /* SHOAL_H */
