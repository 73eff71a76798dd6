/*
 * reap.c - shoal_reap(): take back what dead processes held, with no
 * daemon. Any process may call it, at any time, as often as it likes.
 *
 * It owns the walk of /dev/shm and nothing of any kind's layout:
 *
 *   /dev/shm/shoal.*  --shoal__each_object-->  reap_one(file)
 *       "shoal..tmp.*"         -> shoal__tmp_reap()              (segment.c)
 *       anything else: shoal__segment_peek() reads the common header;
 *       kinds[hdr.kind].reap   -> array: shoal__array_reap()     (array.c)
 *                              -> pool:  shoal__pool_reap()      (pool_objects.c)
 *                              -> segment, queue: nothing to take back
 *   the sum of what each removed is what shoal_reap() returns.
 *
 * The one thing the walk itself decides is whether a holder of an array
 * reference is gone (judge()): a process by its key (pid + start time,
 * answers cached for the walk), a queue by whether a queue of that
 * generation is still in /dev/shm, which only a view of the whole directory
 * can tell (phases 2 and 3 below). A header whose kind this library does
 * not know fails the peek and is skipped; a kind it knows but has no reap
 * function for is left alone.
 *
 * Dying in here leaves nothing: the walk's state is private memory, and
 * each kind's reap function is written so that any process may die at any
 * instruction of it (the array's under its ledger lock, as every locker;
 * unlinks are single system calls that the next walk repeats if needed).
 */
#include "reap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/*
 * One walk of shoal_reap(). Queue holders are judged in two phases so the
 * walk stays linear in objects (once it rescanned /dev/shm for every array
 * a queue held: 2000 handles in one queue took 55 s):
 *   1. every array is visited once; process holders are judged there, and
 *      the queue keys on its lines are noted (@seen) with the array's name
 *      (@revisit), nothing dropped;
 *   2. after the walk, the queues in /dev/shm are scanned once (@queues);
 *   3. a noted key whose queue is not in that scan is gone for good: its
 *      line was seen (phase 1) while the queue existed, since a queue exists
 *      before it can hold anything, and a generation never comes back. The
 *      noted arrays are visited again and lose the lines of gone keys.
 * Lookups are binary searches in sorted arrays.
 */
struct gens {
	uint64_t *v;
	size_t n, cap;
};

/* Liveness answers of one walk, by process key: many arrays share their
 * holders, and each answer is a read of /proc. Dead is forever; an answer
 * "alive" that went stale during the walk only keeps a line one walk longer. */
#define WALK_LIVE_SLOTS 1024u

struct walk {
	uint64_t live_key[WALK_LIVE_SLOTS]; /* 0: empty slot */
	bool live[WALK_LIVE_SLOTS];
	struct gens queues;     /* phase 2: generations of the queues (low 60 bits) */
	struct gens seen;       /* phase 1: queue keys on ledger lines; phase 3: the gone ones */
	char *revisit;          /* phase 1: names of arrays with queue lines, NUL-separated */
	size_t rlen, rcap;
	bool final;             /* phase 3 */
	bool uncertain;         /* a queue could not be looked at, or no memory: drop no queue line */
};

static void gens_add(struct walk *w, struct gens *g, uint64_t v)
{
	if (g->n == g->cap) {
		size_t ncap = g->cap ? g->cap * 2 : 64;
		uint64_t *nv = realloc(g->v, ncap * sizeof(*nv));

		if (!nv) {
			w->uncertain = true;
			return;
		}
		g->v = nv;
		g->cap = ncap;
	}
	g->v[g->n++] = v;
}

static int u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Sort and drop duplicates. */
static void gens_sort(struct gens *g)
{
	size_t j = 0;

	if (g->n == 0)
		return;
	qsort(g->v, g->n, sizeof(g->v[0]), u64_cmp);
	for (size_t i = 1; i < g->n; i++)
		if (g->v[i] != g->v[j])
			g->v[++j] = g->v[i];
	g->n = j + 1;
}

static bool gens_has(const struct gens *g, uint64_t v)
{
	return g->n && bsearch(&v, g->v, g->n, sizeof(v), u64_cmp) != NULL;
}

static void revisit_add(struct walk *w, const char *name)
{
	size_t len = strlen(name) + 1;

	if (w->rcap - w->rlen < len) {
		size_t ncap = w->rcap ? w->rcap * 2 : 4096;
		char *nr;

		while (ncap - w->rlen < len)
			ncap *= 2;
		nr = realloc(w->revisit, ncap);
		if (!nr) {
			w->uncertain = true;
			return;
		}
		w->revisit = nr;
		w->rcap = ncap;
	}
	memcpy(w->revisit + w->rlen, name, len);
	w->rlen += len;
}

/* shoal__each_object() callback, phase 2: note the generation of every
 * queue. */
static int note_queue(const char *file, void *arg)
{
	struct walk *w = arg;
	const char *name = file + strlen(SHOAL_PREFIX);
	struct shoal__hdr h;
	int rc;

	if (shoal__name_check(name) != 0)
		return 0;
	rc = shoal__segment_peek(name, &h);
	if (rc) {
		/* Gone meanwhile, or not ours: no holder of our arrays.
		 * Anything else (no fds) leaves the question open. */
		if (rc != -ENOENT && rc != -EBADMSG && rc != -EPROTO && rc != -EACCES)
			w->uncertain = true;
		return 0;
	}
	if (h.kind == SHOAL__KIND_QUEUE)
		gens_add(w, &w->queues, h.generation & SHOAL__HOLDER_ID_MASK);
	return 0;
}

/* Whether process @key may still use what it holds: only a certain death
 * counts (internal.h, shoal__key_dead). */
static bool walk_alive(struct walk *w, uint64_t key)
{
	uint32_t h = (uint32_t)((key * UINT64_C(0x9E3779B97F4A7C15)) >> 54) % WALK_LIVE_SLOTS;

	for (uint32_t i = 0; i < 8; i++, h = (h + 1) % WALK_LIVE_SLOTS) {
		if (w->live_key[h] == key)
			return w->live[h];
		if (w->live_key[h] == 0) {
			w->live_key[h] = key;
			return w->live[h] = !shoal__key_dead(key);
		}
	}
	return !shoal__key_dead(key); /* a crowded neighbourhood: ask, do not keep */
}

/* The walk's word on holder @key of an array (shoal__judge_fn). */
static enum shoal__verdict judge(uint64_t key, void *arg)
{
	struct walk *w = arg;
	uint64_t id = key & SHOAL__HOLDER_ID_MASK;

	if (!(key & SHOAL__HOLDER_NONPROC))
		return walk_alive(w, key) ? SHOAL__KEEP : SHOAL__GONE;
	if (shoal__holder_kind_of(key) != SHOAL__HOLDER_QUEUE)
		return SHOAL__KEEP; /* pins, and kinds of later versions: never reaped */
	if (w->final)
		return gens_has(&w->seen, id) ? SHOAL__GONE : SHOAL__KEEP;
	gens_add(w, &w->seen, id);
	return SHOAL__ASK_AGAIN;
}

/* The array's entry in the kind table: its reap, and a note of the arrays
 * to visit again in phase 3. 1 if it was freed. */
static int reap_array(const char *name, struct walk *w)
{
	bool again;
	int n = shoal__array_reap(name, judge, w, &again);

	if (again)
		revisit_add(w, name);
	return n;
}

static int reap_pool(const char *name, struct walk *w)
{
	(void)w;
	return shoal__pool_reap(name);
}

/*
 * The table of kinds, by the kind number in the common header: who takes
 * back what a dead process left in an object of that kind. An empty entry
 * is a kind with nothing to take back: a plain segment holds no references,
 * and a queue recovers a dead participant's slots itself on its next use
 * (queue.c); queues matter here only as holders of arrays (phase 2).
 */
static const struct {
	int (*reap)(const char *name, struct walk *w); /* how many objects went */
} kinds[SHOAL__KIND_MAX + 1] = {
	[SHOAL__KIND_ARRAY] = { reap_array },
	[SHOAL__KIND_POOL] = { reap_pool },
};
_Static_assert(sizeof(kinds) / sizeof(kinds[0]) == SHOAL__KIND_MAX + 1,
	       "one entry for every kind");

/* shoal__each_object() callback, phase 1: reap whatever @file is; how many
 * objects went. */
static int reap_one(const char *file, void *arg)
{
	const char *name = file + strlen(SHOAL_PREFIX);
	struct shoal__hdr h;

	if (strncmp(file, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) == 0)
		return shoal__tmp_reap(file);
	if (shoal__name_check(name) != 0 || shoal__segment_peek(name, &h) != 0)
		return 0;
	/* The peek admits only kinds 1..SHOAL__KIND_MAX; the index is a
	 * segment's byte all the same, so it is bounded here too. */
	if (h.kind > SHOAL__KIND_MAX || !kinds[h.kind].reap)
		return 0;
	return kinds[h.kind].reap(name, arg);
}

/* Phases 2 and 3 (see struct walk): how many arrays that freed. */
static int reap_queue_holders(struct walk *w)
{
	struct gens *seen = &w->seen;
	size_t j = 0;
	int n = 0;

	if (w->rlen == 0 || w->uncertain)
		return 0;
	if (shoal__each_object(note_queue, w) < 0 || w->uncertain)
		return 0; /* only a certain absence drops a queue's references */
	gens_sort(&w->queues);
	gens_sort(seen);
	for (size_t i = 0; i < seen->n; i++)
		if (!gens_has(&w->queues, seen->v[i]))
			seen->v[j++] = seen->v[i]; /* gone: stays sorted */
	seen->n = j;
	if (j == 0)
		return 0;
	w->final = true;
	for (size_t off = 0; off < w->rlen; off += strlen(w->revisit + off) + 1)
		n += reap_array(w->revisit + off, w) > 0;
	return n;
}

SHOAL_API int shoal_reap(void)
{
	struct walk *w = calloc(1, sizeof(*w));
	int n;

	if (!w)
		return -ENOMEM;
	n = shoal__each_object(reap_one, w);
	if (n >= 0)
		n += reap_queue_holders(w);
	free(w->queues.v);
	free(w->seen.v);
	free(w->revisit);
	free(w);
	return n;
}
