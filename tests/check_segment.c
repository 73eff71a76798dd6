/*
 * check_segment.c - named segments: creation rules, hostile input at open,
 * and what other processes see.
 */
#include "internal.h"
#include "array.h"
#include "testutil.h"

#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

static struct shoal_segment *make(const char *name, size_t size)
{
	struct shoal_segment *s = NULL;

	ck_assert_int_eq(shoal_segment_create(name, size, NULL, &s), 0);
	ck_assert_ptr_nonnull(s);
	return s;
}

START_TEST(create_open_roundtrip)
{
	const char *name = t_name("rt");
	struct shoal_segment *a = make(name, 10000), *b = NULL;

	ck_assert_uint_eq(shoal_segment_size(a), 10000);
	ck_assert_str_eq(shoal_segment_name(a), name);
	ck_assert_uint_eq((uintptr_t)shoal_segment_data(a) % 4096, 0);
	ck_assert(!shoal_segment_is_readonly(a));
	/* fallocate'd and fresh: zeroed. */
	for (size_t i = 0; i < 10000; i++)
		ck_assert_int_eq(((unsigned char *)shoal_segment_data(a))[i], 0);
	memset(shoal_segment_data(a), 0x5a, 10000);

	ck_assert_int_eq(shoal_segment_open(name, 0, &b), 0);
	ck_assert_uint_eq(shoal_segment_size(b), 10000);
	ck_assert_int_eq(((unsigned char *)shoal_segment_data(b))[9999], 0x5a);
	((unsigned char *)shoal_segment_data(b))[0] = 1;
	ck_assert_int_eq(((unsigned char *)shoal_segment_data(a))[0], 1);

	ck_assert_int_eq(shoal_segment_close(b), 0);
	ck_assert_int_eq(shoal_segment_close(a), 0);
	ck_assert_int_eq(shoal_segment_close(NULL), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
}
END_TEST

START_TEST(no_temp_left_and_prefix)
{
	const char *name = t_name("pfx");
	struct shoal_segment *s = make(name, 1);
	struct stat st;

	ck_assert_int_eq(stat(t_path(name), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	ck_assert_int_eq(stat(t_path(name), &st), -1);
}
END_TEST

START_TEST(bad_names)
{
	static const char *const bad[] = { "", "a/b", "/a", "..", "a..b", ".hidden", "a b",
					   "tab\there", "nl\n", "del\x7f", "\x01", "h\xc3\xa9" };
	char longest[SHOAL_NAME_MAX + 2];
	struct shoal_segment *s = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(shoal_segment_create(bad[i], 64, NULL, &s) == -EINVAL, "create %s", bad[i]);
		ck_assert_msg(shoal_segment_open(bad[i], 0, &s) == -EINVAL, "open %s", bad[i]);
		ck_assert_msg(shoal_unlink(bad[i]) == -EINVAL, "unlink %s", bad[i]);
	}
	ck_assert_int_eq(shoal_segment_create(NULL, 64, NULL, &s), -EINVAL);
	ck_assert_int_eq(shoal_segment_open(NULL, 0, &s), -EINVAL);
	ck_assert_int_eq(shoal_unlink(NULL), -EINVAL);

	memset(longest, 'x', sizeof(longest));
	longest[SHOAL_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(shoal_segment_create(longest, 64, NULL, &s), -EINVAL);
	snprintf(longest, 12, "t.%d", (int)getpid() % 100000);
	memset(longest + strlen(longest), 'y', SHOAL_NAME_MAX - strlen(longest));
	longest[SHOAL_NAME_MAX] = '\0';
	ck_assert_int_eq(shoal_segment_create(longest, 64, NULL, &s), 0);
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_assert_int_eq(shoal_unlink(longest), 0);
}
END_TEST

START_TEST(bad_sizes_and_args)
{
	struct shoal_segment *s = NULL;
	struct shoal_opts o = { 0 };
	const char *name = t_name("args");

	ck_assert_int_eq(shoal_segment_create(name, 0, NULL, &s), -EINVAL);
	ck_assert_int_eq(shoal_segment_create(name, SIZE_MAX, NULL, &s), -EOVERFLOW);
	ck_assert_int_eq(shoal_segment_create(name, SIZE_MAX - 4096, NULL, &s), -EOVERFLOW);
	ck_assert_int_eq(shoal_segment_create(name, 64, NULL, NULL), -EINVAL);
	o.mode = 0666;
	ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), -EINVAL);
	o.mode = 0620;
	ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), -EINVAL);
	o.mode = 0400;
	ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), -EINVAL);
	o.mode = 01600;
	ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), -EINVAL);
	o.mode = 0;
	o.flags = SHOAL_RDONLY;
	ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), -EINVAL);
	ck_assert_int_eq(shoal_segment_open(name, 0x100, &s), -EINVAL);
	ck_assert_int_eq(shoal_segment_open(name, 0, NULL), -EINVAL);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(access(t_path(name), F_OK), -1);
}
END_TEST

START_TEST(exists_and_missing)
{
	const char *name = t_name("ex");
	struct shoal_segment *s = make(name, 64), *t = NULL;

	ck_assert_int_eq(shoal_segment_create(name, 64, NULL, &t), -EEXIST);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_assert_int_eq(shoal_unlink(name), 0);
	ck_assert_int_eq(shoal_segment_open(name, 0, &t), -ENOENT);
	ck_assert_int_eq(shoal_unlink(name), -ENOENT);
}
END_TEST

/* Two processes race to create one name: exactly one wins. */
START_TEST(create_race_one_winner)
{
	const char *name = t_name("race");
	pid_t kids[4];
	int wins = 0;

	for (int i = 0; i < 4; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			struct shoal_segment *s;
			int rc = shoal_segment_create(name, 1 << 20, NULL, &s);

			_exit(rc == 0 ? 0 : rc == -EEXIST ? 1 : 2);
		}
	}
	for (int i = 0; i < 4; i++) {
		int rc = t_wait(kids[i]);

		ck_assert_int_le(rc, 1);
		wins += rc == 0;
	}
	ck_assert_int_eq(wins, 1);
	ck_assert_int_eq(shoal_unlink(name), 0);
}
END_TEST

START_TEST(mode_default_and_umask)
{
	static const mode_t masks[] = { 0, 077, 022 };
	struct shoal_opts o = { .mode = 0640 };
	struct stat st;

	for (size_t i = 0; i < 3; i++) {
		const char *name = t_name("mode");
		mode_t old = umask(masks[i]);
		struct shoal_segment *s = make(name, 64);

		umask(old);
		ck_assert_int_eq(stat(t_path(name), &st), 0);
		ck_assert_int_eq(st.st_mode & 07777, 0600);
		shoal_segment_close(s);
		shoal_unlink(name);

		name = t_name("mode640");
		old = umask(masks[i]);
		ck_assert_int_eq(shoal_segment_create(name, 64, &o, &s), 0);
		umask(old);
		ck_assert_int_eq(stat(t_path(name), &st), 0);
		ck_assert_int_eq(st.st_mode & 07777, 0640);
		shoal_segment_close(s);
		shoal_unlink(name);
	}
}
END_TEST

START_TEST(refuse_writable_by_others)
{
	const char *name = t_name("0666");
	struct shoal_segment *s = make(name, 64), *t = NULL;

	shoal_segment_close(s);
	ck_assert_int_eq(chmod(t_path(name), 0666), 0);
	ck_assert_int_eq(shoal_segment_open(name, 0, &t), -EACCES);
	ck_assert_int_eq(chmod(t_path(name), 0620), 0);
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_RDONLY, &t), -EACCES);
	ck_assert_int_eq(chmod(t_path(name), 0644), 0);
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_RDONLY, &t), 0);
	shoal_segment_close(t);
	ck_assert_ptr_nonnull(t);
	shoal_unlink(name);
}
END_TEST

START_TEST(refuse_other_owner)
{
	const char *name = t_name("owner");
	struct shoal_segment *s = make(name, 64), *t = NULL;

	shoal_segment_close(s);
	if (geteuid() == 0) {
		ck_assert_int_eq(chown(t_path(name), 1, (gid_t)-1), 0);
		ck_assert_int_eq(shoal_segment_open(name, 0, &t), -EACCES);
	} else {
		/* Without root we cannot give a file away; refuse the mode bits
		 * instead so the check still runs. */
		ck_assert_int_eq(chmod(t_path(name), 0), 0);
		ck_assert_int_eq(shoal_segment_open(name, 0, &t), -EACCES);
	}
	ck_assert_ptr_null(t);
	shoal_unlink(name);
}
END_TEST

/* A valid header to corrupt, taken from a real segment. */
static void real_header(struct shoal__hdr *h, size_t data)
{
	const char *name = t_name("tmpl");
	struct shoal_segment *s = make(name, data);

	memcpy(h, (char *)shoal_segment_data(s) - SHOAL__DATA_ALIGN, sizeof(*h));
	shoal_segment_close(s);
	shoal_unlink(name);
}

static int open_planted(const struct shoal__hdr *h, size_t file_size)
{
	const char *name = t_name("bad");
	char *buf = calloc(1, file_size ? file_size : 1);
	struct shoal_segment *s = NULL;
	int rc;

	memcpy(buf, h, file_size < sizeof(*h) ? file_size : sizeof(*h));
	t_plant(name, buf, file_size, 0600);
	free(buf);
	rc = shoal_segment_open(name, 0, &s);
	if (rc == 0)
		shoal_segment_close(s);
	ck_assert_ptr_null(rc ? s : NULL);
	shoal_unlink(name);
	return rc;
}

START_TEST(hostile_headers)
{
	struct shoal__hdr good, h;
	size_t fsize = SHOAL__DATA_ALIGN + 4096;

	real_header(&good, 4096);
	ck_assert_int_eq(open_planted(&good, fsize), 0);

	h = good;
	ck_assert_int_eq(open_planted(&h, 0), -EBADMSG);           /* empty */
	ck_assert_int_eq(open_planted(&h, 50), -EBADMSG);          /* truncated header */
	ck_assert_int_eq(open_planted(&h, 200), -EBADMSG);         /* header fits, data not */
	memcpy(h.magic, "NOTSHOAL", 8);
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);       /* wrong magic */
	h = good;
	h.version = 2;
	ck_assert_int_eq(open_planted(&h, fsize), -EPROTO);        /* from the future */
	h.version = 0;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
	h = good;
	h.kind = SHOAL__KIND_QUEUE;
	ck_assert_int_eq(open_planted(&h, fsize), -EPROTOTYPE);    /* another kind */
	h.kind = 99;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
	h = good;
	h.total_size = fsize * 2;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);       /* claims more than the file */
	h = good;
	h.data_size = UINT64_MAX - 10;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);       /* wraps around */
	h = good;
	h.data_off = 100;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);       /* misaligned, inside header */
	h = good;
	h.data_off = UINT64_MAX & ~(uint64_t)4095;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
	h = good;
	h.kind_size = UINT64_MAX;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
	h = good;
	h.kind_off = 0;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
	h = good;
	h.generation = 0;
	ck_assert_int_eq(open_planted(&h, fsize), -EBADMSG);
}
END_TEST

START_TEST(random_bytes_never_crash)
{
	unsigned int seed = (unsigned int)getpid();

	for (int i = 0; i < 200; i++) {
		size_t len = (size_t)(rand_r(&seed) % 9000);
		unsigned char *buf = malloc(len + 1);
		const char *name = t_name("rnd");
		struct shoal_segment *s = NULL;
		int rc;

		for (size_t j = 0; j < len; j++)
			buf[j] = (unsigned char)rand_r(&seed);
		if (i % 2 == 0 && len >= 8)
			memcpy(buf, SHOAL__MAGIC, 8); /* get past the first check too */
		t_plant(name, buf, len, 0600);
		free(buf);
		rc = shoal_segment_open(name, 0, &s);
		ck_assert_msg(rc == -EBADMSG || rc == -EPROTO || rc == -EPROTOTYPE, "rc %d", rc);
		shoal_unlink(name);
	}
}
END_TEST

START_TEST(not_regular_files)
{
	const char *name = t_name("dir");
	struct shoal_segment *s = NULL;

	ck_assert_int_eq(mkdir(t_path(name), 0700), 0);
	ck_assert_int_eq(shoal_segment_open(name, 0, &s), -EBADMSG);
	ck_assert_int_eq(rmdir(t_path(name)), 0);

	name = t_name("fifo");
	ck_assert_int_eq(mkfifo(t_path(name), 0600), 0);
	ck_assert_int_eq(shoal_segment_open(name, 0, &s), -EBADMSG);
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_RDONLY, &s), -EBADMSG);
	ck_assert_int_eq(unlink(t_path(name)), 0);

	name = t_name("link");
	ck_assert_int_eq(symlink("/etc/passwd", t_path(name)), 0);
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_RDONLY, &s), -EBADMSG);
	ck_assert_int_eq(unlink(t_path(name)), 0);
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(create_does_not_follow_or_clobber)
{
	const char *name = t_name("clobber");
	struct shoal_segment *s = NULL;
	char target[] = "/tmp/shoal-target-XXXXXX";
	int fd = mkstemp(target);
	struct stat st;

	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(symlink(target, t_path(name)), 0);
	ck_assert_int_eq(shoal_segment_create(name, 4096, NULL, &s), -EEXIST);
	ck_assert_int_eq(stat(target, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	unlink(t_path(name));
	unlink(target);
}
END_TEST

START_TEST(enospc_at_create)
{
	struct shoal_segment *s = NULL;
	const char *name = t_name("huge");

	/* Larger than the whole tmpfs: refused at create, nothing left. */
	ck_assert_int_eq(shoal_segment_create(name, (size_t)1 << 42, NULL, &s), -ENOSPC);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(access(t_path(name), F_OK), -1);
}
END_TEST

START_TEST(forked_child_sees_writes)
{
	const char *name = t_name("fork");
	struct shoal_segment *s = make(name, 1 << 20);
	unsigned char *p = shoal_segment_data(s);
	pid_t pid;

	for (size_t i = 0; i < (1 << 20); i++)
		p[i] = (unsigned char)(i * 7);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_segment *c;
		unsigned char *q;

		if (shoal_segment_open(name, 0, &c) != 0)
			_exit(2);
		q = shoal_segment_data(c);
		for (size_t i = 0; i < (1 << 20); i++)
			if (q[i] != (unsigned char)(i * 7))
				_exit(3);
		q[12345] = 0xee; /* back the other way */
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(p[12345], 0xee);
	shoal_segment_close(s);
	shoal_unlink(name);
}
END_TEST

START_TEST(exec_process_sees_writes)
{
	const char *name = t_name("exec");
	struct shoal_segment *s = make(name, 4096);
	char reader[512];
	pid_t pid;

	memcpy(shoal_segment_data(s), "written by the parent", 22);
	snprintf(reader, sizeof(reader), "%s/tests/seg_reader",
		 getenv("SHOAL_TEST_BUILDDIR") ? getenv("SHOAL_TEST_BUILDDIR") : ".");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(reader, reader, name, "written by the parent", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	shoal_segment_close(s);
	shoal_unlink(name);
}
END_TEST

START_TEST(readonly_open_cannot_write)
{
	const char *name = t_name("ro");
	struct shoal_segment *s = make(name, 4096), *r = NULL;
	pid_t pid;

	((char *)shoal_segment_data(s))[0] = 'w';
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_RDONLY, &r), 0);
	ck_assert(shoal_segment_is_readonly(r));
	ck_assert_int_eq(((char *)shoal_segment_data(r))[0], 'w');
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would exit(1) */
		((volatile char *)shoal_segment_data(r))[0] = 'x';
		_exit(0); /* not reached: the write faults */
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGSEGV);
	ck_assert_int_eq(((char *)shoal_segment_data(s))[0], 'w');
	shoal_segment_close(r);
	shoal_segment_close(s);
	shoal_unlink(name);
}
END_TEST

START_TEST(prefault_maps_pages_in)
{
	const char *name = t_name("pf");
	struct shoal_opts o = { .flags = SHOAL_PREFAULT };
	struct shoal_segment *s = NULL, *t = NULL;
	unsigned char vec[16];

	ck_assert_int_eq(shoal_segment_create(name, 16 * 4096, &o, &s), 0);
	ck_assert_int_eq(mincore(shoal_segment_data(s), 16 * 4096, vec), 0);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(vec[i] & 1, 1);
	ck_assert_int_eq(shoal_segment_open(name, SHOAL_PREFAULT | SHOAL_RDONLY, &t), 0);
	ck_assert_int_eq(mincore(shoal_segment_data(t), 16 * 4096, vec), 0);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(vec[i] & 1, 1);
	shoal_segment_close(t);
	shoal_segment_close(s);
	shoal_unlink(name);
}
END_TEST

/* The detail of @rc must contain every one of the NULL-ended @needles. */
#define ck_detail(rc, ...) ck_detail_((rc), (const char *const[]){ __VA_ARGS__, NULL })
static void ck_detail_(int rc, const char *const *needles)
{
	const char *d = shoal_errdetail(rc);

	ck_assert_ptr_nonnull(d);
	for (; *needles; needles++)
		ck_assert_msg(strstr(d, *needles), "detail of %d \"%s\" lacks \"%s\"", rc, d,
			      *needles);
}

START_TEST(errdetail_names_the_rule)
{
	char longest[SHOAL_NAME_MAX + 2];
	struct shoal_segment *s = NULL;
	struct shoal_opts o = { .mode = 0666 };

	ck_assert_str_eq(shoal_errdetail(0), "");
	ck_assert_int_eq(shoal_segment_create("a/b", 64, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "'a/b'", "contains '/'");
	ck_assert_int_eq(shoal_segment_open("a..b", 0, &s), -EINVAL);
	ck_detail(EINVAL, "'a..b'", "\"..\"");
	ck_assert_int_eq(shoal_unlink(".hidden"), -EINVAL);
	ck_detail(-EINVAL, "'.hidden'", "starts with '.'");
	ck_assert_int_eq(shoal_segment_create("a b", 64, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "0x20", "printable ASCII");
	ck_assert_int_eq(shoal_segment_create("", 64, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "empty");
	ck_assert_int_eq(shoal_segment_create(NULL, 64, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "NULL");
	memset(longest, 'x', sizeof(longest));
	longest[SHOAL_NAME_MAX + 1] = '\0';
	ck_assert_int_eq(shoal_segment_create(longest, 64, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "longer than 200 bytes");
	ck_assert_int_eq(shoal_segment_create(t_name("mode"), 64, &o, &s), -EINVAL);
	ck_detail(-EINVAL, "mode 0666", "0600");
	ck_assert_int_eq(shoal_segment_create(t_name("zero"), 0, NULL, &s), -EINVAL);
	ck_detail(-EINVAL, "size must be at least 1 byte");
	ck_assert_int_eq(shoal_segment_create(t_name("huge"), SIZE_MAX, NULL, &s), -EOVERFLOW);
	ck_detail(-EOVERFLOW, "too large");
	/* A record is only for the code it was made for. */
	ck_assert_str_eq(shoal_errdetail(-ENOENT), "");
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(errdetail_names_the_object)
{
	const char *name = t_name("detail");
	struct shoal_segment *s = NULL, *t = NULL;
	struct shoal_queue *q = NULL;
	char want[300];

	ck_assert_int_eq(shoal_segment_open(name, 0, &t), -ENOENT);
	snprintf(want, sizeof(want), "no segment named '%s'", name);
	ck_detail(-ENOENT, want);
	ck_assert_int_eq(shoal_unlink(name), -ENOENT);
	ck_detail(-ENOENT, name);

	/* A successful create, open or unlink clears the record... */
	s = make(name, 64);
	ck_assert_str_eq(shoal_errdetail(-ENOENT), "");
	ck_assert_int_eq(shoal_segment_create(name, 64, NULL, &t), -EEXIST);
	ck_detail(-EEXIST, "segment '", name, "' exists");
	/* ... other successful calls leave it. */
	ck_assert_uint_eq(shoal_segment_size(s), 64);
	ck_assert_int_eq(shoal_segment_close(s), 0);
	ck_detail(-EEXIST, name);

	ck_assert_int_eq(chmod(t_path(name), 0666), 0);
	ck_assert_int_eq(shoal_segment_open(name, 0, &t), -EACCES);
	ck_detail(-EACCES, name, "mode 0666", "others write");
	ck_assert_int_eq(chmod(t_path(name), 0600), 0);
	ck_assert_int_eq(shoal_queue_open(name, 0, &q), -EPROTOTYPE);
	ck_detail(-EPROTOTYPE, name, "is a segment, not a queue");
	ck_assert_int_eq(shoal_unlink(name), 0);
	ck_assert_ptr_null(t);
	ck_assert_ptr_null(q);
}
END_TEST

/* open_planted(), keeping the detail the open left (unlink clears it). */
static char planted_detail[SHOAL_ERRDETAIL_MAX];
static int open_planted_detail(const struct shoal__hdr *h, size_t file_size)
{
	const char *name = t_name("bad");
	char *buf = calloc(1, file_size ? file_size : 1);
	struct shoal_segment *s = NULL;
	int rc;

	memcpy(buf, h, file_size < sizeof(*h) ? file_size : sizeof(*h));
	t_plant(name, buf, file_size, 0600);
	free(buf);
	rc = shoal_segment_open(name, 0, &s);
	snprintf(planted_detail, sizeof(planted_detail), "%s", shoal_errdetail(rc));
	ck_assert_ptr_null(s);
	shoal_unlink(name);
	return rc;
}

START_TEST(errdetail_says_which_check_failed)
{
	struct shoal__hdr good, h;
	size_t fsize = SHOAL__DATA_ALIGN + 4096;

	real_header(&good, 4096);
	h = good;
	memcpy(h.magic, "NOTSHOAL", 8);
	ck_assert_int_eq(open_planted_detail(&h, fsize), -EBADMSG);
	ck_assert_msg(strstr(planted_detail, "bad magic"), "%s", planted_detail);
	h = good;
	h.total_size += 4096;
	ck_assert_int_eq(open_planted_detail(&h, fsize), -EBADMSG);
	ck_assert_msg(strstr(planted_detail, "header says"), "%s", planted_detail);
	h = good;
	h.version = 99;
	ck_assert_int_eq(open_planted_detail(&h, fsize), -EPROTO);
	ck_assert_msg(strstr(planted_detail, "layout version 99"), "%s", planted_detail);
	ck_assert_int_eq(open_planted_detail(&good, 10), -EBADMSG);
	ck_assert_msg(strstr(planted_detail, "too small"), "%s", planted_detail);
}
END_TEST

static const char *t_dir(const char *tag, mode_t mode);

/* In a directory of its own (SHOAL_DIR): its fake queue holders name
 * queues that do not exist, which a reap run by another test program at
 * the same time (make -j check) would rightly drop. */
START_TEST(errdetail_queue_and_array)
{
	const char *dir = t_dir("qd", 0700);
	const char *name = t_name("qd");
	size_t shape[2] = { SIZE_MAX / 2, 4 };
	struct shoal_queue *q = NULL;
	struct shoal_array *a = NULL, *b = NULL;
	char handle[SHOAL_HANDLE_MAX];
	char want[64];
	int rc = 0;
	uint32_t i;
	pid_t pid;

	ck_assert_int_eq(setenv("SHOAL_DIR", dir, 1), 0);
	ck_assert_int_eq(shoal_queue_create(name, 1000, 64, NULL, &q), -EINVAL);
	ck_detail(-EINVAL, name, "capacity 1000", "power of two", "2..16777216");
	ck_assert_int_eq(shoal_queue_create(name, 8, 0, NULL, &q), -EINVAL);
	ck_detail(-EINVAL, name, "max_msg 0");
	ck_assert_ptr_null(q);
	/* A call that can record clears on entry: a failure of its own that
	 * records nothing never shows the record of an earlier call. */
	ck_assert_int_eq(shoal_queue_push(NULL, "x", 1, 0), -EINVAL);
	ck_assert_str_eq(shoal_errdetail(-EINVAL), "");
	ck_assert_int_eq(shoal_queue_create(name, 3, 8, NULL, &q), -EINVAL);
	ck_detail(-EINVAL, "capacity 3");
	ck_assert_int_eq(shoal_array_release(NULL), -EINVAL);
	ck_assert_str_eq(shoal_errdetail(-EINVAL), "");

	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_FLOAT64, 0, 2, shape, NULL, &a),
			 -EOVERFLOW);
	ck_detail(-EOVERFLOW, name, "overflows");
	ck_assert_int_eq(shoal_array_create(name, 99, 0, 1, shape, NULL, &a), -EINVAL);
	ck_detail(-EINVAL, "dtype code 99");
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_FLOAT64, 0, 33, shape, NULL, &a),
			 -EINVAL);
	ck_detail(-EINVAL, "ndim 33", "1..32");
	ck_assert_int_eq(shoal_array_attach("shoal:array:x@12", 0, &a), -EINVAL);
	ck_detail(-EINVAL, "'shoal:array:x@12'", "16 hex digits");
	ck_assert_int_eq(shoal_array_attach("nope", 0, &a), -EINVAL);
	ck_detail(-EINVAL, "does not start with");

	/* The holder ledger full: the array's name and the limit. */
	shape[0] = 4;
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a), 0);
	for (i = 0; i < SHOAL_ARRAY_HOLDERS_MAX + 1 && rc == 0; i++)
		rc = shoal__array_hold(a, shoal__holder_queue(1000 + i));
	ck_assert_int_eq(rc, -EUSERS);
	ck_assert_uint_eq(i, SHOAL_ARRAY_HOLDERS_MAX);
	snprintf(want, sizeof(want), "(%u live holders", (unsigned)SHOAL_ARRAY_HOLDERS_MAX);
	ck_detail(-EUSERS, "array '", name, "': holder ledger full", want);
	ck_assert_int_ge(shoal_array_handle(a, handle, sizeof(handle)), 0);
	/* Another process (this one has its line already) is refused. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(shoal_array_attach(handle, 0, &b) == -EUSERS &&
		      strstr(shoal_errdetail(-EUSERS), "holder ledger full") ? 0 : 1);
	ck_assert_int_eq(t_wait(pid), 0);
	for (i = 0; i + 1 < SHOAL_ARRAY_HOLDERS_MAX; i++)
		ck_assert_int_eq(shoal__array_unhold(a, shoal__holder_queue(1000 + i)), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	/* Its handle now names nothing. */
	ck_assert_int_eq(shoal_array_attach(handle, 0, &b), -ENOENT);
	ck_detail(-ENOENT, name);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

static void *other_thread(void *arg)
{
	*(const char **)arg = shoal_errdetail(-EINVAL);
	return NULL;
}

START_TEST(errdetail_is_per_thread)
{
	struct shoal_segment *s = NULL;
	const char *seen = NULL;
	pthread_t t;

	ck_assert_int_eq(shoal_segment_open("x/y", 0, &s), -EINVAL);
	ck_detail(-EINVAL, "x/y");
	ck_assert_int_eq(pthread_create(&t, NULL, other_thread, &seen), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_ptr_nonnull(seen);
	ck_assert_str_eq(seen, "");
	ck_detail(-EINVAL, "x/y");
}
END_TEST

START_TEST(strerror_and_version)
{
	static const int codes[] = { EBADMSG, EPROTO, EPROTOTYPE, SHOAL_EWORKERLOST, SHOAL_EPOISONED };

	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		const char *a = shoal_strerror(-codes[i]);

		ck_assert_ptr_nonnull(a);
		ck_assert_str_eq(a, shoal_strerror(codes[i]));
		for (size_t j = 0; j < i; j++)
			ck_assert_str_ne(a, shoal_strerror(-codes[j]));
	}
	ck_assert_str_eq(shoal_strerror(0), "success");
	ck_assert_str_eq(shoal_strerror(-ENOENT), strerror(ENOENT));
	ck_assert_str_eq(shoal_strerror(-(SHOAL_ERRBASE + 999)), "unknown shoal error");
	ck_assert_ptr_nonnull(shoal_strerror(-4000));
	ck_assert_str_eq(shoal_version(), SHOAL_VERSION_STRING);
}
END_TEST

/* Resource limits hit inside create and open: an error, and nothing left. */
START_TEST(out_of_memory_and_fds)
{
	const char *name = t_name("rlim");
	struct shoal_segment *s = make(name, 4096);
	pid_t pid;

	shoal_segment_close(s);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct rlimit as = { 64u << 20, 64u << 20 }, nofile = { 3, 3 };
		const char *big = t_name("rlim-big");
		struct shoal_segment *t = NULL;
		char tmp[128];
		int rc;

		/* The child's own address space is capped; /dev/shm is not. */
		setrlimit(RLIMIT_AS, &as);
		rc = shoal_segment_create(big, 256u << 20, NULL, &t);
		if (rc != -ENOMEM || t || access(t_path(big), F_OK) == 0)
			_exit(1);
		/* No temporary file of ours left behind either. */
		snprintf(tmp, sizeof(tmp), "ls /dev/shm | grep -q '^shoal\\.\\.tmp\\.%d\\.'", (int)getpid());
		if (system(tmp) == 0)
			_exit(2);
		as.rlim_cur = as.rlim_max = RLIM_INFINITY;
		setrlimit(RLIMIT_NOFILE, &nofile);
		if (shoal_segment_open(name, 0, &t) != -EMFILE)
			_exit(3);
		if (shoal_segment_create(big, 4096, NULL, &t) != -EMFILE)
			_exit(4);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	shoal_unlink(name);
}
END_TEST

/* ---- SHOAL_DIR --------------------------------------------------------- */

/* Each test runs in a process of its own (Check's fork mode), which reads
 * SHOAL_DIR once, at its first call that needs it: set it first. */

/* A fresh directory under /dev/shm (a tmpfs): "/dev/shm/t-dir.<pid>.<tag>". */
static const char *t_dir(const char *tag, mode_t mode)
{
	static char buf[4][128];
	static unsigned n;
	char *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "/dev/shm/t-dir.%d.%s", (int)getpid(), tag);
	ck_assert_int_eq(mkdir(b, 0700), 0);
	ck_assert_int_eq(chmod(b, mode), 0);
	return b;
}

/* How many entries of @dir start with @prefix. */
static int t_count(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		n += strncmp(de->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

START_TEST(dir_default_is_dev_shm)
{
	const char *d = NULL;

	unsetenv("SHOAL_DIR");
	ck_assert_int_eq(shoal_dir(&d), 0);
	ck_assert_str_eq(d, "/dev/shm");
	ck_assert_int_eq(shoal_dir(NULL), -EINVAL);
}
END_TEST

/* Objects made, found, listed, removed and reaped in another directory:
 * nothing of them in /dev/shm, and the setting read once. */
START_TEST(dir_objects_live_there)
{
	const char *dir = t_dir("there", 0700), *name = t_name("there"), *got = NULL;
	const char *aname = t_name("there-a");
	struct shoal_segment *s = NULL, *t = NULL;
	struct shoal_array *a = NULL;
	char path[512], slash[160];
	size_t shape[1] = { 1000 };
	pid_t pid;

	snprintf(slash, sizeof(slash), "%s//", dir);
	setenv("SHOAL_DIR", slash, 1); /* trailing slashes are dropped */
	ck_assert_int_eq(shoal_dir(&got), 0);
	ck_assert_str_eq(got, dir);
	setenv("SHOAL_DIR", "/nowhere/else", 1); /* too late: read once */
	ck_assert_int_eq(shoal_dir(&got), 0);
	ck_assert_str_eq(got, dir);

	ck_assert_int_eq(shoal_segment_create(name, 4096, NULL, &s), 0);
	snprintf(path, sizeof(path), "%s/" SHOAL_PREFIX "%s", dir, name);
	ck_assert_int_eq(access(path, F_OK), 0);
	ck_assert_int_eq(access(t_path(name), F_OK), -1);
	ck_assert_int_eq(shoal_segment_open(name, 0, &t), 0);
	shoal_segment_close(t);
	shoal_segment_close(s);
	ck_assert_int_eq(shoal_unlink(name), 0);
	ck_assert_int_eq(access(path, F_OK), -1);
	ck_assert_int_eq(shoal_segment_open(name, 0, &t), -ENOENT);
	ck_assert_msg(strstr(shoal_errdetail(-ENOENT), dir), "%s", shoal_errdetail(-ENOENT));

	/* A child's array reference and a half-made object, left by its
	 * death, are reaped there. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *b = NULL;
		char tmp[512];
		int fd;

		snprintf(tmp, sizeof(tmp), "%s/" SHOAL_PREFIX ".tmp.%d.00000000cafef00d", dir,
			 (int)getpid());
		fd = open(tmp, O_CREAT | O_EXCL | O_RDWR, 0600);
		if (fd < 0)
			_exit(1);
		close(fd);
		_exit(shoal_array_create(aname, SHOAL_DTYPE_FLOAT64, 0, 1, shape, NULL, &b) ? 2 : 0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(t_count(dir, SHOAL_PREFIX ".tmp."), 1);
	ck_assert_int_eq(shoal_array_open(aname, 0, &a), 0);
	shoal_array_close(a);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert_int_eq(t_count(dir, SHOAL_PREFIX), 0);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A refused SHOAL_DIR: its code from shoal_dir() and every call that names
 * or lists objects, with the same detail. One child per value, since a
 * process reads it once. */
START_TEST(dir_refused)
{
	const char *open_dir = t_dir("open", 0777), *sticky = t_dir("sticky", 01777);
	char file[160];
	struct {
		const char *dir;
		int rc;
		const char *why;
	} bad[] = {
		{ "dev/shm", -EINVAL, "absolute" },
		{ "/dev/shm/t-no-such-dir/x", -ENOENT, "does not exist" },
		{ file, -ENOTDIR, "not a directory" },
		{ open_dir, -EACCES, "sticky" },
		{ "/proc", -EINVAL, "not tmpfs or hugetlbfs" },
		{ sticky, 0, NULL },
	};
	int fd;

	snprintf(file, sizeof(file), "%s/plain", sticky);
	fd = open(file, O_CREAT | O_EXCL | O_RDWR, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct shoal_segment *s = NULL;
			struct shoal_array *a = NULL;
			const char *d = NULL;
			size_t shape[1] = { 10 };
			int rc;

			setenv("SHOAL_DIR", bad[i].dir, 1);
			rc = shoal_dir(&d);
			if (rc != bad[i].rc)
				_exit(1);
			if (!bad[i].rc)
				_exit(d && strcmp(d, bad[i].dir) == 0 ? 0 : 2);
			if (!strstr(shoal_errdetail(rc), bad[i].why) ||
			    !strstr(shoal_errdetail(rc), "SHOAL_DIR"))
				_exit(3);
			if (shoal_segment_create("x", 4096, NULL, &s) != rc || s ||
			    !strstr(shoal_errdetail(rc), bad[i].why))
				_exit(4);
			if (shoal_segment_open("x", 0, &s) != rc || shoal_unlink("x") != rc ||
			    shoal_array_create(NULL, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a) != rc ||
			    shoal_reap() != rc)
				_exit(5);
			{
				struct shoal_queue *q = NULL;

				if (shoal_queue_create("x", 2, 8, NULL, &q) != rc || q ||
				    shoal_queue_unlink("x") != rc || shoal_leaks(0, NULL, 0) != rc)
					_exit(6);
			}
			_exit(0);
		}
		int got = t_wait(pid);

		ck_assert_msg(got == 0, "SHOAL_DIR '%s': child failed with %d", bad[i].dir, got);
	}
	unlink(file);
	rmdir(sticky);
	rmdir(open_dir);
}
END_TEST

/*
 * Objects of another user, in a directory that refuses us: a process of
 * another uid gets -EACCES creating in a directory it may not write,
 * unlinking from it, and opening a queue or an array that is not its
 * user's (shoal_queue_unlink() opens the queue first: -EACCES in either
 * directory); and -EPERM unlinking another user's object from a sticky
 * directory. Needs
 * root (to be the other user: CI runs as root).
 */
START_TEST(another_users_objects)
{
	const char *dirs[2] = { t_dir("mine", 0755), t_dir("shared", 01777) };

	ck_assert_msg(geteuid() == 0, "this test needs root to be another user");
	for (int i = 0; i < 2; i++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			const struct shoal_opts readable = { .mode = 0644 };
			const size_t shape[1] = { 16 };
			struct shoal_segment *s = NULL;
			struct shoal_queue *q = NULL;
			struct shoal_array *a = NULL;
			char h[SHOAL_HANDLE_MAX];
			int rc = i == 0 ? -EACCES : -EPERM;
			pid_t kid;

			setenv("SHOAL_DIR", dirs[i], 1);
			if (shoal_segment_create("s", 4096, &readable, &s) ||
			    shoal_queue_create("q", 2, 8, &readable, &q) ||
			    shoal_array_create("a", SHOAL_DTYPE_UINT8, 0, 1, shape, &readable, &a) ||
			    shoal_array_handle(a, h, sizeof(h)) < 0)
				_exit(10);
			kid = fork();
			if (kid == 0) {
				struct shoal_segment *t = NULL;
				struct shoal_queue *r = NULL;
				struct shoal_array *b = NULL;

				if (setgid(65534) || setuid(65534))
					_exit(20);
				if (i == 0 && (shoal_segment_create("n", 4096, NULL, &t) != -EACCES ||
					       shoal_queue_create("n", 2, 8, NULL, &r) != -EACCES ||
					       shoal_array_create("n", SHOAL_DTYPE_UINT8, 0, 1, shape, NULL,
								  &b) != -EACCES || t || r || b))
					_exit(1);
				if (shoal_unlink("s") != rc)
					_exit(2);
				/* It opens the queue first: refused as another's. */
				if (shoal_queue_unlink("q") != -EACCES)
					_exit(3);
				if (shoal_array_attach(h, 0, &b) != -EACCES || b)
					_exit(4);
				_exit(0);
			}
			rc = t_wait(kid);
			shoal_segment_close(s);
			shoal_queue_detach(q);
			shoal_array_close(a);
			shoal_unlink("s");
			shoal_unlink("q");
			_exit(rc);
		}
		int got = t_wait(pid);

		ck_assert_msg(got == 0, "in %s: step %d failed", dirs[i], got);
		ck_assert_int_eq(rmdir(dirs[i]), 0);
	}
}
END_TEST

/* Mount a @size tmpfs on a fresh directory in a mount namespace of this
 * (child) process's own and point SHOAL_DIR at it: 0, or -1. */
/* Mount a @type file system with @opts on @dir, in a mount namespace of
 * this process's own, and make it SHOAL_DIR. */
static int t_private_mount(const char *dir, const char *type, const char *opts)
{
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount(type, dir, type, 0, opts) != 0)
		return -1;
	return setenv("SHOAL_DIR", dir, 1);
}

static int t_small_tmpfs(const char *dir, const char *size)
{
	char opts[64];

	snprintf(opts, sizeof(opts), "size=%s,mode=0700", size);
	return t_private_mount(dir, "tmpfs", opts);
}

/* A 64 MiB mount, as Docker gives /dev/shm: -ENOSPC whose detail names
 * the object, the size, the directory, its free space and SHOAL_DIR; no
 * file left. Needs root for the mount (CI runs as root). */
START_TEST(enospc_names_the_mount)
{
	const char *dir;
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root to mount a small tmpfs");
	dir = t_dir("small", 0700);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_segment *s = NULL, *t = NULL;
		struct shoal_array *a = NULL;
		size_t shape[1] = { 100u << 20 };
		const char *d;
		int rc;

		if (t_small_tmpfs(dir, "64m") != 0)
			_exit(10);
		rc = shoal_array_create("big", SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a);
		d = shoal_errdetail(rc);
		if (rc != -ENOSPC || a)
			_exit(1);
		if (!strstr(d, "array 'big'") || !strstr(d, "100.0 MiB") || !strstr(d, dir) ||
		    !strstr(d, "free of 64.0 MiB") || !strstr(d, "SHOAL_DIR"))
			_exit(2);
		/* Big (populated) and small (fallocated) objects fill it, then
		 * the next one is refused. */
		if (shoal_segment_create("s40", 40u << 20, NULL, &s) != 0 ||
		    shoal_segment_create("s30", 30u << 20, NULL, &t) != -ENOSPC ||
		    !strstr(shoal_errdetail(-ENOSPC), "segment 's30'"))
			_exit(3);
		shoal_segment_close(s);
		if (shoal_segment_create("s1", 1u << 20, NULL, &t) != 0)
			_exit(4);
		shoal_segment_close(t);
		if (shoal_unlink("s40") || shoal_unlink("s1") || t_count(dir, SHOAL_PREFIX) != 0)
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A hugetlbfs SHOAL_DIR whose huge pages run out (a mount of one page,
 * whatever the system's pool): -ENOSPC whose detail names the hugetlbfs,
 * its page size, the pool and the mount's limit, not a tmpfs's "0 bytes
 * free of 0 bytes"; no file left. Needs root for the mount. */
START_TEST(enospc_names_the_hugetlbfs)
{
	const char *dir;
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root to mount a hugetlbfs");
	dir = t_dir("huge", 0700);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *a = NULL;
		struct statfs sf;
		size_t shape[1];
		const char *d;
		char opts[64];
		int rc;

		/* Its page size first, then a mount of one such page. */
		if (t_private_mount(dir, "hugetlbfs", "mode=0700") != 0 || statfs(dir, &sf) != 0 ||
		    umount(dir) != 0)
			_exit(10);
		snprintf(opts, sizeof(opts), "size=%lu,mode=0700", (unsigned long)sf.f_bsize);
		if (mount("hugetlbfs", dir, "hugetlbfs", 0, opts) != 0)
			_exit(11);
		shape[0] = 3 * (size_t)sf.f_bsize;
		rc = shoal_array_create("big", SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &a);
		d = shoal_errdetail(rc);
		if (rc != -ENOSPC || a)
			_exit(1);
		if (!strstr(d, "array 'big'") || !strstr(d, dir) || !strstr(d, "a hugetlbfs of") ||
		    !strstr(d, "in the system's pool") || !strstr(d, "of its 1 left") ||
		    !strstr(d, "vm.nr_hugepages"))
			_exit(2);
		if (t_count(dir, SHOAL_PREFIX) != 0)
			_exit(3);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* Make the calling process's @nr fail with @err from now on. */
static int t_deny_syscall(long nr, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (unsigned)err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return -1;
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

/* A big object whose populate fails: fallocate reserves it instead (a
 * kernel without MADV_POPULATE_WRITE), or names the error when the mount
 * is full (a mount filled between the look at its free space and the
 * populate: here the look cannot be made). */
START_TEST(populate_falls_back_to_fallocate)
{
	const char *dir;
	pid_t pid;
	int rc;

	ck_assert_msg(geteuid() == 0, "this test needs root to mount a small tmpfs");
	dir = t_dir("fallback", 0700);
	for (int round = 0; round < 2; round++) {
		pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			struct shoal_segment *s = NULL;
			const char *d;
			unsigned char *p;
			int err;

			if (t_small_tmpfs(dir, "64m") != 0 || shoal_dir(&d) != 0)
				_exit(10);
			if (round == 0) {
				if (t_deny_syscall(__NR_madvise, EINVAL) != 0)
					_exit(11);
				if (shoal_segment_create("big", 48u << 20, NULL, &s) != 0)
					_exit(1);
				p = shoal_segment_data(s);
				for (size_t i = 0; i < (48u << 20); i += 4096)
					if (p[i])
						_exit(2);
				memset(p, 1, 48u << 20);
				shoal_segment_close(s);
				_exit(shoal_unlink("big") ? 3 : 0);
			}
			if (t_deny_syscall(__NR_statfs, ENOSYS) != 0)
				_exit(11);
			err = shoal_segment_create("big", 100u << 20, NULL, &s);
			if (err != -ENOSPC || s || !strstr(shoal_errdetail(err), dir) ||
			    !strstr(shoal_errdetail(err), "SHOAL_DIR"))
				_exit(4);
			_exit(t_count(dir, SHOAL_PREFIX) ? 5 : 0);
		}
		rc = t_wait(pid);
		ck_assert_msg(rc == 0, "round %d: child failed with %d", round, rc);
	}
	ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A big object is populated at create: every page is there before the
 * first write, without SHOAL_PREFAULT; a small one is not. */
START_TEST(big_objects_are_populated)
{
	const char *name = t_name("pop"), *small = t_name("nopop");
	size_t len = 64u << 20, pages = len / 4096, in = 0;
	struct shoal_segment *s = NULL, *t = NULL;
	unsigned char *vec = malloc(pages);

	ck_assert_ptr_nonnull(vec);
	ck_assert_int_eq(shoal_segment_create(name, len, NULL, &s), 0);
	ck_assert_int_eq(mincore(shoal_segment_data(s), len, vec), 0);
	for (size_t i = 0; i < pages; i++)
		in += vec[i] & 1;
	ck_assert_uint_eq(in, pages);
	for (size_t i = 0; i < len; i += 4096)
		ck_assert_int_eq(((unsigned char *)shoal_segment_data(s))[i], 0);
	ck_assert_int_eq(shoal_segment_create(small, 16 * 4096, NULL, &t), 0);
	ck_assert_int_eq(mincore(shoal_segment_data(t), 16 * 4096, vec), 0);
	in = 0;
	for (size_t i = 0; i < 16; i++)
		in += vec[i] & 1;
	ck_assert_uint_eq(in, 0);
	shoal_segment_close(t);
	shoal_segment_close(s);
	shoal_unlink(small);
	shoal_unlink(name);
	free(vec);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("segment");
	TCase *tc = tcase_create("segment");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, create_open_roundtrip);
	tcase_add_test(tc, no_temp_left_and_prefix);
	tcase_add_test(tc, bad_names);
	tcase_add_test(tc, bad_sizes_and_args);
	tcase_add_test(tc, exists_and_missing);
	tcase_add_test(tc, create_race_one_winner);
	tcase_add_test(tc, mode_default_and_umask);
	tcase_add_test(tc, refuse_writable_by_others);
	tcase_add_test(tc, refuse_other_owner);
	tcase_add_test(tc, hostile_headers);
	tcase_add_test(tc, random_bytes_never_crash);
	tcase_add_test(tc, not_regular_files);
	tcase_add_test(tc, create_does_not_follow_or_clobber);
	tcase_add_test(tc, enospc_at_create);
	tcase_add_test(tc, forked_child_sees_writes);
	tcase_add_test(tc, exec_process_sees_writes);
	tcase_add_test(tc, readonly_open_cannot_write);
	tcase_add_test(tc, prefault_maps_pages_in);
	tcase_add_test(tc, strerror_and_version);
	tcase_add_test(tc, errdetail_names_the_rule);
	tcase_add_test(tc, errdetail_names_the_object);
	tcase_add_test(tc, errdetail_says_which_check_failed);
	tcase_add_test(tc, errdetail_queue_and_array);
	tcase_add_test(tc, errdetail_is_per_thread);
	tcase_add_test(tc, out_of_memory_and_fds);
	suite_add_tcase(s, tc);

	tc = tcase_create("dir");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, dir_default_is_dev_shm);
	tcase_add_test(tc, dir_objects_live_there);
	tcase_add_test(tc, dir_refused);
	tcase_add_test(tc, another_users_objects);
	tcase_add_test(tc, enospc_names_the_mount);
	tcase_add_test(tc, enospc_names_the_hugetlbfs);
	tcase_add_test(tc, populate_falls_back_to_fallocate);
	tcase_add_test(tc, big_objects_are_populated);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(suite());
}
