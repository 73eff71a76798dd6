/*
 * objects.h - what the shoal tool's commands (ls, info, top) share: the
 * walk of the objects' directory and the facts of one object, read through
 * the library's observation calls (docs/observe.md). Nothing here joins,
 * references or changes an object.
 */
#ifndef SHOAL_TOOL_OBJECTS_H
#define SHOAL_TOOL_OBJECTS_H

#include "internal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct obj {
	char name[SHOAL_NAME_MAX + 1];
	int err;                     /* 0, or why it could not be read */
	char *why;                   /* the library's detail of @err, or NULL */
	bool tmp;                    /* a creator's temporary file */
	struct shoal__hdr hdr;       /* valid when !err && !tmp */
	bool creator_alive;
	bool stale;                  /* what `shoal gc` would take back */
	bool whole;                  /* stale, and gc frees it all (no live holder left) */
	uint32_t live, dead;         /* holders: processes (and queues) */
	/* arrays: a private copy (pread; no mapping, no reference) */
	struct shoal_array *arr;
	struct shoal_array_holder *holders;
	int nholders;
	bool shm;                    /* a shoal.SharedMemory: pinned 1-d bytes */
	/* queues */
	bool is_queue;
	struct shoal_queue_view qv;
	struct shoal_queue_participant *parts;
	int nparts;
	/* pool boards */
	bool is_pool;
	struct shoal_pool_view pv;
	struct shoal_pool_worker_view *workers;
	int nworkers;
};

/* Read everything about object @o->name (set by the caller). */
void obj_probe(struct obj *o);
/* Forget the liveness answers of the last walk (objs_read() does). */
void obj_memo_clear(void);
void obj_done(struct obj *o);

struct objs {
	struct obj *v;
	size_t n;
};
/* Every object of the directory, probed, sorted by name: 0, or -errno
 * (with the reason on stderr) when the directory cannot be read. */
int objs_read(struct objs *l);
void objs_free(struct objs *l);

/* "array", "queue", "pool", "segment", "shm", "tmp", "corrupt" (it fails a
 * check, or was truncated while read) or "gone" (removed while read). */
const char *obj_kind(const struct obj *o);
/* What is wrong with it: the library's detail (it names the object and
 * says what failed), else the error's name. */
const char *obj_error(const struct obj *o);
/* The bytes it takes: an array's data, else the data size. */
uint64_t obj_size(const struct obj *o);
/* Seconds since it was created (0 if unknown). */
uint64_t obj_age_s(const struct obj *o);

/*
 * Turn what a user typed into an object name: a name, "shoal.<name>" (the
 * file in the directory) or a handle "shoal:array:<name>@<generation>",
 * whose generation is then put in @gen (else 0). 0 or -EINVAL, with a
 * message in @why.
 */
int obj_resolve(const char *arg, char *name, uint64_t *gen, const char **why);

/* A holder as "pid:count", "queue-<gen>:count", "name:count". */
void holder_text(const struct shoal_array_holder *h, char *buf, size_t cap);
/* "1.5 GiB" and the like, into @buf. */
const char *human_bytes(uint64_t n, char *buf, size_t cap);
/* A process's command line, printable, at most @cap - 1 bytes ("?" if
 * unreadable). */
void proc_command(pid_t pid, char *buf, size_t cap);
/* A JSON string on @f. */
void jstr(FILE *f, const char *s);

#endif
