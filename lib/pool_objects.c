/*
 * pool_objects.c - a pool's objects in /dev/shm, by name, and taking them
 * back from a supervisor that died.
 *
 * A pool is one task board, "shoal.<board>" (kind SHOAL__KIND_POOL; its
 * creator is the supervisor), and plain segments beside it for what does
 * not fit in a cell:
 *
 *   <board>                   the board; "pool.<pid>.<hex>" unless named
 *   <board>.a<id>             task <id>'s argument bytes
 *   <board>.r<id>.<attempt>   the result of run <attempt> of task <id>
 *
 * The supervisor unlinks all of them when the pool is destroyed. One that
 * is SIGKILLed (or OOM-killed) destroys nothing, so whoever finds its board
 * with its creator certainly dead unlinks the board and every spill of that
 * board, and nothing else that merely shares the prefix:
 *
 *   shoal_reap()          -> kind table (reap.c) -> shoal__pool_reap(board)
 *   shoal_pool_create()   -> shoal__reap_pools(): default-named boards only
 *   shoal__pool_reap(b)   -> creator dead? -> unlink b -> unlink_spills(b)
 *
 * Workers that still map the board keep their mappings until they notice
 * and exit. Each unlink is one system call. A process that dies before the
 * board's unlink leaves everything to the next walk; one that dies between
 * it and the spills' leaves those spills to `shoal rm`: with the board gone,
 * nothing says any more whose they were.
 */
#include "pool.h"
#include "reap.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void pool_spill_name(char *buf, size_t cap, const char *board, char kind, uint64_t id,
		       uint32_t attempt)
{
	if (kind == 'a')
		snprintf(buf, cap, "%s.a%llu", board, (unsigned long long)id);
	else
		snprintf(buf, cap, "%s.r%llu.%u", board, (unsigned long long)id, attempt);
}

/* Whether @rest (what follows "<board>.") names one of a pool's task or
 * result segments: "a<id>" or "r<id>.<attempt>" (the names pool_spill_name() makes). */
static bool spill_suffix(const char *rest)
{
	const char *p = rest + 1;

	if (rest[0] != 'a' && rest[0] != 'r')
		return false;
	if (*p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	if (rest[0] == 'a')
		return *p == '\0';
	if (*p++ != '.' || *p < '0' || *p > '9')
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	return *p == '\0';
}

struct spills {
	char prefix[sizeof(SHOAL_PREFIX) + SHOAL_NAME_MAX + 1]; /* "shoal.<board>." */
	size_t len;
};

/* shoal__each_object() callback: unlink @file if it is one of the board's
 * task or result segments; 1 if it did. */
static int unlink_spill(const char *file, void *arg)
{
	const struct spills *sp = arg;
	char path[SHOAL__PATH_MAX];

	if (strncmp(file, sp->prefix, sp->len) != 0 || !spill_suffix(file + sp->len) ||
	    shoal__path(path, sizeof(path), file) != 0)
		return 0;
	return unlink(path) == 0;
}

/* Unlink the task and result segments of pool board @name: 1 for each. */
static int unlink_spills(const char *name)
{
	struct spills sp;
	int n = snprintf(sp.prefix, sizeof(sp.prefix), SHOAL_PREFIX "%s.", name);

	if (n < 0 || (size_t)n >= sizeof(sp.prefix))
		return 0;
	sp.len = (size_t)n;
	n = shoal__each_object(unlink_spill, &sp);
	return n < 0 ? 0 : n;
}

/*
 * A pool's board belongs to its supervisor, the process that created it.
 * Once that is certainly dead, no one will destroy it: the board goes,
 * then its spills.
 */
int shoal__pool_reap(const char *name)
{
	struct shoal_segment *s;
	struct shoal_proc creator;
	uint64_t key;
	int n;

	if (shoal__segment_open(name, SHOAL__KIND_POOL, 0, SHOAL_RDONLY, &s) != 0)
		return 0;
	creator.pid = s->hdr.creator_pid;
	creator.start_time = s->hdr.creator_start;
	shoal_segment_close(s);
	/* A creator field whose key is not a process's (bit 63: a start time
	 * no process has) names nobody who could be dead: kept. */
	key = shoal__proc_key(&creator);
	if ((key & SHOAL__HOLDER_NONPROC) || !shoal__key_dead(key))
		return 0;
	n = shoal_unlink(name) == 0;
	return n + unlink_spills(name);
}

/* shoal__each_object() callback: reap @file if it is a pool board of the
 * default name, "pool.<pid>.<hex>" (a spill has more dots); how many
 * objects went. */
static int reap_default_pool(const char *file, void *arg)
{
	const char *name = file + strlen(SHOAL_PREFIX);
	int dots = 0;

	(void)arg;
	if (strncmp(name, "pool.", 5) != 0)
		return 0;
	for (const char *c = name; *c; c++)
		dots += *c == '.';
	if (dots != 2 || shoal__name_check(name) != 0)
		return 0;
	return shoal__pool_reap(name);
}

int shoal__reap_pools(void)
{
	return shoal__each_object(reap_default_pool, NULL);
}
