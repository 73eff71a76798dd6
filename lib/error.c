/*
 * error.c - error names and the version.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

SHOAL_API const char *shoal_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case 0:
		return "success";
	case SHOAL_EWORKERLOST:
		return "worker lost: the process running the task died";
	case SHOAL_EPOISONED:
		return "object poisoned: a process died inside it and it could not be repaired";
	case EBADMSG:
		return "corrupt or foreign shoal object";
	case EPROTO:
		return "shoal object of an unknown layout version";
	case EPROTOTYPE:
		return "wrong kind of shoal object";
	default:
		break;
	}
	if (err >= SHOAL_ERRBASE)
		return "unknown shoal error";
	/* strerrordesc_np: the static description, no locale buffer. */
	{
		const char *s = strerrordesc_np(err);

		return s ? s : "unknown error";
	}
}

SHOAL_API const char *shoal_version(void)
{
	return SHOAL_VERSION_STRING;
}
