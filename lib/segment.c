/*
 * segment.c - named POSIX shared memory objects.
 *
 * Every shoal object is a file in /dev/shm named "shoal.<name>", starting
 * with a struct shoal__hdr (internal.h), then the kind's own header, then
 * page-aligned data.
 *
 * Creation builds the object under a private name ("shoal..tmp.*": user
 * names cannot contain "..", so this space is ours), reserves its memory with
 * posix_fallocate (a full /dev/shm is -ENOSPC now, not SIGBUS later), writes
 * the headers, and publishes it with renameat2(RENAME_NOREPLACE). Openers
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

int shoal__file_name(char *buf, size_t cap, const char *name)
{
	int rc = shoal__name_check(name);
	int n;

	if (rc)
		return rc;
	n = snprintf(buf, cap, SHOAL__SHM_DIR SHOAL_PREFIX "%s", name);
	return n < 0 || (size_t)n >= cap ? -EINVAL : 0;
}

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

static void segment_free(struct shoal_segment *s)
{
	if (s->base)
		munmap(s->base, s->map_size);
	free(s);
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
	char path[sizeof(SHOAL__SHM_DIR) + SHOAL__FILE_MAX];
	char tmp[sizeof(SHOAL__SHM_DIR) + 64];
	unsigned int mode = opts && opts->mode ? opts->mode : 0600;
	unsigned int flags = opts ? opts->flags : 0;
	struct shoal_proc self;
	struct shoal_segment *s;
	uint64_t data_off, total, rnd;
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
	snprintf(tmp, sizeof(tmp), SHOAL__SHM_DIR "%s", s->tmp_name);

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
	rc = -posix_fallocate(fd, 0, (off_t)(data_off + data_size));
	if (rc) {
		if (rc == -EFBIG || rc == -ENOSPC)
			rc = shoal__fail(-ENOSPC, "%s '%s': no room in " SHOAL__SHM_DIR " for %llu bytes",
					 shoal__kind_name(kind), name,
					 (unsigned long long)(data_off + data_size));
		goto fail;
	}
	/* The tail is a hole: sized, not reserved (its owner reserves a page
	 * before it first writes there). */
	if (tail_size && ftruncate(fd, (off_t)total) != 0) {
		rc = -errno;
		goto fail;
	}
	s->map_size = total;
	s->base = mmap(NULL, total, PROT_READ | PROT_WRITE,
		       MAP_SHARED | ((flags & SHOAL_PREFAULT) && !tail_size ? MAP_POPULATE : 0),
		       fd, 0);
	if (s->base == MAP_FAILED) {
		s->base = NULL;
		rc = -errno;
		goto fail;
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
	char path[sizeof(SHOAL__SHM_DIR) + SHOAL__FILE_MAX];
	char tmp[sizeof(SHOAL__SHM_DIR) + 64];

	snprintf(tmp, sizeof(tmp), SHOAL__SHM_DIR "%s", s->tmp_name);
	snprintf(path, sizeof(path), SHOAL__SHM_DIR SHOAL_PREFIX "%s", s->name);
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
	char tmp[sizeof(SHOAL__SHM_DIR) + 64];

	if (!s)
		return;
	if (!s->published) {
		snprintf(tmp, sizeof(tmp), SHOAL__SHM_DIR "%s", s->tmp_name);
		unlink(tmp);
	}
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
		return shoal__fail(-EBADMSG, CORRUPT "header says %llu bytes, the file has %llu",
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
	char path[sizeof(SHOAL__SHM_DIR) + SHOAL__FILE_MAX];
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

int shoal__each_object(int (*fn)(const char *file, void *arg), void *arg)
{
	DIR *d = opendir(SHOAL__SHM_DIR);
	struct dirent *de;
	int n = 0;

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
	char path[sizeof(SHOAL__SHM_DIR) + 256];

	if (strncmp(file, t->prefix, t->len) != 0 ||
	    snprintf(path, sizeof(path), SHOAL__SHM_DIR "%s", file) >= (int)sizeof(path))
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

int shoal__tmp_reap(const char *file)
{
	const char *p = file + strlen(SHOAL__TMP_PREFIX);
	char path[sizeof(SHOAL__SHM_DIR) + 256], *end;
	struct shoal_proc pr;
	long pid;

	if (strncmp(file, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) != 0)
		return 0;
	errno = 0;
	pid = strtol(p, &end, 10);
	if (errno || end == p || *end != '.' || pid <= 0 || pid > INT32_MAX)
		return 0;
	if (shoal_proc_get((pid_t)pid, &pr) != -ESRCH)
		return 0; /* alive (or a new process with its pid: wait) */
	if (snprintf(path, sizeof(path), SHOAL__SHM_DIR "%s", file) >= (int)sizeof(path))
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
	char path[sizeof(SHOAL__SHM_DIR) + SHOAL__FILE_MAX];
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
