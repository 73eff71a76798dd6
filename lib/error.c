/*
 * error.c - error names, the per-thread error detail, and the version.
 *
 * An error stays a negative errno value (the ABI). Where a call fails for a
 * reason the code alone cannot carry (which object, which argument, which
 * rule), the failing site also writes one line into a thread-local buffer
 * through shoal__fail(); shoal_errdetail() reads it back. The buffer is
 * tagged with the code it explains, so a later failure with another code
 * never shows a stale explanation. Nothing is shared between threads, so
 * nothing here can block or be torn by a process dying.
 */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* The last explanation in this thread, and the (positive) code it is for
 * (0: none). The code is initial-exec TLS so that clearing it, which the
 * queue's push and pop do on entry, is one store (see internal.h). */
__thread int shoal__detail_code __attribute__((tls_model("initial-exec")));
static __thread char detail_buf[SHOAL_ERRDETAIL_MAX];

int shoal__fail(int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail_buf, sizeof(detail_buf), fmt, ap);
	va_end(ap);
	shoal__detail_code = rc < 0 ? -rc : rc;
	return rc;
}

SHOAL_API const char *shoal_errdetail(int err)
{
	if (err < 0)
		err = -err;
	if (err == 0 || err != shoal__detail_code)
		return "";
	return detail_buf;
}

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
