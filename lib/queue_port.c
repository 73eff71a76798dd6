/*
 * queue_port.c - a bound port: one-argument push/pop calls for
 * foreign-function callers.
 *
 * From Python's ctypes (or any FFI that converts each argument in an
 * interpreter) a call costs far more than the queue operation behind it,
 * and each argument adds to the cost: converting a pointer, a size, a
 * length pointer and a timeout costs more than shoal_queue_pop() itself.
 * A port binds, once, everything a hot call would pass: the queue, a
 * buffer, an array of length cells and a timeout. Its calls then take the
 * port's number (a plain int, which every FFI passes without a conversion
 * object, where a 64-bit pointer would need one) and at most a length.
 * The idea is io_uring's registered buffers and files: an index into a
 * table the caller set up before, not pointers passed each time.
 *
 * Ports are process memory, never shared memory: a table of 65535 entries
 * (256 chunks of 256, each chunk allocated on first use and kept), filled
 * and emptied with compare-and-swap, so opening a port takes no lock and a
 * fork() in the middle of one leaves the child a consistent table. A port's
 * number carries a 15-bit generation beside its index, a new one taken
 * at every open, so a number used after its port was closed (or not from
 * this table at all) is -EBADF instead of someone else's port, until the
 * same entry has been reused 32767 times. A forked child inherits the ports
 * with the memory they bind, each naming the child's copy of its queue
 * handle.
 *
 * The operations are shoal_queue_push/pop/push_many/pop_many themselves
 * (lib/queue.c): the same delivery contract, progress and recovery; a
 * process dying inside a port call is a process dying inside those.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BITS 8
#define CHUNK (1u << CHUNK_BITS)
#define NCHUNKS 256u
#define INDEX_BITS 16
#define INDEX_MASK ((1u << INDEX_BITS) - 1)
#define GEN_MASK 0x7fffu /* the number stays a positive int */
#define BATCH 64u /* put_many gathers this many objects per claim */
_Static_assert(NCHUNKS * CHUNK == 1u << INDEX_BITS, "an index names every entry");

struct port {
	struct shoal_queue *q;
	unsigned char *buf;
	size_t cap;
	size_t *lens;
	size_t nlens;
	int64_t timeout_ns;
	size_t max_msg;
	void *(*deliver)(const void *msg, ssize_t len);
	void *(*fail)(void *arg);
	void *fail_arg;
	ptrdiff_t len_at; /* put's length cell, from the message; 0: none bound */
	/* put_many's sequence of objects (shoal_queue_port_gather()). */
	ssize_t (*count)(void *seq);
	void *(*item)(void *seq, ssize_t i);
	const void *type;
	ptrdiff_t type_at, data_at;
	/* take_many's collection (shoal_queue_port_collect()). */
	void *(*collect)(ssize_t n);
	int (*add)(void *coll, ssize_t i, void *obj);
	void (*drop)(void *coll);
	bool busy; /* take_many between its pop and its return */
	int err;   /* the last failed take's or put's code */
	int id;
};

struct chunk {
	struct port *_Atomic entry[CHUNK];
	_Atomic uint16_t gen[CHUNK]; /* the last generation handed out */
};

static struct chunk *_Atomic table[NCHUNKS];
/* Where the next open starts looking: a hint, any value works. */
static _Atomic uint32_t next_free = 1;

static struct chunk *chunk_get(uint32_t c)
{
	/* A4: pairs with R4 below: the chunk's zeroed entries are visible. */
	struct chunk *ch = atomic_load_explicit(&table[c], memory_order_acquire);
	struct chunk *fresh = NULL;

	if (ch)
		return ch;
	fresh = calloc(1, sizeof(*fresh));
	if (!fresh)
		return NULL;
	/* R4: publishes the zeroed chunk. */
	if (atomic_compare_exchange_strong_explicit(&table[c], &ch, fresh, memory_order_acq_rel,
						    memory_order_acquire))
		return fresh;
	free(fresh); /* another thread won: ch is its chunk */
	return ch;
}

/* The port numbered @id, or NULL: never a port under another number. */
static inline struct port *lookup(int id)
{
	uint32_t i = (uint32_t)id & INDEX_MASK;
	struct chunk *ch;
	struct port *p;

	if (SHOAL__UNLIKELY(id <= 0 || i == 0))
		return NULL;
	/* A4, as in chunk_get(). */
	ch = atomic_load_explicit(&table[i >> CHUNK_BITS], memory_order_acquire);
	if (SHOAL__UNLIKELY(!ch))
		return NULL;
	/* A5: pairs with R5 in open: the port's fields are visible. */
	p = atomic_load_explicit(&ch->entry[i & (CHUNK - 1)], memory_order_acquire);
	if (SHOAL__UNLIKELY(!p || p->id != id))
		return NULL;
	return p;
}

/* The port @id if it still has its queue (see shoal_queue_port_unbind()). */
static inline struct port *bound(int id)
{
	struct port *p = lookup(id);

	return SHOAL__LIKELY(p && p->q) ? p : NULL;
}

SHOAL_API int shoal_queue_port_open(struct shoal_queue *q, void *buf, size_t cap, size_t *lens,
				    size_t nlens, int64_t timeout_ns)
{
	struct shoal_queue_stats st;
	struct port *p;
	uint32_t start;
	int rc;

	shoal__detail_clear();
	if (!q || (!buf && cap) || !lens || nlens == 0)
		return -EINVAL;
	rc = shoal_queue_stats(q, &st);
	if (rc)
		return rc;
	p = malloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	*p = (struct port){ .q = q, .buf = buf, .cap = cap, .lens = lens, .nlens = nlens,
			    .timeout_ns = timeout_ns, .max_msg = st.max_msg };
	start = atomic_load_explicit(&next_free, memory_order_relaxed);
	for (uint32_t k = 0; k < NCHUNKS * CHUNK; k++) {
		uint32_t i = (start + k) & INDEX_MASK;
		struct port *none = NULL;
		struct chunk *ch;
		uint32_t gen;
		uint16_t g;

		if (i == 0)
			continue; /* 0 is never a port */
		ch = chunk_get(i >> CHUNK_BITS);
		if (!ch) {
			free(p);
			return -ENOMEM;
		}
		if (atomic_load_explicit(&ch->entry[i & (CHUNK - 1)], memory_order_relaxed))
			continue;
		/* Take a generation of its own before publishing: two opens
		 * racing for a free entry never number their ports alike (the
		 * loser's generation is skipped), so a number stays one port's. */
		g = atomic_load_explicit(&ch->gen[i & (CHUNK - 1)], memory_order_relaxed);
		do {
			gen = (g + 1u) & GEN_MASK;
			if (gen == 0)
				gen = 1;
		} while (!atomic_compare_exchange_weak_explicit(&ch->gen[i & (CHUNK - 1)], &g,
								(uint16_t)gen, memory_order_relaxed,
								memory_order_relaxed));
		p->id = (int)(gen << INDEX_BITS | i);
		/* R5: pairs with A5 in lookup. */
		if (!atomic_compare_exchange_strong_explicit(&ch->entry[i & (CHUNK - 1)], &none, p,
							     memory_order_release,
							     memory_order_relaxed))
			continue;
		atomic_store_explicit(&next_free, i + 1, memory_order_relaxed);
		return p->id;
	}
	free(p);
	return shoal__fail(-EMFILE, "all %u queue ports of this process are open",
			   NCHUNKS * CHUNK - 1);
}

SHOAL_API int shoal_queue_port_close(int port)
{
	struct port *p = lookup(port);
	uint32_t i = (uint32_t)port & INDEX_MASK;
	struct chunk *ch;

	if (!p)
		return -EBADF;
	ch = atomic_load_explicit(&table[i >> CHUNK_BITS], memory_order_acquire);
	atomic_store_explicit(&ch->entry[i & (CHUNK - 1)], NULL, memory_order_release);
	free(p);
	return 0;
}

SHOAL_API ssize_t shoal_queue_port_pop(int port)
{
	struct port *p = bound(port);
	int rc;

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	rc = shoal_queue_pop(p->q, p->buf, p->cap, p->lens, p->timeout_ns);
	return rc ? rc : (ssize_t)p->lens[0];
}

SHOAL_API int shoal_queue_port_push(int port, int len)
{
	struct port *p = bound(port);

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(len < 0))
		return -EINVAL;
	if (SHOAL__UNLIKELY((size_t)len > p->cap))
		return (size_t)len > p->max_msg ? -EMSGSIZE : -EINVAL;
	return shoal_queue_push(p->q, p->buf, (size_t)len, p->timeout_ns);
}

SHOAL_API int shoal_queue_port_send(int port, const void *msg, int len)
{
	struct port *p = bound(port);

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(len < 0))
		return -EINVAL;
	return shoal_queue_push(p->q, msg, (size_t)len, p->timeout_ns);
}

SHOAL_API int shoal_queue_port_length_at(int port, ptrdiff_t offset)
{
	struct port *p = lookup(port);

	if (!p)
		return -EBADF;
	if (offset == 0 || (offset > -(ptrdiff_t)sizeof(ssize_t) && offset < 0))
		return -EINVAL; /* the cell would overlap the message */
	p->len_at = offset;
	return 0;
}

SHOAL_API int shoal_queue_port_put(int port, const void *msg)
{
	struct port *p = lookup(port);
	ssize_t len;
	int rc = -EBADF;

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(!p->len_at || !msg))
		rc = -EINVAL;
	else if (SHOAL__LIKELY(p->q != NULL)) {
		/* The runtime's object holds the length beside its bytes (for
		 * CPython's bytes, ob_size before ob_sval): read, not passed. */
		memcpy(&len, (const char *)msg + p->len_at, sizeof(len));
		rc = len < 0 ? -EINVAL : shoal_queue_push(p->q, msg, (size_t)len, p->timeout_ns);
		if (SHOAL__LIKELY(rc == 0))
			return 0;
	}
	p->err = rc;
	if (p->fail) {
		errno = -rc; /* as in take: fail() raises from errno */
		p->fail(p->fail_arg);
	}
	return rc;
}

SHOAL_API ssize_t shoal_queue_port_pop_many(int port, int n)
{
	struct port *p = bound(port);

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(n < 1))
		return -EINVAL;
	return shoal_queue_pop_many(p->q, p->buf, p->cap, p->lens,
				    (size_t)n < p->nlens ? (size_t)n : p->nlens, p->timeout_ns);
}

SHOAL_API ssize_t shoal_queue_port_send_many(int port, const void *data, const size_t *lens, int n)
{
	struct port *p = bound(port);

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(n < 0))
		return -EINVAL;
	return shoal_queue_push_many(p->q, data, lens, (size_t)n, p->timeout_ns);
}

SHOAL_API int shoal_queue_port_gather(int port, ssize_t (*count)(void *seq),
				      void *(*item)(void *seq, ssize_t i), const void *type,
				      ptrdiff_t type_at, ptrdiff_t data_at)
{
	struct port *p = lookup(port);

	if (!p)
		return -EBADF;
	if (!count != !item || (count && !type))
		return -EINVAL;
	p->count = count;
	p->item = item;
	p->type = type;
	p->type_at = type_at;
	p->data_at = data_at;
	return 0;
}

/* Where put_many finds the object's bytes, or NULL if it is not of the
 * bound type or its length cell says less than nothing. */
static inline const unsigned char *gathered(const struct port *p, const unsigned char *obj,
					    size_t *len)
{
	const void *type;
	ssize_t n;

	if (SHOAL__UNLIKELY(!obj))
		return NULL;
	memcpy(&type, obj + p->type_at, sizeof(type));
	if (SHOAL__UNLIKELY(type != p->type))
		return NULL;
	memcpy(&n, obj + p->data_at + p->len_at, sizeof(n));
	if (SHOAL__UNLIKELY(n < 0))
		return NULL;
	*len = (size_t)n;
	return obj + p->data_at;
}

SHOAL_API ssize_t shoal_queue_port_put_many(int port, void *seq)
{
	const void *msgs[BATCH];
	size_t lens[BATCH];
	struct port *p = bound(port);
	ssize_t n, done = 0;

	if (SHOAL__UNLIKELY(!p))
		return -EBADF;
	if (SHOAL__UNLIKELY(!p->count || !p->len_at || !seq))
		return -EINVAL;
	n = p->count(seq);
	if (SHOAL__UNLIKELY(n < 0))
		return -EINVAL;
	/* Every object is checked before any is pushed: a wrong one or one
	 * too long leaves the queue as it was. */
	for (ssize_t i = 0; i < n; i++) {
		size_t len;

		if (SHOAL__UNLIKELY(!gathered(p, p->item(seq, i), &len)))
			return -EINVAL;
		if (SHOAL__UNLIKELY(len > p->max_msg))
			return -EMSGSIZE;
	}
	while (done < n) {
		ssize_t m = n - done < (ssize_t)BATCH ? n - done : (ssize_t)BATCH, k;

		for (ssize_t i = 0; i < m; i++)
			msgs[i] = gathered(p, p->item(seq, done + i), &lens[i]);
		k = shoal__queue_push_gather(p->q, msgs, lens, (size_t)m, p->timeout_ns);
		if (k < 0)
			return done ? done : k;
		done += k;
		if (k < m)
			break; /* full, or out of time: the rest stays the caller's */
	}
	return done;
}

SHOAL_API int shoal_queue_port_collect(int port, void *(*collect)(ssize_t n),
				       int (*add)(void *coll, ssize_t i, void *obj),
				       void (*drop)(void *coll))
{
	struct port *p = lookup(port);

	if (!p)
		return -EBADF;
	if (!collect != !add || !collect != !drop || (collect && p->cap == 0))
		return -EINVAL;
	p->collect = collect;
	p->add = add;
	p->drop = drop;
	return 0;
}

SHOAL_API void *shoal_queue_port_take_many(int port, int n)
{
	struct port *p = lookup(port);
	const unsigned char *at;
	ssize_t rc = -EBADF;
	void *coll;

	if (SHOAL__UNLIKELY(!p || !p->deliver || !p->collect))
		return NULL;
	if (SHOAL__UNLIKELY(n < 1))
		rc = -EINVAL;
	else if (SHOAL__UNLIKELY(p->busy))
		/* Re-entered from code @collect ran (Python: a finalizer run by
		 * the collection PyList_New may start): the buffer and lengths
		 * are the outer call's, not to be popped over. */
		rc = -EBUSY;
	else if (SHOAL__LIKELY(p->q != NULL))
		rc = shoal_queue_pop_many(p->q, p->buf, p->cap, p->lens,
					  (size_t)n < p->nlens ? (size_t)n : p->nlens,
					  p->timeout_ns);
	if (SHOAL__UNLIKELY(rc <= 0)) {
		p->err = (int)rc;
		if (!p->fail)
			return NULL;
		errno = (int)-rc; /* as in take */
		return p->fail(p->fail_arg);
	}
	/* The messages are the caller's from the pop on (as in take): a
	 * failure below loses them with it. */
	p->busy = true;
	coll = p->collect(rc);
	if (SHOAL__UNLIKELY(!coll)) {
		p->busy = false;
		return NULL;
	}
	at = p->buf;
	for (ssize_t i = 0; i < rc; i++) {
		void *obj = p->deliver(at, (ssize_t)p->lens[i]);

		if (SHOAL__UNLIKELY(!obj || p->add(coll, i, obj) < 0)) {
			p->drop(coll);
			p->busy = false;
			return NULL;
		}
		at += p->lens[i];
	}
	p->busy = false;
	return coll;
}

SHOAL_API int shoal_queue_port_unbind(int port)
{
	struct port *p = lookup(port);

	if (!p)
		return -EBADF;
	p->q = NULL;
	return 0;
}

SHOAL_API int shoal_queue_port_deliver(int port, void *(*deliver)(const void *msg, ssize_t len),
				       void *(*fail)(void *arg), void *fail_arg)
{
	struct port *p = lookup(port);

	if (!p)
		return -EBADF;
	if (p->cap == 0 && deliver)
		return -EINVAL; /* nothing to pop into */
	p->deliver = deliver;
	p->fail = fail;
	p->fail_arg = fail_arg;
	return 0;
}

SHOAL_API void *shoal_queue_port_take(int port)
{
	struct port *p = lookup(port);
	int rc = -EBADF;

	if (SHOAL__UNLIKELY(!p || !p->deliver))
		return NULL;
	if (SHOAL__LIKELY(p->q != NULL)) {
		rc = shoal_queue_pop(p->q, p->buf, p->cap, p->lens, p->timeout_ns);
		if (SHOAL__LIKELY(rc == 0))
			return p->deliver(p->buf, (ssize_t)p->lens[0]);
	}
	p->err = rc;
	if (!p->fail)
		return NULL;
	errno = -rc; /* for fail(): Python's PyErr_SetFromErrno */
	return p->fail(p->fail_arg);
}

SHOAL_API int shoal_queue_port_error(int port)
{
	struct port *p = lookup(port);

	return p ? p->err : -EBADF;
}
