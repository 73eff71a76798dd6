/*
 * objects.c - the shoal tool's view of the objects' directory: the walk,
 * and everything one object says about itself, read through the
 * library's observation calls (docs/observe.md):
 *
 *   directory entry -> name check -> shoal__segment_peek (common header)
 *     array      -> shoal__array_snapshot() + shoal_array_holders()
 *     queue      -> shoal_queue_observe()     (read-only, no participant)
 *     pool board -> shoal_pool_observe()      (read-only)
 *     "shoal..tmp.<pid>.*" -> its creator's pid, from the name
 *
 * Every object is untrusted input: a corrupt or foreign one is reported as
 * "corrupt" with the error, never trusted. Nothing is mapped: every call
 * above reads what it looks at with pread into private memory, so an
 * object its owner truncates while it is read is reported as "corrupt"
 * (truncated while read) or "gone", and the walk goes on; it cannot stop
 * the tool with SIGBUS. Nothing here takes a reference, a participant
 * entry or a lock.
 */
#include "objects.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

void holder_text(const struct shoal_array_holder *h, char *buf, size_t cap)
{
	uint64_t kind = shoal__holder_kind_of(h->key);

	if (!(h->key & SHOAL__HOLDER_NONPROC))
		snprintf(buf, cap, "%d:%u%s", (int)h->pid, h->count, h->alive ? "" : "(dead)");
	else if (kind == SHOAL__HOLDER_QUEUE)
		snprintf(buf, cap, "queue-%015" PRIx64 ":%u", h->key & SHOAL__HOLDER_ID_MASK, h->count);
	else if (kind == SHOAL__HOLDER_PIN)
		snprintf(buf, cap, "name:%u", h->count);
	else
		snprintf(buf, cap, "other:%u", h->count);
}

const char *human_bytes(uint64_t n, char *buf, size_t cap)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, cap, "%" PRIu64 " B", n);
	else
		snprintf(buf, cap, "%.1f %s", v, unit[u]);
	return buf;
}

void proc_command(pid_t pid, char *buf, size_t cap)
{
	char path[64];
	ssize_t got;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	got = fd < 0 ? -1 : read(fd, buf, cap - 1);
	if (fd >= 0)
		close(fd);
	if (got <= 0) {
		/* A kernel thread or zombie has no command line: its name. */
		snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		got = fd < 0 ? -1 : read(fd, buf, cap - 1);
		if (fd >= 0)
			close(fd);
		if (got <= 0) {
			snprintf(buf, cap, "?");
			return;
		}
	}
	buf[got] = '\0';
	while (got > 0 && (buf[got - 1] == '\0' || buf[got - 1] == '\n'))
		buf[--got] = '\0';
	/* The program's base name: the path says little in a narrow column. */
	{
		char *end = memchr(buf, '\0', (size_t)got), *slash;

		if (!end)
			end = buf + got;
		*end = '\0';
		slash = strrchr(buf, '/');
		if (end < buf + got)
			*end = '\0';
		if (slash && slash[1]) {
			size_t cut = (size_t)(slash + 1 - buf);

			memmove(buf, slash + 1, (size_t)got - cut + 1);
			got -= (ssize_t)cut;
		}
	}
	for (ssize_t i = 0; i < got; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
		else if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] == 0x7f)
			buf[i] = '?';
}

/*
 * Liveness, asked once per process per walk: 10,000 arrays held by 100
 * processes are 100 reads of /proc, not 20,000 (bench/top.sh). A walk is
 * a snapshot; a process that dies during it is seen dead by the next.
 * Open addressing on the key; keys are never 0.
 */
#define MEMO_SIZE 4096u
static struct {
	uint64_t key;
	bool dead;
} memo[MEMO_SIZE];
static unsigned memo_used;

void obj_memo_clear(void)
{
	memset(memo, 0, sizeof(memo));
	memo_used = 0;
}

static bool key_dead(uint64_t key)
{
	uint32_t h = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 52) & (MEMO_SIZE - 1);

	if (key == 0)
		return shoal__key_dead(key);
	for (unsigned i = 0; i < MEMO_SIZE; i++, h = (h + 1) & (MEMO_SIZE - 1)) {
		if (memo[h].key == key)
			return memo[h].dead;
		if (memo[h].key == 0) {
			bool dead = shoal__key_dead(key);

			/* Full enough: stop remembering, keep answering. */
			if (memo_used < MEMO_SIZE / 2) {
				memo[h].key = key;
				memo[h].dead = dead;
				memo_used++;
			}
			return dead;
		}
	}
	return shoal__key_dead(key);
}

static bool holder_alive(uint64_t key, void *arg)
{
	(void)arg;
	/* Queues are judged by the reaper, which sees them all. */
	return (key & SHOAL__HOLDER_NONPROC) || !key_dead(key);
}

static void probe_array(struct obj *o)
{
	bool pinned = false;

	o->err = shoal__array_snapshot(o->name, &o->arr);
	if (o->err)
		return;
	/* Every line, overflow included. The ledger may grow between the two
	 * calls; what is listed is then a snapshot of the first ones. */
	o->nholders = shoal__array_holders_judged(o->arr, NULL, 0, holder_alive, NULL);
	if (o->nholders > 0) {
		int got;

		o->holders = calloc((size_t)o->nholders, sizeof(*o->holders));
		if (!o->holders) {
			o->err = -ENOMEM;
			return;
		}
		got = shoal__array_holders_judged(o->arr, o->holders, (size_t)o->nholders,
						  holder_alive, NULL);
		if (got < 0) {
			o->err = got;
			return;
		}
		if (got < o->nholders)
			o->nholders = got;
	}
	o->stale = shoal_array_is_freed(o->arr) || o->nholders == 0;
	o->whole = true; /* until a live process, a queue or a pin holds it */
	for (int i = 0; i < o->nholders; i++) {
		const struct shoal_array_holder *h = &o->holders[i];

		if (h->key & SHOAL__HOLDER_NONPROC) {
			pinned |= shoal__holder_kind_of(h->key) == SHOAL__HOLDER_PIN;
			o->whole = false;
			continue;
		}
		o->whole &= !h->alive;
		o->stale |= !h->alive;
		if (h->alive)
			o->live++;
		else
			o->dead++;
	}
	/* shoal.SharedMemory makes 1-d uint8 arrays whose name holds a
	 * reference (a pin) until unlink(). */
	o->shm = pinned && shoal_array_ndim(o->arr) == 1 &&
		 shoal_array_dtype(o->arr) == SHOAL_DTYPE_UINT8;
}

static void probe_queue(struct obj *o)
{
	int n = shoal_queue_observe(o->name, &o->qv, NULL, 0);

	for (int tries = 0; n > 0 && tries < 3; tries++) {
		int got;

		free(o->parts);
		o->parts = calloc((size_t)n, sizeof(*o->parts));
		if (!o->parts) {
			o->err = -ENOMEM;
			return;
		}
		got = shoal_queue_observe(o->name, &o->qv, o->parts, (size_t)n);
		if (got < 0) {
			n = got;
			break;
		}
		o->nparts = got < n ? got : n;
		if (got <= n)
			break;
		n = got;
	}
	if (n < 0) {
		o->err = n;
		return;
	}
	o->live = o->qv.live;
	o->dead = o->qv.dead;
}

static void probe_pool(struct obj *o)
{
	struct shoal_pool_worker_view w[2 * SHOAL_POOL_WORKERS_MAX + 2];
	int n = shoal_pool_observe(o->name, &o->pv, w, sizeof(w) / sizeof(w[0]));

	if (n < 0) {
		o->err = n;
		return;
	}
	if (n > (int)(sizeof(w) / sizeof(w[0])))
		n = (int)(sizeof(w) / sizeof(w[0]));
	o->workers = calloc((size_t)n + 1, sizeof(*o->workers));
	if (!o->workers) {
		o->err = -ENOMEM;
		return;
	}
	memcpy(o->workers, w, (size_t)n * sizeof(*w));
	o->nworkers = n;
	for (int i = 0; i < n; i++)
		if (w[i].alive)
			o->live++;
		else
			o->dead++;
	/* A board is its supervisor's: stale once that is certainly dead, as
	 * shoal_reap() judges it. */
	o->stale = !o->pv.supervisor_alive;
	o->whole = o->stale;
}

static void obj_probe_kind(struct obj *o)
{
	struct shoal_proc p;

	o->err = shoal__segment_peek(o->name, &o->hdr);
	if (o->err)
		return;
	p.pid = o->hdr.creator_pid;
	p.start_time = o->hdr.creator_start;
	o->creator_alive = !key_dead(shoal__proc_key(&p));
	switch (o->hdr.kind) {
	case SHOAL__KIND_ARRAY:
		probe_array(o);
		break;
	case SHOAL__KIND_QUEUE:
		o->is_queue = true;
		probe_queue(o);
		break;
	case SHOAL__KIND_POOL:
		o->is_pool = true;
		probe_pool(o);
		break;
	default:
		break;
	}
}

void obj_probe(struct obj *o)
{
	obj_probe_kind(o);
	/* The detail of the call that failed, which was the last one. */
	if (o->err && shoal_errdetail(o->err)[0]) {
		o->why = strdup(shoal_errdetail(o->err));
		if (o->why)
			shoal__printable(o->why);
	}
}

const char *obj_error(const struct obj *o)
{
	return o->why ? o->why : shoal_strerror(o->err);
}

static void probe_tmp(struct obj *o, const char *file)
{
	struct shoal_proc p;
	pid_t pid = shoal__tmp_pid(file);

	/* Any user may make such a file, with any bytes in its name: what a
	 * terminal would take for a control sequence is shown as '?'. */
	snprintf(o->name, sizeof(o->name), "%s", file + strlen(SHOAL_PREFIX));
	shoal__printable(o->name);
	o->tmp = true;
	o->hdr.creator_pid = (int32_t)pid;
	o->creator_alive = pid > 0 && shoal_proc_get(pid, &p) != -ESRCH;
	o->stale = !o->creator_alive;
	o->whole = o->stale;
}

void obj_done(struct obj *o)
{
	shoal_array_close(o->arr);
	o->arr = NULL;
	free(o->holders);
	o->holders = NULL;
	free(o->parts);
	o->parts = NULL;
	free(o->workers);
	o->workers = NULL;
	free(o->why);
	o->why = NULL;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct obj *)a)->name, ((const struct obj *)b)->name);
}

int objs_read(struct objs *l)
{
	const char *dir;
	struct dirent *de;
	size_t cap = 0;
	DIR *d;
	int rc = shoal_dir(&dir);

	l->v = NULL;
	l->n = 0;
	obj_memo_clear();
	if (rc) {
		fprintf(stderr, "shoal: %s\n", shoal_errdetail(rc));
		return rc;
	}
	d = opendir(dir);
	if (!d) {
		rc = -errno;
		fprintf(stderr, "shoal: %s: %s\n", dir, strerror(errno));
		return rc;
	}
	while ((de = readdir(d)) != NULL) {
		struct obj *o;

		if (strncmp(de->d_name, SHOAL_PREFIX, strlen(SHOAL_PREFIX)) != 0)
			continue;
		if (l->n == cap) {
			struct obj *v = realloc(l->v, (cap ? 2 * cap : 64) * sizeof(*v));

			if (!v) {
				closedir(d);
				objs_free(l);
				fprintf(stderr, "shoal: out of memory\n");
				return -ENOMEM;
			}
			l->v = v;
			cap = cap ? 2 * cap : 64;
		}
		o = &l->v[l->n];
		memset(o, 0, sizeof(*o));
		if (strncmp(de->d_name, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) == 0) {
			probe_tmp(o, de->d_name);
		} else if (shoal__name_check(de->d_name + strlen(SHOAL_PREFIX)) == 0) {
			snprintf(o->name, sizeof(o->name), "%s", de->d_name + strlen(SHOAL_PREFIX));
			obj_probe(o);
		} else {
			continue;
		}
		l->n++;
	}
	closedir(d);
	if (l->n)
		qsort(l->v, l->n, sizeof(*l->v), by_name);
	return 0;
}

void objs_free(struct objs *l)
{
	for (size_t i = 0; i < l->n; i++)
		obj_done(&l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

const char *obj_kind(const struct obj *o)
{
	if (o->tmp)
		return "tmp";
	if (o->err == -ENOENT)
		return "gone";
	if (o->err)
		return "corrupt";
	if (o->shm)
		return "shm";
	return shoal__kind_name(o->hdr.kind);
}

uint64_t obj_size(const struct obj *o)
{
	if (o->arr)
		return shoal_array_nbytes(o->arr);
	return o->err || o->tmp ? 0 : o->hdr.data_size;
}

uint64_t obj_age_s(const struct obj *o)
{
	uint64_t now = shoal__realtime_ns();

	if (o->err || o->tmp || o->hdr.created_ns == 0 || o->hdr.created_ns > now)
		return 0;
	return (now - o->hdr.created_ns) / 1000000000u;
}

int obj_resolve(const char *arg, char *name, uint64_t *gen, const char **why)
{
	const char *n = arg;
	size_t len;

	*gen = 0;
	*why = "not a valid name";
	if (strncmp(arg, SHOAL_HANDLE_PREFIX, strlen(SHOAL_HANDLE_PREFIX)) == 0) {
		const char *at = strrchr(arg, '@');
		char *end;

		n = arg + strlen(SHOAL_HANDLE_PREFIX);
		if (!at || at < n || strlen(at + 1) != 16) {
			*why = "a handle ends in '@' and 16 hex digits";
			return -EINVAL;
		}
		for (const char *c = at + 1; *c; c++)
			if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
				*why = "a handle's generation is 16 lower-case hex digits";
				return -EINVAL;
			}
		*gen = strtoull(at + 1, &end, 16);
		len = (size_t)(at - n);
	} else {
		if (strncmp(arg, SHOAL_PREFIX, strlen(SHOAL_PREFIX)) == 0)
			n = arg + strlen(SHOAL_PREFIX);
		len = strlen(n);
	}
	if (len == 0 || len > SHOAL_NAME_MAX)
		return -EINVAL;
	memcpy(name, n, len);
	name[len] = '\0';
	return shoal__name_check(name) ? -EINVAL : 0;
}
