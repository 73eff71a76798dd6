/*
 * reap.h - what each kind of object supplies to the reaper.
 *
 * shoal_reap() (lib/reap.c) walks /dev/shm and hands each file to its
 * kind's reap function, through a table indexed by the kind in the common
 * header (the creator's temporary files, which have no header yet, by their
 * name). Each function is defined with its kind, knows only its own
 * objects, and returns how many objects it removed:
 *
 *   "shoal..tmp.<pid>.*"  shoal__tmp_reap()    lib/segment.c
 *   array                 shoal__array_reap()  lib/array.c
 *   pool board + spills   shoal__pool_reap()   lib/pool_objects.c
 *   segment, queue        nothing: no process holds anything in them that
 *                         outlives it (a queue recovers a dead
 *                         participant's slots itself, on its next use)
 *
 * Included by reap.c and by the files that define these functions; it
 * includes only internal.h.
 */
#ifndef SHOAL_REAP_H
#define SHOAL_REAP_H

#include "internal.h"

/* A dead creator's "shoal..tmp.<pid>.<random>" (@file, prefix included):
 * 1 if it was removed, 0 if its creator may live or it is not one. */
int shoal__tmp_reap(const char *file);

/*
 * The reaper's word on one holder of an array reference.
 *   KEEP:      alive, or a holder the reaper never judges (a pin)
 *   GONE:      certainly gone: its line goes
 *   ASK_AGAIN: not known yet: keep the line, and call again on this array
 *              once the walk has seen every queue (lib/reap.c, phase 3)
 */
enum shoal__verdict {
	SHOAL__KEEP = 0,
	SHOAL__GONE = 1,
	SHOAL__ASK_AGAIN = 2,
};
typedef enum shoal__verdict (*shoal__judge_fn)(uint64_t holder, void *arg);

/*
 * shoal__array_reap - take back from array @name what gone holders held.
 * @judge: called once for each holder key with references, outside the
 *         array's ledger lock (it reads /proc); the lines it calls GONE
 *         are dropped under the lock, 64 at a time, if they still hold
 *         that key. GONE must be forever (a dead process, a queue
 *         generation no longer in the directory).
 * @ask_again: out: true when @judge said ASK_AGAIN of a line and the array
 *         still stands.
 *
 * Then, as every locker does, an array that nobody holds any more is
 * freed, and one whose freer died before unlinking it is unlinked by us.
 * Waits at most a bounded time (array.c's REAP_TIMEOUT_NS) for a live
 * holder of the ledger lock, then leaves the array for the next walk.
 * Return: 1 if the array was freed here, else 0 (not an array, corrupt,
 * gone meanwhile, locked by a live process, or nothing to do).
 */
int shoal__array_reap(const char *name, shoal__judge_fn judge, void *arg, bool *ask_again);

/*
 * shoal__pool_reap - if pool board @name's supervisor (its creator) is
 * certainly dead, unlink the board and its task and result segments.
 * Return: how many objects went (0 if it is not a board, or its supervisor
 * may live).
 */
int shoal__pool_reap(const char *name);

#endif /* SHOAL_REAP_H */
