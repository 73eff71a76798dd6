/*
 * queue_arrays.c - arrays carried in queues: the references a queue holds
 * for the array handles inside it.
 *
 * A queue carries bytes (lib/queue.c) and an array counts references by
 * holder (lib/array.c); neither knows the other. This file joins them, and
 * depends on both:
 *
 *   producer: hold(queue key)  -> push(handle)
 *   consumer: pop(handle)      -> attach, taking the queue's reference over
 *   unlink:   shoal__queue_unlink() -> shoal_reap(): the lines of a queue
 *             that no longer exists are dropped, arrays only it held freed
 *
 * The queue's key on an array's ledger is shoal__holder_queue() of the
 * queue's generation (internal.h): the generation outlives every handle to
 * the queue and names no other queue, so the reaper can tell, from /dev/shm
 * alone, when those references have nobody left to hand them to. A process
 * that dies between a hold and its push, or between a pop and its attach,
 * leaves a reference on the queue's line: the consumer that finds none to
 * take over takes a fresh one, and the queue's stray ones go at its unlink.
 */
#include "array.h"

#include <errno.h>
#include <string.h>

static uint64_t queue_holder(const struct shoal_queue *q)
{
	return shoal__holder_queue(shoal__queue_generation(q));
}

SHOAL_API int shoal_queue_hold_array(struct shoal_queue *q, struct shoal_array *a)
{
	shoal__detail_clear();
	if (!q || !a)
		return -EINVAL;
	return shoal__array_hold(a, queue_holder(q));
}

SHOAL_API int shoal_queue_unhold_array(struct shoal_queue *q, struct shoal_array *a)
{
	int rc;

	shoal__detail_clear();
	if (!q || !a)
		return -EINVAL;
	rc = shoal__array_unhold(a, queue_holder(q));
	return rc < 0 ? rc : 0;
}

SHOAL_API int shoal_queue_attach_array(struct shoal_queue *q, const char *handle, unsigned int flags,
				       struct shoal_array **out)
{
	shoal__detail_clear();
	if (!q || !handle || !out)
		return -EINVAL;
	return shoal__array_attach_from(handle, queue_holder(q), flags, out);
}

SHOAL_API int shoal_queue_push_array(struct shoal_queue *q, struct shoal_array *a, int64_t timeout_ns)
{
	char handle[SHOAL_HANDLE_MAX];
	int rc;

	if (!q || !a)
		return -EINVAL;
	rc = shoal_array_handle(a, handle, sizeof(handle));
	if (rc < 0)
		return rc;
	rc = shoal_queue_hold_array(q, a);
	if (rc)
		return rc;
	rc = shoal_queue_push(q, handle, strlen(handle), timeout_ns);
	if (rc)
		shoal_queue_unhold_array(q, a);
	return rc;
}

SHOAL_API int shoal_queue_pop_array(struct shoal_queue *q, unsigned int flags, struct shoal_array **out,
				    int64_t timeout_ns)
{
	char handle[SHOAL_HANDLE_MAX];
	size_t len = 0;
	int rc;

	if (!q || !out)
		return -EINVAL;
	/* A message longer than any handle is not one: -EMSGSIZE leaves it in
	 * the queue for a pop that expects it. */
	rc = shoal_queue_pop(q, handle, sizeof(handle) - 1, &len, timeout_ns);
	if (rc)
		return rc;
	/* A NUL inside would make the attach below see only the part before
	 * it: a different string from the one pushed. */
	if (memchr(handle, '\0', len))
		return -EINVAL;
	handle[len] = '\0';
	return shoal_queue_attach_array(q, handle, flags, out);
}

SHOAL_API int shoal_queue_unlink(const char *name)
{
	int rc = shoal__queue_unlink(name);

	/* The references it held for handles still inside (or popped by a
	 * consumer that died before attaching) belong to a queue that no
	 * longer exists: reaping drops them, and frees what that empties. */
	if (rc == 0)
		shoal_reap();
	return rc;
}
