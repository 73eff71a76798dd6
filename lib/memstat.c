/*
 * memstat.c - what a process costs in memory.
 *
 * Two sources, both maintained by the kernel per process:
 *  - /proc/PID/status: RSS split into anonymous, file and shmem pages, swap
 *    and the RSS high-water mark. The kernel keeps these as counters, so a
 *    read costs the same whatever the process maps (a few microseconds).
 *  - /proc/PID/smaps_rollup: PSS, USS (private clean + private dirty), swap
 *    PSS. The kernel walks every page table of the process to produce it, so
 *    the cost grows with what is mapped (docs/memstat.md);
 *    read only when asked.
 *
 * "Private" memory, the figure worker recycling uses, is RssAnon + VmSwap:
 * what the process alone holds and what would go back to the system if it
 * ended. Not RSS (it counts every shared page the process touched: a worker
 * that reads a 2 GiB shared array has 2 GiB of RSS and none of it is its
 * own), and not ru_maxrss (a peak, inherited across fork).
 *
 * Nothing here touches shared memory; a process dying while we read its
 * /proc files makes the read fail with -ESRCH.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Read a /proc file whole into @buf; bytes read or -errno. */
static ssize_t read_proc(pid_t pid, const char *file, char *buf, size_t cap)
{
	char path[64];
	size_t got = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	while (got < cap - 1) {
		ssize_t n = read(fd, buf + got, cap - 1 - got);

		if (n < 0) {
			int rc = errno == EINTR ? 0 : -errno;

			if (rc) {
				close(fd);
				return rc == -ENOENT ? -ESRCH : rc;
			}
			continue;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

/* The value of "Key:   123 kB" lines, in bytes; false if absent. */
static bool field_kb(const char *text, const char *key, uint64_t *out)
{
	size_t klen = strlen(key);
	const char *p = text;

	while ((p = strstr(p, key)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[klen] == ':') {
			*out = strtoull(p + klen + 1, NULL, 10) * 1024u;
			return true;
		}
		p += klen;
	}
	return false;
}

SHOAL_API int shoal_memstat(pid_t pid, unsigned int flags, struct shoal_memstat *out)
{
	char buf[4096];
	struct shoal_memstat m;
	uint64_t clean = 0, dirty = 0;
	const char *state;
	ssize_t n;

	if (pid < 0 || !out || (flags & ~SHOAL_MEMSTAT_SMAPS))
		return -EINVAL;
	if (pid == 0)
		pid = getpid();
	memset(&m, 0, sizeof(m));
	n = read_proc(pid, "status", buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	state = strstr(buf, "\nState:");
	if (state) {
		state += 7;
		while (*state == ' ' || *state == '\t')
			state++;
		if (*state == 'Z' || *state == 'X')
			return -ESRCH; /* exited; its parent has not reaped it yet */
	}
	/* Kernel threads have no Vm* lines: all zero, which is the truth. */
	field_kb(buf, "VmRSS", &m.rss);
	field_kb(buf, "RssAnon", &m.anon);
	field_kb(buf, "RssFile", &m.file);
	field_kb(buf, "RssShmem", &m.shmem);
	field_kb(buf, "VmSwap", &m.swap);
	field_kb(buf, "VmHWM", &m.peak);
	m.private_bytes = m.anon + m.swap;
	if (flags & SHOAL_MEMSTAT_SMAPS) {
		n = read_proc(pid, "smaps_rollup", buf, sizeof(buf));
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ESRCH; /* exited between the two reads */
		if (!field_kb(buf, "Pss", &m.pss))
			return -EIO;
		field_kb(buf, "Private_Clean", &clean);
		field_kb(buf, "Private_Dirty", &dirty);
		field_kb(buf, "SwapPss", &m.swap_pss);
		m.uss = clean + dirty;
		m.private_dirty = dirty;
		m.flags |= SHOAL_MEMSTAT_SMAPS;
	}
	*out = m;
	return 0;
}
