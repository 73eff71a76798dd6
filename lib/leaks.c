/*
 * leaks.c - shoal_leaks(): which objects in the directory nobody will free,
 * why, who made them, and what reclaiming them would free. The one
 * judgment behind `shoal leaks` and Python's shoal.leaks().
 *
 *   shoal__each_object -> names
 *   pass 1: queues   -> shoal_queue_observe(): generation, live participants
 *   pass 2: each object, one reason at most (enum shoal_leak_reason order):
 *     "shoal..tmp.<pid>.*", pid gone                     -> DEAD_CREATE
 *     pool board, supervisor (its creator) dead          -> DEAD_POOL
 *     array, no live process, queue or pin holds it      -> DEAD_HOLDERS
 *     array, held (besides the dead) only by queues
 *            none of which has a live participant        -> UNREAD_QUEUE
 *     array, a live process has held it >= min_age       -> OLD_REFERENCE
 *
 * It only looks: arrays are read into private copies (pread, no mapping,
 * no reference), queues observed without joining, every object is untrusted input (what fails its checks
 * is skipped: `shoal ls` reports it as corrupt). Liveness is the reaper's
 * (shoal__key_dead(): only a certain death counts), asked once per process
 * key per call. The first three reasons are what shoal_reap() takes back;
 * UNREAD_QUEUE needs the queues unlinked; OLD_REFERENCE is a judgment of
 * age: an array ledger line keeps no time, so a reference is taken to be
 * as old as the younger of its array and its process.
 */
#include "internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct names {
	char **v;
	size_t n, cap;
	int err;
};

static int collect(const char *file, void *arg)
{
	struct names *l = arg;

	if (l->err)
		return 0;
	if (l->n == l->cap) {
		size_t c = l->cap ? 2 * l->cap : 256;
		char **v = realloc(l->v, c * sizeof(*v));

		if (!v) {
			l->err = -ENOMEM;
			return 0;
		}
		l->v = v;
		l->cap = c;
	}
	l->v[l->n] = strdup(file);
	if (!l->v[l->n]) {
		l->err = -ENOMEM;
		return 0;
	}
	l->n++;
	return 0;
}

/* Liveness once per key: open addressing, keys are never 0. */
struct memo {
	uint64_t *key;
	bool *dead;
	size_t size, used;
};

static bool dead(struct memo *m, uint64_t key)
{
	size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & (m->size - 1);

	for (size_t i = 0; key && i < m->size; i++, h = (h + 1) & (m->size - 1)) {
		if (m->key[h] == key)
			return m->dead[h];
		if (m->key[h] == 0) {
			bool d = shoal__key_dead(key);

			if (m->used < m->size / 2) {
				m->key[h] = key;
				m->dead[h] = d;
				m->used++;
			}
			return d;
		}
	}
	return shoal__key_dead(key);
}

static bool alive_fn(uint64_t key, void *arg)
{
	return (key & SHOAL__HOLDER_NONPROC) || !dead(arg, key);
}

/* A queue by its holder id (the low 60 bits of its generation). */
struct qrec {
	uint64_t id;
	uint32_t live;
};

static int by_id(const void *a, const void *b)
{
	const struct qrec *x = a, *y = b;

	return x->id < y->id ? -1 : x->id > y->id;
}

/* Seconds since boot, from /proc/uptime; 0 if unknown. */
static double uptime_s(void)
{
	double up = 0;
	FILE *f = fopen("/proc/uptime", "re");

	if (f) {
		if (fscanf(f, "%lf", &up) != 1)
			up = 0;
		fclose(f);
	}
	return up;
}

/* The object's allocated memory: its file's blocks (a hole costs none). */
static uint64_t blocks_of(const char *file)
{
	char path[SHOAL__PATH_MAX];
	struct stat st;

	if (shoal__path(path, sizeof(path), file) || lstat(path, &st))
		return 0;
	return (uint64_t)st.st_blocks * 512u;
}

struct ctx {
	struct shoal_leak *out;
	size_t cap;
	int n;
	uint64_t min_age_ns, now_ns;
	double up_s, hz;
	struct memo memo;
	struct qrec *queues;
	size_t nqueues;
};

static struct shoal_leak *add(struct ctx *c, const char *name, int reason,
			      const struct shoal__hdr *h, uint64_t bytes)
{
	struct shoal_leak *l = NULL;

	if ((size_t)c->n < c->cap) {
		l = &c->out[c->n];
		memset(l, 0, sizeof(*l));
		snprintf(l->name, sizeof(l->name), "%s", name);
		shoal__printable(l->name); /* a temporary file's: any bytes */
		l->reason = reason;
		if (h) {
			l->creator.pid = h->creator_pid;
			l->creator.start_time = h->creator_start;
			l->creator_alive = !dead(&c->memo, shoal__proc_key(&l->creator));
			l->age_ns = h->created_ns && h->created_ns < c->now_ns ? c->now_ns - h->created_ns : 0;
		}
		l->bytes = bytes;
	}
	c->n++;
	return l;
}

static void judge_array(struct ctx *c, const char *file, const char *name,
			const struct shoal__hdr *h)
{
	struct shoal_array *a;
	struct shoal_array_holder *hd = NULL;
	uint32_t live = 0, dead_refs = 0, queue_refs = 0, read_queues = 0, pinned = 0;
	uint64_t age = h->created_ns && h->created_ns < c->now_ns ? c->now_ns - h->created_ns : 0;
	int n, got = 0;
	struct shoal_leak *l;

	if (shoal__array_snapshot(name, &a))
		return;
	n = shoal__array_holders_judged(a, NULL, 0, alive_fn, &c->memo);
	if (n > 0 && (hd = calloc((size_t)n, sizeof(*hd))) != NULL)
		got = shoal__array_holders_judged(a, hd, (size_t)n, alive_fn, &c->memo);
	if (n > 0 && !hd) {
		shoal_array_close(a);
		return;
	}
	if (got > n)
		got = n;
	for (int i = 0; i < got; i++) {
		uint64_t k = hd[i].key;

		if (!(k & SHOAL__HOLDER_NONPROC)) {
			if (hd[i].alive)
				live++;
			else
				dead_refs += hd[i].count;
		} else if (shoal__holder_kind_of(k) == SHOAL__HOLDER_QUEUE) {
			struct qrec key = { .id = k & SHOAL__HOLDER_ID_MASK }, *q;

			q = c->nqueues ? bsearch(&key, c->queues, c->nqueues, sizeof(key), by_id) : NULL;
			/* A queue that is gone holds nothing the reaper leaves. */
			if (q) {
				queue_refs += hd[i].count;
				read_queues += q->live > 0;
			}
		} else {
			pinned++;
		}
	}
	if (shoal_array_is_freed(a) || (!live && !queue_refs && !pinned)) {
		l = add(c, name, SHOAL_LEAK_DEAD_HOLDERS, h, blocks_of(file));
		if (l)
			l->references = dead_refs;
	} else if (!live && !pinned && queue_refs && !read_queues) {
		l = add(c, name, SHOAL_LEAK_UNREAD_QUEUE, h, blocks_of(file));
		if (l)
			l->references = queue_refs;
	} else if (c->min_age_ns && live && age >= c->min_age_ns) {
		for (int i = 0; i < got; i++) {
			struct shoal_proc p;
			double started_s, held_s;

			if ((hd[i].key & SHOAL__HOLDER_NONPROC) || !hd[i].alive)
				continue;
			shoal__proc_unkey(hd[i].key, &p);
			started_s = (double)p.start_time / c->hz;
			held_s = c->up_s > started_s ? c->up_s - started_s : 0;
			/* The reference is no older than its process. */
			if (held_s * 1e9 < (double)c->min_age_ns)
				continue;
			l = add(c, name, SHOAL_LEAK_OLD_REFERENCE, h, blocks_of(file));
			if (l) {
				l->holder = p;
				l->references = hd[i].count;
			}
			break;
		}
	}
	free(hd);
	shoal_array_close(a);
}

SHOAL_API int shoal_leaks(uint64_t min_age_ns, struct shoal_leak *out, size_t cap)
{
	struct names l = { 0 };
	struct ctx c = { 0 };
	long hz = sysconf(_SC_CLK_TCK);
	int rc;

	shoal__detail_clear();
	if (!out && cap)
		return shoal__fail(-EINVAL, "leaks: out is NULL with cap %zu", cap);
	rc = shoal__each_object(collect, &l);
	if (rc < 0 || l.err) {
		rc = rc < 0 ? rc : l.err;
		goto out;
	}
	c.out = out;
	c.cap = cap;
	c.min_age_ns = min_age_ns;
	c.now_ns = shoal__realtime_ns();
	c.up_s = uptime_s();
	c.hz = hz > 0 ? (double)hz : 100.0;
	c.memo.size = 4096;
	c.memo.key = calloc(c.memo.size, sizeof(*c.memo.key));
	c.memo.dead = calloc(c.memo.size, sizeof(*c.memo.dead));
	c.queues = calloc(l.n + 1, sizeof(*c.queues));
	if (!c.memo.key || !c.memo.dead || !c.queues) {
		rc = -ENOMEM;
		goto out;
	}
	/* Pass 1: the queues, so an array's queue holders can be judged. */
	for (size_t i = 0; i < l.n; i++) {
		const char *name = l.v[i] + strlen(SHOAL_PREFIX);
		struct shoal_queue_view v;
		struct shoal__hdr h;

		if (shoal__name_check(name) || shoal__segment_peek(name, &h) ||
		    h.kind != SHOAL__KIND_QUEUE)
			continue;
		/* A queue this cannot observe (a layout of another library,
		 * no memory, no fd) still holds its arrays, as the reaper
		 * counts it: taken to be read, so nothing it holds is called
		 * a leak. */
		c.queues[c.nqueues].id = h.generation & SHOAL__HOLDER_ID_MASK;
		c.queues[c.nqueues++].live = shoal_queue_observe(name, &v, NULL, 0) < 0 ? 1 : v.live;
	}
	if (c.nqueues)
		qsort(c.queues, c.nqueues, sizeof(*c.queues), by_id);
	/* Pass 2: every object, one reason at most. */
	for (size_t i = 0; i < l.n; i++) {
		const char *file = l.v[i], *name = file + strlen(SHOAL_PREFIX);
		struct shoal__hdr h;

		if (strncmp(file, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) == 0) {
			pid_t pid = shoal__tmp_pid(file);
			struct shoal_proc pr;

			/* The reaper's rule (shoal__tmp_reap()): a creator
			 * certainly gone, a zombie included. */
			if (pid > 0 && shoal_proc_get(pid, &pr) == -ESRCH) {
				struct shoal_leak *lk = add(&c, name, SHOAL_LEAK_DEAD_CREATE, NULL,
							    blocks_of(file));

				if (lk)
					lk->creator.pid = (pid_t)pid;
			}
			continue;
		}
		if (shoal__name_check(name) || shoal__segment_peek(name, &h))
			continue;
		if (h.kind == SHOAL__KIND_POOL) {
			struct shoal_proc sup = { .pid = h.creator_pid, .start_time = h.creator_start };

			if (dead(&c.memo, shoal__proc_key(&sup)))
				add(&c, name, SHOAL_LEAK_DEAD_POOL, &h, blocks_of(file));
		} else if (h.kind == SHOAL__KIND_ARRAY) {
			judge_array(&c, file, name, &h);
		}
	}
	rc = c.n;
out:
	for (size_t i = 0; i < l.n; i++)
		free(l.v[i]);
	free(l.v);
	free(c.memo.key);
	free(c.memo.dead);
	free(c.queues);
	return rc;
}
