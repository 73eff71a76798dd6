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
 * Return: 0; -EINVAL for a bad name, size 0, NULL @out, or a mode with group
 * or world write bits; -EOVERFLOW if @size plus the header overflows; -EEXIST
 * if the name is taken; -ENOSPC if /dev/shm has no room; -ENOMEM; -EMFILE,
 * -ENFILE; -EACCES if /dev/shm refuses us.
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
 * Return: 0, or -EINVAL if munmap failed (the handle is freed anyway).
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
 *         cost grows with the mapped size, see docs/design.md).
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

/* ---- end memstat --------------------------------------------------- */

/* ---- pool (lib/pool.c) --------------------------------------------- */

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
 * @ledger: the pool's ledger name, for shoal_pool_worker_open().
 * @slot: the worker's slot, for shoal_pool_worker_open().
 * @gen: the slot's generation, for shoal_pool_worker_open().
 *
 * Called from the supervisor thread, with no pool lock held.
 * Return: the new process's pid, or a negative errno.
 */
typedef pid_t (*shoal_pool_spawn_fn)(void *arg, const char *ledger, uint32_t slot, uint64_t gen);

/**
 * typedef shoal_pool_reap_fn - collect the exit status of a worker the
 * host started, once it has exited.
 * @arg: shoal_pool_config.hook_arg.
 * @pid: as returned by the spawn hook.
 *
 * Called from the pool's reaper thread, with no pool lock held.
 * Return: a waitpid() status, or a negative errno if unknown.
 */
typedef int (*shoal_pool_reap_fn)(void *arg, pid_t pid);

/** Why a worker was replaced (indices of shoal_pool_stats.recycles). */
enum shoal_pool_reason {
	SHOAL_POOL_TASKS = 0,  /**< max_tasks reached */
	SHOAL_POOL_MEMORY = 1, /**< over max_private after trimming (soft) */
	SHOAL_POOL_HARD = 2,   /**< over hard_private: terminated mid-task */
	SHOAL_POOL_AGE = 3,    /**< max_age_ns reached */
	SHOAL_POOL_DIED = 4,   /**< died on its own: signal, OOM, exit */
	SHOAL_POOL_NREASONS = 5,
};

/**
 * struct shoal_pool_config - how a pool runs. Zero fields take defaults.
 * @name: the ledger's object name; NULL makes "pool.<pid>.<random>".
 * @workers: how many workers run at once, 1..256.
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
 *         default 3.
 * @grace_ns: SIGTERM to SIGKILL, and how long shoal_pool_destroy() waits
 *         for workers to leave; default 1 s.
 * @check_ns: how often busy workers' memory is read; default 20 ms.
 * @inline_bytes: task and result bytes that travel inside the ledger;
 *         larger ones go through a shoal segment. Default 4096.
 * @depth: tasks handed to one worker ahead of time, 1..64; default 2.
 * @fn: what C workers run (with the built-in fork spawner).
 * @fn_arg: passed to @fn.
 * @spawn: start workers another way (NULL: fork, run @fn).
 * @reap: collect the status of workers @spawn started (NULL: waitid).
 * @hook_arg: passed to @spawn and @reap.
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
	unsigned int depth;
	shoal_pool_fn fn;
	void *fn_arg;
	shoal_pool_spawn_fn spawn;
	shoal_pool_reap_fn reap;
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
 * @config_error: 0, or the enum shoal_pool_reason + 1 of a limit a fresh
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
	int config_error;
	uint64_t config_private;
	int spawn_error;
	uint64_t recycle_ns_median;
};

/**
 * shoal_pool_create() - create a ledger and start its workers.
 * @cfg: the configuration; @cfg->fn, or @cfg->spawn and @cfg->reap.
 * @out: the pool.
 *
 * Starts a supervisor thread and a reaper thread in the caller, and
 * @cfg->workers workers. Thread-safe.
 *
 * Return: 0; -EINVAL for a NULL argument, workers outside 1..256, jitter
 * over 100, depth over 64, no @fn and no @spawn, or @spawn without @reap;
 * -EEXIST if @cfg->name is taken; the errors of shoal_segment_create();
 * -EAGAIN or -ENOMEM if a thread could not be started.
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
 * -ENOMEM; -ENOSPC if a large task's segment did not fit; -EPIPE if the pool
 * is being destroyed; -ECHILD if workers keep dying before they start.
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
 * -ENOSPC if a large task's segment did not fit; -EPIPE if the pool is
 * being destroyed; -ECHILD if workers keep dying before they start.
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
 * shoal_pool_result_free() - free a result's data.
 * @r: a result from shoal_pool_wait(), or NULL.
 */
SHOAL_API void shoal_pool_result_free(struct shoal_pool_result *r);

/**
 * shoal_pool_cancel() - drop a task that no worker has started.
 * @p: the pool.
 * @id: the task.
 *
 * A cancelled task produces no result. Thread-safe.
 *
 * Return: 0; -EBUSY if a worker has it already; -ENOENT if no such task is
 * waiting (unknown or finished); -EINVAL for a NULL @p.
 */
SHOAL_API int shoal_pool_cancel(struct shoal_pool *p, uint64_t id);

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

/**
 * shoal_pool_name() - the ledger's object name.
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
 * are freed, every segment the pool made is unlinked. Callers blocked in
 * shoal_pool_wait() get -EPIPE. Must not race with other calls on @p
 * except shoal_pool_wait().
 *
 * Return: 0.
 */
SHOAL_API int shoal_pool_destroy(struct shoal_pool *p);

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
 * shoal_pool_worker_open() - join a pool as the worker of @slot.
 * @ledger: the name the spawn hook was given.
 * @slot: likewise.
 * @gen: likewise.
 * @out: the worker handle.
 *
 * Announces the worker ready. Call once, in the new process.
 *
 * Return: 0; -EINVAL for NULL arguments; -ESTALE if @slot is not (any
 * more) of generation @gen; the errors of shoal_segment_open() (-EBADMSG if
 * the ledger's geometry does not hold).
 */
SHOAL_API int shoal_pool_worker_open(const char *ledger, uint32_t slot, uint64_t gen,
				     struct shoal_pool_worker **out);

/**
 * shoal_pool_worker_next() - wait for the next thing to do.
 * @w: the worker.
 * @timeout_ns: 0 to poll, < 0 to wait for ever.
 * @t: filled for SHOAL_POOL_TASK.
 *
 * Sleeps on a futex in the ledger (never spins). Not thread-safe per @w.
 *
 * Return: SHOAL_POOL_TASK, SHOAL_POOL_TRIM or SHOAL_POOL_EXIT; -ETIMEDOUT;
 * -EPIPE if the supervisor died; -ENOMEM or a segment error if a large
 * task could not be read; -EINVAL if a task is already open.
 */
SHOAL_API int shoal_pool_worker_next(struct shoal_pool_worker *w, int64_t timeout_ns,
				     struct shoal_pool_task *t);

/**
 * shoal_pool_worker_done() - hand back the current task's result.
 * @w: the worker.
 * @err: 0 or the task's error code.
 * @data: the result bytes (copied), NULL if @len is 0.
 * @len: how many; more than the ledger's inline space go through a segment.
 *
 * The result is written before the task is marked done, so a worker that
 * dies in between leaves a task that runs again, never a torn result.
 *
 * Return: 0; -EINVAL if no task is open; -ENOSPC or -ENOMEM if a large
 * result could not be stored (the task is then done with that error).
 */
SHOAL_API int shoal_pool_worker_done(struct shoal_pool_worker *w, int err, const void *data,
				     size_t len);

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
 * shoal_pool_worker_close() - leave the ledger.
 * @w: the worker, or NULL.
 */
SHOAL_API void shoal_pool_worker_close(struct shoal_pool_worker *w);

/* ---- end pool ------------------------------------------------------ */

#ifdef __cplusplus
}
#endif

#endif /* SHOAL_H */
