/*
 * segment.c - named POSIX shared memory objects.
 *
 * Every shoal object is a file named "shoal.<name>" in one directory,
 * /dev/shm unless the environment's SHOAL_DIR names another (read once per
 * process, shoal__dir() below), starting with a struct shoal__hdr
 * (internal.h), then the kind's own header, then page-aligned data.
 *
 * Creation builds the object under a private name ("shoal..tmp.*": user
 * names cannot contain "..", so this space is ours), reserves its memory with
 * posix_fallocate (a full /dev/shm is -ENOSPC now, not SIGBUS later), writes
 * the headers, and publishes it with renameat2(RENAME_NOREPLACE). A big
 * object (SHOAL__POPULATE_MIN and up) is reserved instead by writing every
 * page in the kernel (MADV_POPULATE_WRITE), split across one thread per CPU:
 * that allocates, zeroes and maps its pages in parallel, which one
 * fallocate (under the inode's lock) and then a page fault per 4 KiB page
 * at first touch did in one thread. Should the populate fail, a
 * posix_fallocate of the whole object names the error. Openers
 * therefore never see a half-built object; anything that fails validation is
 * corrupt or hostile, and is refused with an error, never trusted.
 *
 * A process that dies during create leaves at most a "shoal..tmp.<pid>.*"
 * file, which shoal_reap() (`shoal gc`) removes through shoal__tmp_reap(),
 * here beside the code that makes the name, once that pid is gone. Opening
 * has no shared state to leave behind.
 *
 * This file also owns the names in /dev/shm as a whole: the listing every
 * walk over them uses (shoal__each_object) and a look at any object's
 * common header without knowing its kind (shoal__segment_peek: the same
 * checks as an open, nothing mapped), which is how the reaper and the CLI
 * tell kinds apart.
 */
#include "internal.h"
#include "reap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#define SHOAL__TMPFS_MAGIC 0x01021994
#define SHOAL__HUGETLBFS_MAGIC 0x958458f6

/* Objects this big or bigger are populated at create (see the top). Below
 * it a fallocate is as fast and the pages are faulted when first used. */
#define SHOAL__POPULATE_MIN (16u << 20)
/* The least a populate thread is given: below it a thread costs more than
 * it saves. */
#define SHOAL__POPULATE_CHUNK (64u << 20)
#define SHOAL__POPULATE_MAX_THREADS 16

/* How every -EBADMSG detail starts: the kind and name, then the check. */
#define CORRUPT "%s '%s' is corrupt or foreign: "

const char *shoal__kind_name(uint32_t kind)
{
	switch (kind) {
	case SHOAL__KIND_SEGMENT:
		return "segment";
	case SHOAL__KIND_QUEUE:
		return "queue";
	case SHOAL__KIND_ARRAY:
		return "array";
	case SHOAL__KIND_POOL:
		return "pool";
	default:
		return "object";
	}
}

int shoal__name_check(const char *name)
{
	size_t len;

	if (!name)
		return shoal__fail(-EINVAL, "name is NULL");
	len = strnlen(name, SHOAL_NAME_MAX + 1);
	if (len == 0)
		return shoal__fail(-EINVAL, "name is empty: a name has 1 to %d bytes", SHOAL_NAME_MAX);
	if (len > SHOAL_NAME_MAX)
		return shoal__fail(-EINVAL, "name '%.32s...' is longer than %d bytes", name,
				   SHOAL_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '/')
			return shoal__fail(-EINVAL, "name '%s' contains '/' (byte %zu)", name, i);
		if (c <= 0x20 || c >= 0x7f)
			return shoal__fail(-EINVAL,
					   "name '%.*s...' has byte 0x%02x at %zu: only printable "
					   "ASCII other than space is allowed",
					   (int)i, name, c, i);
	}
	if (name[0] == '.')
		return shoal__fail(-EINVAL, "name '%s' starts with '.'", name);
	if (strstr(name, ".."))
		return shoal__fail(-EINVAL, "name '%s' contains \"..\"", name);
	return 0;
}

/* ---- the directory -------------------------------------------------- */

/*
 * SHOAL_DIR is read once per process, at the first call that needs it, and
 * kept: a process's objects cannot move under it, and children inherit the
 * choice. Every process sharing objects must have the same SHOAL_DIR; a
 * handle does not carry it (handles stay "shoal:array:<name>@<gen>"), so an
 * attach from a process with another directory is -ENOENT with a detail
 * that names the path it looked at.
 *
 * A directory set by SHOAL_DIR must be absolute, exist, be a directory
 * that nobody but its owner can write unless it has the sticky bit (as
 * /dev/shm and /tmp), and be on tmpfs or hugetlbfs: memory that a reboot
 * clears. Anything else is refused (every call that names an object fails
 * with the reason), never warned about (the library prints nothing): on a
 * disk an array would be written back to the disk, and objects would
 * outlive a reboot, where the liveness module's boot-relative start times
 * no longer tell a dead creator from a live one. The default, /dev/shm, is
 * taken as it is, as before SHOAL_DIR existed.
 */
static pthread_once_t dir_once = PTHREAD_ONCE_INIT;
static char dir_path[SHOAL__DIR_MAX]; /* with its trailing '/' */
static char dir_shown[SHOAL__DIR_MAX]; /* without it, as users write it */
static int dir_rc;                    /* 0, or why SHOAL_DIR is refused */
static char dir_why[SHOAL_ERRDETAIL_MAX];
static uint64_t dir_align;            /* hugetlbfs: its page size; else 0 */

static void dir_refuse(int rc, const char *d, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void dir_refuse(int rc, const char *d, const char *fmt, ...)
{
	char what[SHOAL_ERRDETAIL_MAX - 240];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(dir_why, sizeof(dir_why), "SHOAL_DIR '%.200s' %s", d, what);
	dir_rc = rc;
}

static void dir_load(void)
{
	const char *env = secure_getenv("SHOAL_DIR");
	bool given = env && *env;
	const char *d = given ? env : SHOAL__DEFAULT_DIR;
	size_t len = strlen(d);
	struct statfs sf;
	struct stat st;

	while (len > 1 && d[len - 1] == '/')
		len--;
	if (d[0] != '/') {
		dir_refuse(-EINVAL, d, "is not an absolute path");
		return;
	}
	if (len + 2 > SHOAL__DIR_MAX) {
		dir_refuse(-EINVAL, d, "is longer than %u bytes", SHOAL__DIR_MAX - 2);
		return;
	}
	memcpy(dir_path, d, len);
	memcpy(dir_shown, d, len);
	dir_shown[len] = '\0';
	if (dir_path[len - 1] != '/')
		dir_path[len++] = '/';
	dir_path[len] = '\0';
	if (statfs(dir_path, &sf) == 0 && (unsigned long)sf.f_type == SHOAL__HUGETLBFS_MAGIC)
		dir_align = (uint64_t)sf.f_bsize;
	if (!given)
		return;
	if (stat(dir_path, &st) != 0) {
		if (errno == ENOTDIR) /* the trailing '/' asks for a directory */
			dir_refuse(-ENOTDIR, d, "is not a directory");
		else if (errno == ENOENT)
			dir_refuse(-ENOENT, d, "does not exist");
		else
			dir_refuse(-errno, d, "cannot be looked at: %s", strerror(errno));
		return;
	}
	if ((st.st_mode & 022) && !(st.st_mode & S_ISVTX)) {
		dir_refuse(-EACCES, d,
			   "has mode 0%o: others may write there without the sticky bit, "
			   "so they could rename or remove your objects",
			   (unsigned)(st.st_mode & 07777));
		return;
	}
	if (statfs(dir_path, &sf) != 0) {
		dir_refuse(-errno, d, "cannot be looked at: %s", strerror(errno));
		return;
	}
	if ((unsigned long)sf.f_type != SHOAL__TMPFS_MAGIC &&
	    (unsigned long)sf.f_type != SHOAL__HUGETLBFS_MAGIC)
		dir_refuse(-EINVAL, d,
			   "is on a filesystem of type 0x%lx, not tmpfs or hugetlbfs: shoal "
			   "objects live in memory that a reboot clears",
			   (unsigned long)sf.f_type);
}

const char *shoal__dir(void)
{
	pthread_once(&dir_once, dir_load);
	if (dir_rc) {
		shoal__fail(dir_rc, "%s", dir_why);
		return NULL;
	}
	return dir_path;
}

int shoal__path(char *buf, size_t cap, const char *file)
{
	const char *d = shoal__dir();
	int n;

	if (!d)
		return dir_rc;
	n = snprintf(buf, cap, "%s%s", d, file);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

SHOAL_API int shoal_dir(const char **out)
{
	shoal__detail_clear();
	if (!out)
		return shoal__fail(-EINVAL, "shoal_dir: out is NULL");
	if (!shoal__dir())
		return dir_rc;
	*out = dir_shown;
	return 0;
}

int shoal__file_name(char *buf, size_t cap, const char *name)
{
	char file[SHOAL__FILE_MAX];
	int rc = shoal__name_check(name);

	if (rc)
		return rc;
	snprintf(file, sizeof(file), SHOAL_PREFIX "%s", name);
	rc = shoal__path(buf, cap, file);
	return rc == -ENAMETOOLONG ? -EINVAL : rc;
}

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static void segment_free(struct shoal_segment *s)
{
	if (s->snapshot) {
		shoal__segment_snapshot_end(s);
		free(s->base);
	} else if (s->base) {
		munmap(s->base, s->map_size);
	}
	free(s);
}

/* "12.0 GiB": a size for a person, in @buf. */
static const char *human(char *buf, size_t cap, uint64_t v)
{
	static const char *const unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB" };
	double x = (double)v;
	unsigned int u = 0;

	while (x >= 1024 && u + 1 < sizeof(unit) / sizeof(unit[0])) {
		x /= 1024;
		u++;
	}
	snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", x, unit[u]);
	return buf;
}

/* Whether a create's failure @rc means the directory has no room: a
 * tmpfs says -ENOSPC (or -EFBIG past its size), a hugetlbfs whose pool is
 * empty -ENOMEM. */
static bool no_room_code(int rc)
{
	return rc == -ENOSPC || rc == -EFBIG || (rc == -ENOMEM && dir_align);
}

/* One number from the kernel's pool of huge pages of @page bytes; 0 when
 * it cannot be read. */
static unsigned long long hugepages(uint64_t page, const char *what)
{
	char path[96];
	unsigned long long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB/%s",
		 (unsigned long long)(page >> 10), what);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%llu", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n;
}

/*
 * no_room() on a hugetlbfs: its pages come from the system's pool of huge
 * pages (vm.nr_hugepages), not from the mount, whose statvfs says 0 of 0
 * unless it was mounted with size=; so the detail names the pool, and the
 * mount's own limit when it has one.
 */
static int no_huge_pages(enum shoal__kind kind, const char *name, uint64_t data_size)
{
	char want[32], page[32], limit[96] = "";
	struct statvfs sv;

	if (statvfs(dir_path, &sv) == 0 && sv.f_blocks > 0)
		snprintf(limit, sizeof(limit), "; the mount (size=) has %llu of its %llu left",
			 (unsigned long long)sv.f_bavail, (unsigned long long)sv.f_blocks);
	return shoal__fail(-ENOSPC,
			   "%s '%s': no room for %s (%llu bytes) in %s, a hugetlbfs of %s pages: "
			   "%llu free of %llu in the system's pool%s; reserve more (sysctl "
			   "vm.nr_hugepages) or set SHOAL_DIR to a tmpfs",
			   shoal__kind_name(kind), name, human(want, sizeof(want), data_size),
			   (unsigned long long)data_size, dir_shown,
			   human(page, sizeof(page), dir_align), hugepages(dir_align, "free_hugepages"),
			   hugepages(dir_align, "nr_hugepages"), limit);
}

/*
 * The -ENOSPC of a create that found no room for @data_size bytes of data
 * (and its headers): the detail names the object, the size asked, the
 * directory, its free space and size (statvfs), and the ways out.
 * Containers give /dev/shm 64 MiB by default, where this is the first
 * thing a user of big arrays meets.
 */
static int no_room(enum shoal__kind kind, const char *name, uint64_t data_size)
{
	char want[32], avail[32], size[32];
	struct statvfs sv;

	if (dir_align)
		return no_huge_pages(kind, name, data_size);
	if (statvfs(dir_path, &sv) != 0)
		return shoal__fail(-ENOSPC,
				   "%s '%s': no room for %s (%llu bytes) in %s; set SHOAL_DIR to a "
				   "directory on a bigger tmpfs or hugetlbfs",
				   shoal__kind_name(kind), name, human(want, sizeof(want), data_size),
				   (unsigned long long)data_size, dir_shown);
	return shoal__fail(-ENOSPC,
			   "%s '%s': no room for %s (%llu bytes) in %s: %s free of %s; set "
			   "SHOAL_DIR to a directory on a bigger tmpfs or hugetlbfs, or enlarge "
			   "this mount (Docker: --shm-size)",
			   shoal__kind_name(kind), name, human(want, sizeof(want), data_size),
			   (unsigned long long)data_size, dir_shown,
			   human(avail, sizeof(avail), (uint64_t)sv.f_bavail * sv.f_frsize),
			   human(size, sizeof(size), (uint64_t)sv.f_blocks * sv.f_frsize));
}

/* Whether the directory's mount has less than @len bytes free: a size
 * limited mount (a tmpfs without size limit says 0 blocks) certainly
 * cannot hold them. Racy, hence only a quick refusal, never the guarantee. */
static bool surely_no_room(uint64_t len)
{
	struct statvfs sv;

	return statvfs(dir_path, &sv) == 0 && sv.f_blocks > 0 &&
	       (uint64_t)sv.f_bavail * sv.f_frsize < len;
}

struct populate_job {
	char *p;
	size_t len;
	int rc;
};

static void *populate_run(void *arg)
{
	struct populate_job *j = arg;

	j->rc = madvise(j->p, j->len, MADV_POPULATE_WRITE) != 0 ? -errno : 0;
	return NULL;
}

/*
 * Write-fault every page of [@p, @p + @len) in the kernel, in up to one
 * thread per CPU this process may run on (the caller's thread is one),
 * each given at least SHOAL__POPULATE_CHUNK bytes. Every thread is joined
 * before it returns; they block every signal, so none is delivered to a
 * thread the caller does not know. 0, or the first error (-EFAULT for a
 * page the mount could not give: full, or over a memory limit; -EINVAL
 * before Linux 5.14).
 */
static int populate(void *p, size_t len)
{
	struct populate_job job[SHOAL__POPULATE_MAX_THREADS];
	pthread_t tid[SHOAL__POPULATE_MAX_THREADS];
	bool started[SHOAL__POPULATE_MAX_THREADS] = { false };
	size_t n = 1, per, off = 0;
	sigset_t all, old;
	pthread_attr_t attr;
	cpu_set_t cpus;
	int rc = 0;

	if (sched_getaffinity(0, sizeof(cpus), &cpus) == 0)
		n = (size_t)CPU_COUNT(&cpus);
	if (n > len / SHOAL__POPULATE_CHUNK)
		n = len / SHOAL__POPULATE_CHUNK;
	if (n > SHOAL__POPULATE_MAX_THREADS)
		n = SHOAL__POPULATE_MAX_THREADS;
	if (n < 1)
		n = 1;
	/* Pieces end on 2 MiB, so no huge page is split between threads. */
	per = (size_t)round_up((len + n - 1) / n, 2u << 20);
	for (size_t i = 0; i < n; i++) {
		job[i].p = (char *)p + off;
		job[i].len = off >= len ? 0 : len - off < per ? len - off : per;
		job[i].rc = 0;
		off += job[i].len;
	}
	if (n > 1 && pthread_attr_init(&attr) == 0) {
		(void)pthread_attr_setstacksize(&attr, 64u << 10);
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		for (size_t i = 1; i < n; i++)
			started[i] = job[i].len &&
				     pthread_create(&tid[i], &attr, populate_run, &job[i]) == 0;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	/* What no thread took (none could be started: the caller does it). */
	for (size_t i = 0; i < n; i++)
		if (i == 0 || !started[i])
			populate_run(&job[i]);
	for (size_t i = 1; i < n; i++)
		if (started[i])
			pthread_join(tid[i], NULL);
	for (size_t i = 0; i < n && !rc; i++)
		rc = job[i].rc;
	return rc;
}

int shoal__segment_create(const char *name, enum shoal__kind kind, size_t kind_size,
			  size_t data_size, const struct shoal_opts *opts,
			  struct shoal_segment **out)
{
	return shoal__segment_create_tail(name, kind, kind_size, data_size, 0, opts, out);
}

/*
 * Where the reserved part of an object ends: its header and data, page
 * aligned. Past it may lie a tail (an array's overflow ledger) that is
 * sized but not reserved: touching a page there before reserving it could
 * be SIGBUS on a full /dev/shm, so neither create nor a prefault maps it in.
 */
static uint64_t reserved_end(const struct shoal__hdr *h)
{
	return round_up(h->data_off + h->data_size, SHOAL__DATA_ALIGN);
}

/* SHOAL_PREFAULT: fault in the reserved part only (never the tail). A hint:
 * a kernel without MADV_POPULATE_READ (before 5.14) just faults later. */
static void prefault(struct shoal_segment *s)
{
	uint64_t end = reserved_end(&s->hdr);

	if (end > s->map_size)
		end = s->map_size;
	(void)madvise(s->base, end, MADV_POPULATE_READ);
}

int shoal__segment_create_tail(const char *name, enum shoal__kind kind, size_t kind_size,
			       size_t data_size, size_t tail_size, const struct shoal_opts *opts,
			       struct shoal_segment **out)
{
	char path[SHOAL__PATH_MAX];
	char tmp[SHOAL__PATH_MAX];
	unsigned int mode = opts && opts->mode ? opts->mode : 0600;
	unsigned int flags = opts ? opts->flags : 0;
	struct shoal_proc self;
	struct shoal_segment *s;
	uint64_t data_off, total, reserved, rnd;
	bool big;
	int fd, rc;

	if (!out)
		return shoal__fail(-EINVAL, "%s create: out is NULL", shoal__kind_name(kind));
	if (data_size == 0)
		return shoal__fail(-EINVAL, "%s '%s': size must be at least 1 byte",
				   shoal__kind_name(kind), name ? name : "(null)");
	if (kind_size > SHOAL__DATA_ALIGN * 16)
		return -EINVAL; /* a kind's fixed header: never the caller's doing */
	rc = shoal__file_name(path, sizeof(path), name);
	if (rc)
		return rc;
	if ((mode & ~0777u) || (mode & 022) || (mode & 0600) != 0600)
		return shoal__fail(-EINVAL,
				   "%s '%s': mode 0%o: must be within 0755 and include 0600 "
				   "(owner read-write; group and others never write)",
				   shoal__kind_name(kind), name, mode);
	if (flags & ~SHOAL_PREFAULT)
		return shoal__fail(-EINVAL, "%s '%s': unknown flags 0x%x at create",
				   shoal__kind_name(kind), name, flags);
	data_off = round_up(SHOAL__HDR_SIZE + kind_size, SHOAL__DATA_ALIGN);
	if (tail_size > (uint64_t)SHOAL__DATA_ALIGN * 4096)
		return -EINVAL; /* a kind's tail: never the caller's doing */
	if (data_size > (uint64_t)INT64_MAX - data_off - (tail_size ? SHOAL__DATA_ALIGN + tail_size : 0) ||
	    round_up(data_off + data_size, SHOAL__DATA_ALIGN) + tail_size > SIZE_MAX)
		return shoal__fail(-EOVERFLOW, "%s '%s': size %zu bytes is too large",
				   shoal__kind_name(kind), name, data_size);
	/* The reserved part; a tail starts at the next page. */
	total = data_off + data_size;
	if (tail_size)
		total = round_up(total, SHOAL__DATA_ALIGN) + tail_size;
	/* A hugetlbfs file is made of whole huge pages (its truncate and mmap
	 * refuse other sizes); the header's total_size is the file's. */
	if (dir_align > SHOAL__DATA_ALIGN)
		total = round_up(total, dir_align);
	if (total > SIZE_MAX || total > (uint64_t)INT64_MAX)
		return shoal__fail(-EOVERFLOW, "%s '%s': size %zu bytes is too large",
				   shoal__kind_name(kind), name, data_size);
	/* The bytes whose memory create reserves: the header and data, never
	 * a tail (its owner reserves each page before it first writes there). */
	reserved = data_off + data_size;
	if (dir_align > SHOAL__DATA_ALIGN)
		reserved = total; /* hugetlbfs has no holes to leave */
	big = reserved >= SHOAL__POPULATE_MIN;
	/* Not the guarantee (the rename is), just no 1 GiB fallocate for nothing. */
	if (access(path, F_OK) == 0)
		return shoal__fail(-EEXIST, "%s '%s' exists: %s", shoal__kind_name(kind), name,
				   path);
	rc = shoal_proc_self(&self);
	if (rc)
		return rc;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	shoal__random(&rnd, sizeof(rnd));
	snprintf(s->tmp_name, sizeof(s->tmp_name), SHOAL__TMP_PREFIX "%d.%016llx", (int)self.pid,
		 (unsigned long long)rnd);
	rc = shoal__path(tmp, sizeof(tmp), s->tmp_name);
	if (rc) {
		free(s);
		return rc;
	}
	if (surely_no_room(reserved)) {
		free(s);
		return no_room(kind, name, data_size);
	}

	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		free(s);
		return rc;
	}
	if (fchmod(fd, mode) != 0) {
		rc = -errno;
		goto fail;
	}
	/* A small object: reserved at once, faulted when first used. A big
	 * one: reserved by populate() once mapped. Either is sized to the
	 * total, so a tail past the reserved part is a hole. */
	rc = big ? 0 : -posix_fallocate(fd, 0, (off_t)reserved);
	if (!rc && (big || total != reserved) && ftruncate(fd, (off_t)total) != 0)
		rc = -errno;
	if (rc) {
		if (no_room_code(rc))
			rc = no_room(kind, name, data_size);
		goto fail;
	}
	s->map_size = total;
	s->base = mmap(NULL, total, PROT_READ | PROT_WRITE,
		       MAP_SHARED | ((flags & SHOAL_PREFAULT) && !big && !tail_size ? MAP_POPULATE : 0),
		       fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		rc = -errno;
		if (no_room_code(rc)) /* hugetlbfs: the pages are reserved here */
			rc = no_room(kind, name, data_size);
		goto fail;
	}
	if (big) {
		/* Huge pages where the mount allows them only on request
		 * (huge=advise); a no-op elsewhere. */
		(void)madvise(s->base, reserved, MADV_HUGEPAGE);
		/* A page populate could not have (a full mount, a memory limit,
		 * a kernel before 5.14): fallocate reserves the rest, or names
		 * the error; what populate mapped stays. */
		if (populate(s->base, reserved) != 0) {
			rc = -posix_fallocate(fd, 0, (off_t)reserved);
			if (rc) {
				if (no_room_code(rc))
					rc = no_room(kind, name, data_size);
				goto fail;
			}
		}
	}
	close(fd);
	fd = -1;

	memcpy(s->hdr.magic, SHOAL__MAGIC, sizeof(s->hdr.magic));
	s->hdr.version = SHOAL__LAYOUT_VERSION;
	s->hdr.kind = kind;
	s->hdr.total_size = total;
	s->hdr.kind_off = SHOAL__HDR_SIZE;
	s->hdr.kind_size = kind_size;
	s->hdr.data_off = data_off;
	s->hdr.data_size = data_size;
	do
		shoal__random(&s->hdr.generation, sizeof(s->hdr.generation));
	while (s->hdr.generation == 0);
	s->hdr.creator_pid = self.pid;
	s->hdr.creator_start = self.start_time;
	s->hdr.creator_uid = geteuid();
	s->hdr.created_ns = shoal__realtime_ns();
	memcpy(s->base, &s->hdr, sizeof(s->hdr));

	s->kind_hdr = (char *)s->base + SHOAL__HDR_SIZE;
	s->data = (char *)s->base + data_off;
	s->flags = flags;
	if ((flags & SHOAL_PREFAULT) && tail_size)
		prefault(s);
	strcpy(s->name, name);
	*out = s;
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	segment_free(s);
	return rc;
}

int shoal__segment_publish(struct shoal_segment *s)
{
	char path[SHOAL__PATH_MAX];
	char tmp[SHOAL__PATH_MAX];

	/* The directory was accepted at create: these cannot fail. */
	(void)shoal__path(tmp, sizeof(tmp), s->tmp_name);
	(void)shoal__file_name(path, sizeof(path), s->name);
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) != 0) {
		int rc = -errno;

		if (rc == -EEXIST)
			shoal__fail(rc, "%s '%s' exists: %s", shoal__kind_name(s->hdr.kind), s->name,
				    path);
		unlink(tmp);
		segment_free(s);
		return rc;
	}
	s->published = true;
	return 0;
}

void shoal__segment_abort(struct shoal_segment *s)
{
	char tmp[SHOAL__PATH_MAX];

	if (!s)
		return;
	if (!s->published && shoal__path(tmp, sizeof(tmp), s->tmp_name) == 0)
		unlink(tmp);
	segment_free(s);
}

/* Validate a header copy against the file it came from. */
static int hdr_check(const struct shoal__hdr *h, uint64_t file_size, enum shoal__kind kind,
		     size_t kind_min, const char *name)
{
	const char *want = shoal__kind_name(kind);

	if (memcmp(h->magic, SHOAL__MAGIC, sizeof(h->magic)) != 0)
		return shoal__fail(-EBADMSG, CORRUPT "bad magic", want, name);
	if (h->version == 0)
		return shoal__fail(-EBADMSG, CORRUPT "layout version 0", want, name);
	if (h->version != SHOAL__LAYOUT_VERSION)
		return shoal__fail(-EPROTO, "%s '%s': layout version %u, this library reads %u",
				   want, name, h->version, SHOAL__LAYOUT_VERSION);
	if (h->kind == 0 || h->kind > SHOAL__KIND_MAX)
		return shoal__fail(-EBADMSG, CORRUPT "unknown object kind %u", want, name,
				   h->kind);
	if (h->total_size != file_size)
		return shoal__fail(-EBADMSG, CORRUPT "header says %llu bytes, the file has %llu "
				   "(truncated, or grown, since it was made)",
				   want, name, (unsigned long long)h->total_size,
				   (unsigned long long)file_size);
	if (h->kind_off != SHOAL__HDR_SIZE ||
	    !shoal__range_ok(h->kind_off, h->kind_size, file_size) ||
	    h->data_off % SHOAL__DATA_ALIGN != 0 || h->data_off < h->kind_off + h->kind_size ||
	    !shoal__range_ok(h->data_off, h->data_size, file_size))
		return shoal__fail(-EBADMSG, CORRUPT "header offsets out of the file's bounds",
				   want, name);
	if (h->generation == 0)
		return shoal__fail(-EBADMSG, CORRUPT "generation 0", want, name);
	if (kind != SHOAL__KIND_ANY && h->kind != (uint32_t)kind)
		return shoal__fail(-EPROTOTYPE, "'%s' is a %s, not a %s", name,
				   shoal__kind_name(h->kind), want);
	if (h->kind_size < kind_min)
		return shoal__fail(-EBADMSG, CORRUPT "its header is %llu bytes, at least %zu expected",
				   want, name, (unsigned long long)h->kind_size, kind_min);
	return 0;
}

/*
 * Open @name's file and check that it can be ours: a regular file of this
 * uid that nobody else may write, with room for a header. The descriptor
 * in *@fd, its stat in *@st; @kind only names the object in details.
 */
static int open_file(const char *name, enum shoal__kind kind, bool rdonly, int *fd_out,
		     struct stat *st)
{
	char path[SHOAL__PATH_MAX];
	int fd, rc;

	rc = shoal__file_name(path, sizeof(path), name);
	if (rc)
		return rc;
	/* O_NONBLOCK: a FIFO planted under our name must not hang the open. */
	fd = open(path, (rdonly ? O_RDONLY : O_RDWR) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		/* A symlink, directory, socket or device where an object should
		 * be: not ours, so not trusted. */
		if (errno == ELOOP || errno == EISDIR || errno == ENXIO || errno == ENODEV)
			return shoal__fail(-EBADMSG, CORRUPT "%s is not a regular file",
					   shoal__kind_name(kind), name, path);
		rc = -errno;
		if (rc == -ENOENT)
			return shoal__fail(rc, "no %s named '%s' (%s)", shoal__kind_name(kind),
					   name, path);
		if (rc == -EACCES)
			return shoal__fail(rc, "%s '%s': %s: permission denied",
					   shoal__kind_name(kind), name, path);
		return rc;
	}
	if (fstat(fd, st) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		return shoal__fail(-EBADMSG, CORRUPT "%s is not a regular file",
				   shoal__kind_name(kind), name, path);
	}
	if (st->st_uid != geteuid()) {
		close(fd);
		return shoal__fail(-EACCES, "%s '%s': owned by uid %u, not by this process's uid %u",
				   shoal__kind_name(kind), name, (unsigned)st->st_uid,
				   (unsigned)geteuid());
	}
	if (st->st_mode & 022) {
		close(fd);
		return shoal__fail(-EACCES, "%s '%s': mode 0%o lets others write to it",
				   shoal__kind_name(kind), name, (unsigned)(st->st_mode & 0777));
	}
	if ((uint64_t)st->st_size < SHOAL__HDR_SIZE || (uint64_t)st->st_size > SIZE_MAX) {
		close(fd);
		return shoal__fail(-EBADMSG, CORRUPT "%llu bytes, too small for a shoal header",
				   shoal__kind_name(kind), name, (unsigned long long)st->st_size);
	}
	*fd_out = fd;
	return 0;
}

int shoal__segment_open(const char *name, enum shoal__kind kind, size_t kind_min,
			unsigned int flags, struct shoal_segment **out)
{
	bool rdonly = flags & SHOAL_RDONLY;
	struct shoal_segment *s;
	struct stat st;
	int fd, rc;

	if (!out)
		return shoal__fail(-EINVAL, "%s open: out is NULL", shoal__kind_name(kind));
	if (flags & ~(SHOAL_RDONLY | SHOAL_PREFAULT))
		return shoal__fail(-EINVAL, "%s '%s': unknown open flags 0x%x",
				   shoal__kind_name(kind), name ? name : "(null)", flags);
	rc = open_file(name, kind, rdonly, &fd, &st);
	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->map_size = (size_t)st.st_size;
	/* No MAP_POPULATE: a prefault must stop short of a tail (see
	 * reserved_end()), which is known only once the header is checked. */
	s->base = mmap(NULL, s->map_size, rdonly ? PROT_READ : PROT_READ | PROT_WRITE,
		       MAP_SHARED, fd, 0);
	rc = -errno;
	close(fd);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		segment_free(s);
		return rc;
	}
	/* One read of the header; only the copy is looked at from here on. */
	memcpy(&s->hdr, s->base, sizeof(s->hdr));
	rc = hdr_check(&s->hdr, (uint64_t)st.st_size, kind, kind_min, name);
	if (rc) {
		segment_free(s);
		return rc;
	}
	s->kind_hdr = (char *)s->base + s->hdr.kind_off;
	s->data = (char *)s->base + s->hdr.data_off;
	s->flags = flags;
	if (flags & SHOAL_PREFAULT)
		prefault(s);
	s->published = true;
	strcpy(s->name, name);
	*out = s;
	return 0;
}

int shoal__segment_peek(const char *name, struct shoal__hdr *out)
{
	struct shoal__hdr h;
	struct stat st;
	ssize_t got;
	int fd, rc;

	rc = open_file(name, SHOAL__KIND_ANY, true, &fd, &st);
	if (rc)
		return rc;
	/* One read into a local copy, as open's memcpy: only it is checked. */
	got = pread(fd, &h, sizeof(h), 0);
	rc = got < 0 ? -errno : 0;
	close(fd);
	if (rc)
		return rc;
	if (got != (ssize_t)sizeof(h)) /* truncated since the fstat */
		return shoal__fail(-EBADMSG, CORRUPT "shorter than a shoal header",
				   shoal__kind_name(SHOAL__KIND_ANY), name);
	rc = hdr_check(&h, (uint64_t)st.st_size, SHOAL__KIND_ANY, 0, name);
	if (rc)
		return rc;
	*out = h;
	return 0;
}

/*
 * Snapshots: what observers (shoal ls / info / top / leaks, the observe
 * calls) read. A mapping of an object its same-user owner truncates stops
 * the reader with SIGBUS at the first touch past the new end; pread comes
 * back short instead, which is said as -EBADMSG "truncated". A copy also
 * cannot change between two reads of a field.
 */
void (*shoal__snapshot_hook)(const char *name, int stage);

static int truncated(struct shoal_segment *s, uint64_t need)
{
	struct stat st;
	unsigned long long now = 0;

	if (s->fd >= 0 && fstat(s->fd, &st) == 0)
		now = (unsigned long long)st.st_size;
	return shoal__fail(-EBADMSG, "%s '%s' was truncated while read: %llu bytes now, "
			   "%llu needed (its header says %llu)", shoal__kind_name(s->hdr.kind),
			   s->name, now, (unsigned long long)need,
			   (unsigned long long)s->hdr.total_size);
}

int shoal__segment_pread(struct shoal_segment *s, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	if (!s->snapshot || s->fd < 0)
		return -EBADF;
	if (!shoal__range_ok(off, len, s->hdr.total_size))
		return shoal__fail(-EBADMSG, CORRUPT "a read of %zu bytes at %llu is past its "
				   "%llu bytes", shoal__kind_name(s->hdr.kind), s->name, len,
				   (unsigned long long)off, (unsigned long long)s->hdr.total_size);
	while (len) {
		ssize_t got = pread(s->fd, p, len, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		if (got == 0)
			return truncated(s, off + len);
		p += got;
		off += (uint64_t)got;
		len -= (size_t)got;
	}
	return 0;
}

void shoal__segment_snapshot_end(struct shoal_segment *s)
{
	if (s && s->snapshot && s->fd >= 0) {
		close(s->fd);
		s->fd = -1;
	}
}

int shoal__segment_snapshot(const char *name, enum shoal__kind kind, size_t kind_min,
			    struct shoal_segment **out)
{
	struct shoal_segment *s;
	struct shoal__hdr h;
	struct stat st;
	size_t len;
	int fd, rc;

	if (!out)
		return shoal__fail(-EINVAL, "%s observe: out is NULL", shoal__kind_name(kind));
	rc = open_file(name, kind, true, &fd, &st);
	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s) {
		close(fd);
		return -ENOMEM;
	}
	s->snapshot = true;
	s->fd = fd;
	s->flags = SHOAL_RDONLY;
	strcpy(s->name, name);
	s->hdr.kind = (uint32_t)kind;
	s->hdr.total_size = (uint64_t)st.st_size;
	/* One read of the header, as open's memcpy; only the copy is checked
	 * (a short read leaves @s->hdr naming the kind asked for). */
	rc = shoal__segment_pread(s, &h, sizeof(h), 0);
	if (rc == 0) {
		s->hdr = h;
		rc = hdr_check(&s->hdr, (uint64_t)st.st_size, kind, kind_min, name);
	}
	if (rc == 0 && s->hdr.kind_size > SHOAL__SNAPSHOT_KIND_MAX)
		rc = shoal__fail(-EBADMSG, CORRUPT "a kind header of %llu bytes",
				 shoal__kind_name(kind), name, (unsigned long long)s->hdr.kind_size);
	if (rc) {
		segment_free(s);
		return rc;
	}
	if (SHOAL__UNLIKELY(shoal__snapshot_hook))
		shoal__snapshot_hook(name, 1);
	len = (size_t)(s->hdr.kind_off + s->hdr.kind_size);
	s->base = malloc(len);
	if (!s->base) {
		segment_free(s);
		return -ENOMEM;
	}
	s->map_size = len;
	memcpy(s->base, &s->hdr, sizeof(s->hdr));
	rc = shoal__segment_pread(s, (char *)s->base + sizeof(s->hdr), len - sizeof(s->hdr),
				  sizeof(s->hdr));
	if (rc) {
		segment_free(s);
		return rc;
	}
	s->kind_hdr = (char *)s->base + s->hdr.kind_off;
	s->data = NULL;
	s->published = true;
	if (SHOAL__UNLIKELY(shoal__snapshot_hook))
		shoal__snapshot_hook(name, 2);
	*out = s;
	return 0;
}

int shoal__each_object(int (*fn)(const char *file, void *arg), void *arg)
{
	const char *dir = shoal__dir();
	struct dirent *de;
	int n = 0;
	DIR *d;

	if (!dir)
		return dir_rc;
	d = opendir(dir);
	if (!d)
		return errno == ENOMEM ? -ENOMEM : errno == ENOENT ? -ENOENT : -EACCES;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, SHOAL_PREFIX, strlen(SHOAL_PREFIX)) == 0)
			n += fn(de->d_name, arg);
	closedir(d);
	return n;
}

struct tmp_of {
	char prefix[64]; /* "shoal..tmp.<pid>." */
	size_t len;
};

/* shoal__each_object() callback: unlink @file if it starts with the prefix;
 * 1 if it did. */
static int unlink_tmp(const char *file, void *arg)
{
	const struct tmp_of *t = arg;
	char path[SHOAL__PATH_MAX];

	if (strncmp(file, t->prefix, t->len) != 0 || shoal__path(path, sizeof(path), file) != 0)
		return 0;
	return unlink(path) == 0;
}

int shoal__unlink_tmp_of(pid_t pid)
{
	struct tmp_of t;
	int n;

	t.len = (size_t)snprintf(t.prefix, sizeof(t.prefix), SHOAL__TMP_PREFIX "%d.", (int)pid);
	n = shoal__each_object(unlink_tmp, &t);
	return n < 0 ? 0 : n;
}

pid_t shoal__tmp_pid(const char *file)
{
	const char *p = file + strlen(SHOAL__TMP_PREFIX);
	char *end;
	long pid;

	if (strncmp(file, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) != 0)
		return 0;
	errno = 0;
	pid = strtol(p, &end, 10);
	if (errno || end == p || *end != '.' || pid <= 0 || pid > INT32_MAX)
		return 0;
	return (pid_t)pid;
}

void shoal__printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			*s = '?';
}

int shoal__tmp_reap(const char *file)
{
	char path[SHOAL__PATH_MAX];
	struct shoal_proc pr;
	pid_t pid = shoal__tmp_pid(file);

	if (pid <= 0)
		return 0;
	if (shoal_proc_get(pid, &pr) != -ESRCH)
		return 0; /* alive (or a new process with its pid: wait) */
	if (shoal__path(path, sizeof(path), file) != 0)
		return 0;
	return unlink(path) == 0;
}

SHOAL_API int shoal_segment_create(const char *name, size_t size, const struct shoal_opts *opts,
				   struct shoal_segment **out)
{
	struct shoal_segment *s;
	int rc;

	shoal__detail_clear();
	if (!out)
		return shoal__fail(-EINVAL, "segment create: out is NULL");
	rc = shoal__segment_create(name, SHOAL__KIND_SEGMENT, 0, size, opts, &s);
	if (rc)
		return rc;
	rc = shoal__segment_publish(s);
	if (rc)
		return rc;
	*out = s;
	return 0;
}

SHOAL_API int shoal_segment_open(const char *name, unsigned int flags, struct shoal_segment **out)
{
	shoal__detail_clear();
	return shoal__segment_open(name, SHOAL__KIND_SEGMENT, 0, flags, out);
}

SHOAL_API int shoal_segment_close(struct shoal_segment *s)
{
	if (s)
		segment_free(s); /* munmap of our own whole mapping cannot fail */
	return 0;
}

SHOAL_API void *shoal_segment_data(const struct shoal_segment *s)
{
	return s->data;
}

SHOAL_API size_t shoal_segment_size(const struct shoal_segment *s)
{
	return s->hdr.data_size;
}

SHOAL_API const char *shoal_segment_name(const struct shoal_segment *s)
{
	return s->name;
}

SHOAL_API bool shoal_segment_is_readonly(const struct shoal_segment *s)
{
	return s->flags & SHOAL_RDONLY;
}

SHOAL_API int shoal_unlink(const char *name)
{
	char path[SHOAL__PATH_MAX];
	int rc;

	shoal__detail_clear();
	rc = shoal__file_name(path, sizeof(path), name);
	if (rc)
		return rc;
	if (unlink(path) == 0)
		return 0;
	rc = -errno;
	if (rc == -ENOENT)
		return shoal__fail(rc, "no object named '%s' (%s)", name, path);
	return rc;
}
