/*
 * pool_board.c - the task board: its layout, its bells, and the segments
 * that carry what does not fit in a cell.
 *
 *     supervisor --task, R1--> cell --claim, R2--> worker
 *     supervisor <--DONE, R3-- cell <--result--    worker
 *     either side --ring--> the other's futex word, if it announced a sleep
 *
 * The board is one shoal segment (lib/segment.c) whose kind header is
 * struct pool_hdr and whose data is the seats (layout in pool.h). Its
 * sizes are decided once, at shoal_pool_create() (pool_board_layout());
 * a worker reads them once into a private copy and checks them against
 * the segment (pool_board_check()) before it trusts any address.
 *
 * Sleeping is on futex words in the board: workers sleep on their seat's
 * bell, the supervisor on the board's event word; each side announces that
 * it sleeps, and the other side wakes it only then (seq_cst on both, the
 * Dekker pattern, as in a futex-based mutex), so a busy pool makes no
 * futex calls.
 *
 * A task or result larger than the board's inline space goes through a
 * segment of its own, named after the board (pool_objects.c makes and
 * parses the names): written whole by one side, then copied out
 * and unlinked by the other. Deaths: a worker that dies writing a result
 * segment leaves it partly written, but its cell never says DONE, so
 * nobody reads it: the supervisor unlinks it when it settles the worker's
 * exit. A dead supervisor's spills go with its board (shoal_reap()). A
 * death between a ring's two steps costs only a wake-up: every sleeper's
 * wait has a timeout (a worker's, a second; the supervisor's, its next
 * deadline, and the exit watcher wakes it).
 */
#include "pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void pool_board_layout(struct pool_hdr *l, uint32_t nseats, uint32_t prefetch,
		       uint64_t inline_bytes)
{
	l->nseats = nseats;
	l->layout = POOL_LAYOUT;
	l->prefetch = prefetch;
	l->inline_bytes = inline_bytes;
	l->cell_size = sizeof(struct pool_cell) + inline_bytes;
	l->seat_size = sizeof(struct pool_seat) + prefetch * l->cell_size;
}

/* The geometry is read once (into @l) and checked against the object. */
int pool_board_check(const struct pool_hdr *l, uint64_t data_size)
{
	uint64_t need = sizeof(struct pool_cell) + l->inline_bytes;

	if (l->layout != POOL_LAYOUT || l->nseats == 0 || l->nseats > 2 * POOL_MAX_WORKERS + 2 || l->prefetch == 0 ||
	    l->prefetch > POOL_MAX_PREFETCH || l->inline_bytes > SHOAL_POOL_INLINE_BYTES_MAX ||
	    l->inline_bytes % 64 != 0 /* else the cells' atomics are misaligned */ ||
	    l->cell_size != need || l->seat_size != sizeof(struct pool_seat) + l->prefetch * need ||
	    l->seat_size * l->nseats > data_size)
		return -EBADMSG;
	return 0;
}

/*
 * Wake a sleeper that announced its sleep in @waiting with a tag made from
 * the count it sleeps on (pool_sleep_tag()). The ringer that takes the tag
 * makes the one system call; the rings after it, before the sleeper has
 * run, find it taken and cost nothing (the sleeper looks at everything once
 * it runs). A load first: while the sleeper is awake, a ring writes the
 * count only. The tag, not a bare flag: a ringer that read one sleep's
 * announcement and was preempted before taking it must not take the next
 * sleep's, whose count already includes its ring (it would wake nobody and
 * leave that sleep unannounced, deaf to every later ring).
 */
static void ring(shoal__atomic_u32 *count, shoal__atomic_u32 *waiting)
{
	uint32_t tag;

	atomic_fetch_add_explicit(count, 1, memory_order_seq_cst);
	tag = atomic_load_explicit(waiting, memory_order_seq_cst);
	if (tag && atomic_compare_exchange_strong_explicit(waiting, &tag, 0, memory_order_seq_cst,
							   memory_order_relaxed))
		shoal__futex_wake(count, INT32_MAX);
}

/* Wake the supervisor: pairs with the sup_waiting store in
 * pool_supervisor_main(). */
void pool_ring_supervisor(struct pool_hdr *h)
{
	ring(&h->event, &h->sup_waiting);
}

/* Wake a worker: pairs with the worker_waiting store in
 * shoal_pool_worker_next(); as above, one system call per sleep, not one
 * per task handed out. */
void pool_ring_worker(struct pool_seat *seat)
{
	ring(&seat->bell, &seat->worker_waiting);
}

/* Large tasks and results: one segment each. */

int pool_spill_put(const char *name, const void *data, size_t len)
{
	struct shoal_segment *s;
	int rc = shoal_segment_create(name, len, NULL, &s);

	if (rc)
		return rc;
	memcpy(shoal_segment_data(s), data, len);
	shoal_segment_close(s);
	return 0;
}

/* Copy a spilled object out into malloc()ed memory; it must hold @len. */
int pool_spill_get(const char *name, size_t len, void **out)
{
	struct shoal_segment *s;
	void *buf;
	int rc = shoal_segment_open(name, SHOAL_RDONLY, &s);

	if (rc)
		return rc;
	if (shoal_segment_size(s) != len) {
		shoal_segment_close(s);
		return -EBADMSG;
	}
	buf = malloc(len);
	if (!buf) {
		shoal_segment_close(s);
		return -ENOMEM;
	}
	memcpy(buf, shoal_segment_data(s), len);
	shoal_segment_close(s);
	*out = buf;
	return 0;
}
