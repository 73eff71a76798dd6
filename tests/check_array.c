/*
 * check_array.c - shared arrays: creation rules, handles and generations,
 * the reference ledger across processes, hostile objects, processes killed
 * while holding references or inside the ledger's critical section, and
 * memory really going back to the system.
 */
#include "array.h"
#include "testutil.h"

#include <sys/mman.h>

static const size_t shape34[] = { 3, 4 };

static struct shoal_array *make(const char *name, int dtype, int ndim, const size_t *shape)
{
	struct shoal_array *a = NULL;

	ck_assert_int_eq(shoal_array_create(name, dtype, 0, ndim, shape, NULL, &a), 0);
	ck_assert_ptr_nonnull(a);
	return a;
}

static const char *handle_of(const struct shoal_array *a)
{
	static char buf[4][SHOAL_HANDLE_MAX];
	static unsigned n;
	char *b = buf[n++ % 4];

	ck_assert_int_gt(shoal_array_handle(a, b, SHOAL_HANDLE_MAX), 0);
	return b;
}

static bool exists(const char *name)
{
	return access(t_path(name), F_OK) == 0;
}

START_TEST(create_attach_release)
{
	const char *name = t_name("rt");
	struct shoal_array *a = make(name, SHOAL_DTYPE_FLOAT64, 2, shape34), *b = NULL;
	const char *h = handle_of(a);
	double *d = shoal_array_data(a);
	char small[8];

	ck_assert_uint_eq((uintptr_t)d % 4096, 0);
	ck_assert_int_eq(shoal_array_dtype(a), SHOAL_DTYPE_FLOAT64);
	ck_assert_uint_eq(shoal_array_itemsize(a), 8);
	ck_assert_int_eq(shoal_array_ndim(a), 2);
	ck_assert_uint_eq(shoal_array_shape(a)[0], 3);
	ck_assert_uint_eq(shoal_array_shape(a)[1], 4);
	ck_assert_int_eq(shoal_array_strides(a)[0], 32);
	ck_assert_int_eq(shoal_array_strides(a)[1], 8);
	ck_assert_uint_eq(shoal_array_nbytes(a), 96);
	ck_assert_str_eq(shoal_array_name(a), name);
	ck_assert(!shoal_array_is_readonly(a));
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_uint_eq(shoal_array_refs(a), 1);
	ck_assert(strncmp(h, "shoal:array:", 12) == 0);
	ck_assert_int_eq(shoal_array_handle(a, small, sizeof(small)), -ERANGE);
	ck_assert_int_eq(shoal_array_handle(NULL, small, sizeof(small)), -EINVAL);
	for (int i = 0; i < 12; i++)
		ck_assert(d[i] == 0.0);
	d[11] = 2.5;

	ck_assert_int_eq(shoal_array_attach(h, 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert(((double *)shoal_array_data(b))[11] == 2.5);
	((double *)shoal_array_data(b))[0] = -1;
	ck_assert(d[0] == -1);
	ck_assert_str_eq(handle_of(b), h);

	ck_assert_int_eq(shoal_array_retain(b), 0);
	ck_assert_uint_eq(shoal_array_refs(b), 2);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	/* One process, one ledger line, whatever the structs. */
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), 1);
	ck_assert_int_eq(shoal_array_release(b), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert(exists(name));
	/* The last release frees: the name goes, the mapping stays readable. */
	ck_assert_int_eq(shoal_array_release(a), 1);
	ck_assert(!exists(name));
	ck_assert(shoal_array_is_freed(a));
	ck_assert(d[11] == 2.5);
	ck_assert_int_eq(shoal_array_close(a), 0);
}
END_TEST

START_TEST(every_dtype)
{
	static const size_t sizes[] = { 0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 4, 8, 8, 16, 0 };
	size_t shape[] = { 5 };

	for (int t = SHOAL_DTYPE_BOOL; t <= SHOAL_DTYPE_RAW; t++) {
		struct shoal_array *a = NULL, *b = NULL;
		size_t item = t == SHOAL_DTYPE_RAW ? 24 : 0;

		ck_assert_uint_eq(shoal_dtype_itemsize(t), sizes[t]);
		ck_assert_str_ne(shoal_dtype_name(t), "?");
		ck_assert_int_eq(shoal_array_create(NULL, t, item, 1, shape, NULL, &a), 0);
		ck_assert_uint_eq(shoal_array_itemsize(a), t == SHOAL_DTYPE_RAW ? 24 : sizes[t]);
		ck_assert_uint_eq(shoal_array_nbytes(a), 5 * shoal_array_itemsize(a));
		memset(shoal_array_data(a), t, shoal_array_nbytes(a));
		ck_assert_int_eq(shoal_array_attach(handle_of(a), SHOAL_RDONLY, &b), 0);
		ck_assert_int_eq(shoal_array_dtype(b), t);
		ck_assert_int_eq(memcmp(shoal_array_data(a), shoal_array_data(b), shoal_array_nbytes(a)), 0);
		ck_assert_int_eq(shoal_array_close(b), 0);
		ck_assert_int_eq(shoal_array_close(a), 1);
	}
	ck_assert_uint_eq(shoal_dtype_itemsize(0), 0);
	ck_assert_uint_eq(shoal_dtype_itemsize(99), 0);
	ck_assert_str_eq(shoal_dtype_name(-3), "?");
}
END_TEST

START_TEST(anonymous_names_are_short_and_unique)
{
	struct shoal_array *a[16];
	size_t one[] = { 1 };

	for (int i = 0; i < 16; i++) {
		ck_assert_int_eq(shoal_array_create(NULL, SHOAL_DTYPE_UINT8, 0, 1, one, NULL, &a[i]), 0);
		ck_assert_int_le(strlen(handle_of(a[i])), 64);
		for (int j = 0; j < i; j++)
			ck_assert_str_ne(shoal_array_name(a[i]), shoal_array_name(a[j]));
	}
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(shoal_array_close(a[i]), 1);
}
END_TEST

START_TEST(create_errors)
{
	const char *name = t_name("err");
	struct shoal_array *a = NULL;
	size_t big[] = { (size_t)1 << 40, (size_t)1 << 40 };
	size_t wide[] = { 0, (size_t)1 << 62, (size_t)1 << 62 };
	size_t huge[] = { (size_t)1 << 42 };
	size_t neg[] = { SIZE_MAX };
	size_t shape[SHOAL_ARRAY_MAXDIM + 1];

	for (int i = 0; i <= SHOAL_ARRAY_MAXDIM; i++)
		shape[i] = 1;
	ck_assert_int_eq(shoal_array_create(name, 0, 0, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, 15, 0, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, -1, 0, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT32, 8, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_RAW, 0, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_RAW, (size_t)1 << 31, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 0, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, -1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, SHOAL_ARRAY_MAXDIM + 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 1, NULL, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 1, shape, NULL, NULL), -EINVAL);
	ck_assert_int_eq(shoal_array_create("a/b", SHOAL_DTYPE_INT8, 0, 1, shape, NULL, &a), -EINVAL);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_FLOAT64, 0, 2, big, NULL, &a), -EOVERFLOW);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 3, wide, NULL, &a), -EOVERFLOW);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 1, neg, NULL, &a), -EOVERFLOW);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 1, huge, NULL, &a), -ENOSPC);
	ck_assert_ptr_null(a);
	ck_assert(!exists(name));

	/* The most dimensions there may be, and an empty array. */
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, SHOAL_ARRAY_MAXDIM, shape, NULL, &a), 0);
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT8, 0, 1, shape, NULL, &a), -EEXIST);
	ck_assert_int_eq(shoal_array_close(a), 1);
	shape[0] = 0;
	ck_assert_int_eq(shoal_array_create(name, SHOAL_DTYPE_INT16, 0, 2, shape, NULL, &a), 0);
	ck_assert_uint_eq(shoal_array_nbytes(a), 0);
	ck_assert_int_eq(shoal_array_strides(a)[0], 2);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

START_TEST(bad_handles)
{
	const char *name = t_name("h");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT32, 2, shape34), *b = NULL;
	struct shoal_segment *s;
	char h[SHOAL_HANDLE_MAX], other[SHOAL_HANDLE_MAX];
	const char *bad[] = {
		"", "shoal:array:", "shoal:array:@0123456789abcdef", "shoal:array:x", "shoal:array:x@",
		"shoal:array:x@0123", "shoal:array:x@0123456789abcdeg", "shoal:array:x@0123456789ABCDEF",
		"shoal:array:x@0000000000000000", "shoal:array:x@0123456789abcdef0", "shoal:arr:x@0123456789abcdef",
		"x@0123456789abcdef", "shoal:array:a/b@0123456789abcdef", "shoal:array:..@0123456789abcdef",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(shoal_array_attach(bad[i], 0, &b) == -EINVAL, "%s", bad[i]);
	ck_assert_int_eq(shoal_array_attach(NULL, 0, &b), -EINVAL);
	snprintf(h, sizeof(h), "%s", handle_of(a));
	ck_assert_int_eq(shoal_array_attach(h, 0, NULL), -EINVAL);
	ck_assert_int_eq(shoal_array_attach(h, 0x80, &b), -EINVAL);
	ck_assert_int_eq(shoal_array_attach(h, SHOAL_ARRAY_NOREF, &b), -EINVAL);
	/* Right name, wrong generation. */
	snprintf(other, sizeof(other), "%s", h);
	other[strlen(other) - 1] = other[strlen(other) - 1] == '0' ? '1' : '0';
	ck_assert_int_eq(shoal_array_attach(other, 0, &b), -ENOENT);
	snprintf(other, sizeof(other), SHOAL_HANDLE_PREFIX "%s@0123456789abcdef", t_name("none"));
	ck_assert_int_eq(shoal_array_attach(other, 0, &b), -ENOENT);
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);

	/* A handle naming an object of another kind. */
	name = t_name("seg");
	ck_assert_int_eq(shoal_segment_create(name, 64, NULL, &s), 0);
	snprintf(other, sizeof(other), SHOAL_HANDLE_PREFIX "%s@%016llx", name,
		 (unsigned long long)s->hdr.generation);
	ck_assert_int_eq(shoal_array_attach(other, 0, &b), -EPROTOTYPE);
	ck_assert_int_eq(shoal_array_open(name, 0, &b), -EPROTOTYPE);
	shoal_segment_close(s);
	shoal_unlink(name);
}
END_TEST

/* A recycled name with a new generation does not answer an old handle. */
START_TEST(recycled_name_is_refused)
{
	const char *name = t_name("rec");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	char old[SHOAL_HANDLE_MAX];

	snprintf(old, sizeof(old), "%s", handle_of(a));
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert_int_eq(shoal_array_attach(old, 0, &b), -ENOENT);
	ck_assert_int_eq(shoal_array_open(name, 0, &b), -ENOENT);
	a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	ck_assert_str_ne(handle_of(a), old);
	ck_assert_int_eq(shoal_array_attach(old, 0, &b), -ENOENT);
	ck_assert_ptr_null(b);
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
}
END_TEST

/* A freed array whose name is still there (its freer has not unlinked yet)
 * cannot be attached: nobody resurrects it. */
START_TEST(attach_after_free)
{
	const char *name = t_name("aaf");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL, *c = NULL;
	char h[SHOAL_HANDLE_MAX];

	snprintf(h, sizeof(h), "%s", handle_of(a));
	ck_assert_int_eq(shoal_array_open(name, 0, &b), 0);
	ck_assert_int_eq(shoal_array_release(a), 0);
	/* Simulate "freed, not yet unlinked": mark it as the last release does. */
	ck_assert_int_eq(shoal_array_release(b), 1);
	ck_assert(!exists(name));
	ck_assert_int_eq(shoal_array_retain(a), -ENOENT);
	ck_assert_int_eq(shoal_array_retain(b), -ENOENT);
	ck_assert_int_eq(shoal_array_attach(h, 0, &c), -ENOENT);
	ck_assert_int_eq(shoal__array_hold(a, SHOAL__HOLDER_PIN_KEY), -ENOENT);
	ck_assert_uint_eq(shoal_array_refcount(a), 0);
	shoal_array_close(a);
	shoal_array_close(b);
}
END_TEST

START_TEST(double_release)
{
	const char *name = t_name("dr");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL, *n = NULL;

	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_int_eq(shoal_array_release(b), 0);
	ck_assert_int_eq(shoal_array_release(b), -EINVAL);
	ck_assert_int_eq(shoal_array_release(b), -EINVAL);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_release(NULL), -EINVAL);
	ck_assert_int_eq(shoal_array_retain(NULL), -EINVAL);
	/* A holder with no line cannot drop anything. */
	ck_assert_int_eq(shoal__array_unhold(a, shoal__holder_queue(12345)), -ENOENT);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	/* An inspection holds nothing and can take nothing. */
	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &n), 0);
	ck_assert(shoal_array_is_readonly(n));
	ck_assert_uint_eq(shoal_array_refcount(n), 1);
	ck_assert_int_eq(shoal_array_release(n), -EINVAL);
	ck_assert_int_eq(shoal_array_retain(n), -EINVAL);
	ck_assert_int_eq(shoal_array_close(n), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert(exists(name));
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert_int_eq(shoal_array_close(NULL), 0);
}
END_TEST

START_TEST(readonly_attach_cannot_write)
{
	const char *name = t_name("ro");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT64, 2, shape34), *b = NULL;
	pid_t pid;

	((int64_t *)shoal_array_data(a))[3] = 42;
	ck_assert_int_eq(shoal_array_attach(handle_of(a), SHOAL_RDONLY | SHOAL_PREFAULT, &b), 0);
	ck_assert(shoal_array_is_readonly(b));
	ck_assert_int_eq(((int64_t *)shoal_array_data(b))[3], 42);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would exit(1) */
		((volatile int64_t *)shoal_array_data(b))[3] = 7;
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGSEGV);
	ck_assert_int_eq(((int64_t *)shoal_array_data(a))[3], 42);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
}
END_TEST

/* ---- hostile objects ---------------------------------------------------- */

/* The bytes of a real array object, to corrupt. */
static size_t real_object(unsigned char **out)
{
	const char *name = t_name("tmpl");
	struct shoal_array *a = make(name, SHOAL_DTYPE_FLOAT32, 2, shape34);
	int fd = open(t_path(name), O_RDONLY);
	struct stat st;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &st), 0);
	*out = malloc((size_t)st.st_size);
	ck_assert_int_eq(read(fd, *out, (size_t)st.st_size), st.st_size);
	close(fd);
	ck_assert_int_eq(shoal_array_close(a), 1);
	return (size_t)st.st_size;
}

static int open_planted(const unsigned char *buf, size_t len)
{
	const char *name = t_name("bad");
	struct shoal_array *a = NULL;
	struct shoal__hdr h;
	char handle[SHOAL_HANDLE_MAX];
	int rc, rc2;

	t_plant(name, buf, len, 0600);
	rc = shoal_array_open(name, 0, &a);
	if (rc == 0)
		shoal_array_close(a);
	memcpy(&h, buf, sizeof(h));
	snprintf(handle, sizeof(handle), SHOAL_HANDLE_PREFIX "%s@%016llx", name,
		 (unsigned long long)(h.generation ? h.generation : 1));
	rc2 = shoal_array_attach(handle, 0, &a);
	if (rc2 == 0)
		shoal_array_close(a);
	ck_assert_int_eq(rc, rc2);
	shoal_unlink(name);
	return rc;
}

#define KH(buf) ((struct shoal__array_hdr *)((buf) + SHOAL__HDR_SIZE))

START_TEST(corrupt_headers)
{
	unsigned char *good, *b;
	size_t len = real_object(&good);

	b = malloc(len);
#define FRESH() memcpy(b, good, len)
	FRESH();
	ck_assert_int_eq(open_planted(b, len), 0);
	FRESH(); KH(b)->dtype = 0;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->dtype = 99;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->itemsize = 8;                       /* float32 is 4 */
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ndim = 0;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ndim = SHOAL_ARRAY_MAXDIM + 1;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ndim = UINT32_MAX;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->layout = SHOAL__ARRAY_LAYOUT + 1;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	/* The first layout (a glibc mutex for a lock): refused, never locked. */
	FRESH(); KH(b)->layout = 0;
	ck_assert_int_eq(open_planted(b, len), -EPROTO);
	/* Shapes that lie about the size. */
	FRESH(); KH(b)->shape[0] = 1000; KH(b)->nbytes = 16000; KH(b)->strides[0] = 16;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* more than the data */
	FRESH(); KH(b)->shape[0] = 4;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* product != nbytes */
	FRESH(); KH(b)->nbytes = 4;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->shape[0] = (uint64_t)1 << 62; KH(b)->shape[1] = 1 << 4;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* overflows */
	FRESH(); KH(b)->shape[0] = UINT64_MAX;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->strides[1] = 8;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* not C order */
	FRESH(); KH(b)->strides[0] = -16;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ledger_cap = 0;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ledger_cap = 100000;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* past the kind header */
	FRESH(); ((struct shoal__hdr *)b)->kind_size = 64;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* too small a kind header */
	FRESH(); ((struct shoal__hdr *)b)->data_size = 4;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* data smaller than nbytes */
	/* Lock bytes that name no process: the lock is taken over. */
	FRESH(); memset(&KH(b)->lock, 0xff, sizeof(KH(b)->lock));
	ck_assert_int_eq(open_planted(b, len), 0);
	/* Layout 1 had no overflow ledger: its processes would not see it. */
	FRESH(); KH(b)->layout = 1;
	ck_assert_int_eq(open_planted(b, len), -EPROTO);
	/* Layout 2 swept a full ledger under the lock. */
	FRESH(); KH(b)->layout = 2;
	ck_assert_int_eq(open_planted(b, len), -EPROTO);
	/* The overflow ledger: whole pages past the data, inside the file. */
	ck_assert_uint_eq(KH(b)->ovf_cap, SHOAL__ARRAY_OVF_CAP);
	ck_assert_uint_eq(KH(b)->ovf_off, 2 * SHOAL__DATA_ALIGN);
	ck_assert_uint_eq(len, KH(b)->ovf_off + SHOAL__ARRAY_OVF_BYTES);
	FRESH(); KH(b)->ovf_off = SHOAL__DATA_ALIGN;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* over the data */
	FRESH(); KH(b)->ovf_off = 0;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* over the headers */
	FRESH(); KH(b)->ovf_off += 16;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* not page aligned */
	FRESH(); KH(b)->ovf_off += SHOAL__DATA_ALIGN;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* ends past the file */
	FRESH(); KH(b)->ovf_off = UINT64_MAX & ~(uint64_t)(SHOAL__DATA_ALIGN - 1);
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* off + len overflows */
	FRESH(); KH(b)->ovf_cap = (uint32_t)(SHOAL__ARRAY_OVF_BYTES / 16 + 1);
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);   /* past the file */
	FRESH(); KH(b)->ovf_cap = UINT32_MAX;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	FRESH(); KH(b)->ovf_cap = SHOAL__OVF_CAP_MAX + 1;
	ck_assert_int_eq(open_planted(b, len), -EBADMSG);
	/* No overflow at all is a valid array (its offset is then unused). */
	FRESH(); KH(b)->ovf_cap = 0; KH(b)->ovf_off = UINT64_MAX;
	ck_assert_int_eq(open_planted(b, len), 0);
	/* Marks are hints: past the caps they are clamped, never followed. */
	FRESH(); atomic_store(&KH(b)->ovf_used, UINT32_MAX);
	ck_assert_int_eq(open_planted(b, len), 0);
	FRESH(); atomic_store(&KH(b)->used, UINT32_MAX); atomic_store(&KH(b)->ovf_used, 7);
	ck_assert_int_eq(open_planted(b, len), 0);
	FRESH(); atomic_store(&KH(b)->sweep_next, UINT32_MAX);
	ck_assert_int_eq(open_planted(b, len), 0);
	free(b);
	free(good);
#undef FRESH
}
END_TEST

START_TEST(random_kind_headers_never_crash)
{
	unsigned char *good, *b;
	size_t len = real_object(&good);
	unsigned int seed = (unsigned int)getpid();

	b = malloc(len);
	for (int i = 0; i < 300; i++) {
		int rc;

		memcpy(b, good, len);
		/* Scribble over the immutable part of the kind header. */
		for (int j = 0; j < 1 + i % 8; j++) {
			size_t off = SHOAL__HDR_SIZE + (size_t)rand_r(&seed) % offsetof(struct shoal__array_hdr, lock);

			b[off] = (unsigned char)rand_r(&seed);
		}
		rc = open_planted(b, len);
		/* -EPROTO: the layout word became 0, the first layout's. */
		ck_assert_msg(rc == 0 || rc == -EBADMSG || rc == -EPROTO, "rc %d", rc);
	}
	free(b);
	free(good);
}
END_TEST

/* ---- across processes ---------------------------------------------------- */

/* A forked child inherits the mapping, not the references. */
START_TEST(fork_inherits_no_reference)
{
	const char *name = t_name("fork");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT32, 2, shape34);
	pid_t pid;

	pid = fork();
	if (pid == 0) {
		int ok = shoal_array_refs(a) == 0 && shoal_array_release(a) == -EINVAL &&
			 shoal_array_refcount(a) == 1 && shoal_array_retain(a) == 0 &&
			 shoal_array_refcount(a) == 2 && shoal_array_refs(a) == 1 &&
			 shoal_array_holders(a, NULL, 0) == 2;

		((int32_t *)shoal_array_data(a))[0] = 9;
		ok = ok && shoal_array_close(a) == 0;
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(((int32_t *)shoal_array_data(a))[0], 9);

	/* Closing an inherited struct without retaining leaves ours alone. */
	pid = fork();
	if (pid == 0)
		_exit(shoal_array_close(a) == 0 ? 0 : 1);
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
}
END_TEST

/* A worker SIGKILLed while holding references: reap takes them back; the
 * array is freed at its last release, not before. */
START_TEST(killed_holder_is_reaped)
{
	const char *name = t_name("kill");
	struct shoal_array *a = make(name, SHOAL_DTYPE_FLOAT64, 2, shape34);
	struct shoal_array_holder hs[4];
	const char *h = handle_of(a);
	int fds[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_attach(h, 0, &b) || shoal_array_retain(b) || shoal_array_retain(b))
			_exit(1);
		ck_assert_int_eq(write(fds[1], "x", 1), 1);
		pause();
		_exit(2);
	}
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	ck_assert_uint_eq(shoal_array_refcount(a), 4);
	ck_assert_int_eq(shoal_array_holders(a, hs, 4), 2);
	ck_assert(hs[0].alive && hs[1].alive);
	kill(pid, SIGKILL);
	/* Not waited for yet: a zombie is dead too. */
	usleep(50000);
	ck_assert_int_eq(shoal_array_holders(a, hs, 4), 2);
	ck_assert(hs[0].pid == pid ? !hs[0].alive : !hs[1].alive);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_holders(a, hs, 4), 1);
	ck_assert_int_eq(hs[0].pid, getpid());
	ck_assert(exists(name));
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_eq(shoal_array_release(a), 1);
	ck_assert(!exists(name));
	shoal_array_close(a);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* The last live holder's release frees the array although a killed
 * process still has a line: releasing sweeps the dead out first. */
START_TEST(last_live_release_sweeps_the_dead)
{
	const char *name = t_name("sweep");
	struct shoal_array *a = make(name, SHOAL_DTYPE_FLOAT64, 2, shape34);
	const char *h = handle_of(a);
	pid_t pid = fork();

	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_attach(h, 0, &b) || shoal_array_retain(b))
			_exit(1);
		raise(SIGKILL);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	ck_assert_int_eq(shoal_array_release(a), 1);
	ck_assert(!exists(name));
	ck_assert_uint_eq(shoal_array_refcount(a), 0);
	shoal_array_close(a);
}
END_TEST

/* A holder whose liveness cannot be read (/proc unreadable: out of file
 * descriptors) is taken for alive, and nothing is freed under it. */
START_TEST(unreadable_proc_is_not_death)
{
	const char *name = t_name("emfile");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const char *h = handle_of(a);
	pid_t pid = fork();

	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_attach(h, 0, &b))
			_exit(1);
		struct shoal_array_holder hs[2];

		while (open("/dev/null", O_RDONLY) >= 0)
			;
		if (errno != EMFILE)
			_exit(2);
		/* Liveness as the reaper judges it, with /proc unreadable. */
		if (shoal_array_holders(b, hs, 2) != 2 || !hs[0].alive || !hs[1].alive)
			_exit(4);
		_exit(shoal_array_close(b) == 0 ? 0 : 3);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert(exists(name));
	ck_assert_int_eq(shoal_array_close(a), 1);
}
END_TEST

/* Everyone who held it died: reap frees it. */
START_TEST(all_holders_dead_reap_frees)
{
	const char *name = t_name("orphan");
	pid_t pid = fork();
	struct shoal_array *n;
	int freed;

	if (pid == 0) {
		struct shoal_array *a;

		if (shoal_array_create(name, SHOAL_DTYPE_UINT8, 0, 2, shape34, NULL, &a))
			_exit(1);
		raise(SIGKILL);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert(exists(name));
	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &n), 0);
	ck_assert_uint_eq(shoal_array_refcount(n), 1);
	freed = shoal_reap();
	ck_assert_int_ge(freed, 1);
	ck_assert(!exists(name));
	ck_assert(shoal_array_is_freed(n));
	ck_assert_uint_eq(shoal_array_refcount(n), 0);
	shoal_array_close(n);
}
END_TEST

/* The creator's temporary file of a create that died midway. */
START_TEST(reap_removes_dead_creators_temp_files)
{
	char dead[64], live[64];
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(t_wait(pid), 0);
	snprintf(dead, sizeof(dead), SHOAL_PREFIX ".tmp.%d.00000000deadbeef", (int)pid);
	snprintf(live, sizeof(live), SHOAL_PREFIX ".tmp.%d.00000000cafecafe", (int)getpid());
	ck_assert_int_eq(close(open(t_path(dead + strlen(SHOAL_PREFIX)), O_CREAT | O_WRONLY, 0600)), 0);
	ck_assert_int_eq(close(open(t_path(live + strlen(SHOAL_PREFIX)), O_CREAT | O_WRONLY, 0600)), 0);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert(!exists(dead + strlen(SHOAL_PREFIX)));
	ck_assert(exists(live + strlen(SHOAL_PREFIX)));
	unlink(t_path(live + strlen(SHOAL_PREFIX)));
}
END_TEST

/*
 * The reaper finds a file's kind in its common header and hands it to that
 * kind's reap function (lib/reap.c's table). Segments left by a dead
 * creator, with the kind word rewritten: a kind no table entry has (0, past
 * the last, any garbage) is skipped, not indexed; segment and queue kinds
 * have nothing to reap; a segment posing as an array is refused by the
 * array's own open; one posing as a pool board of a dead supervisor goes,
 * as any such board.
 */
START_TEST(reap_dispatches_by_kind)
{
	static const uint32_t kinds[] = { 0, 1, 2, 3, 4, 5, 0x80000000u, UINT32_MAX };
	const char *names[8];
	pid_t pid;

	for (int i = 0; i < 8; i++)
		names[i] = t_name("kind");
	pid = fork();
	if (pid == 0) {
		for (int i = 0; i < 8; i++) {
			struct shoal_segment *s;

			if (shoal_segment_create(names[i], 4096, NULL, &s) != 0)
				_exit(1);
			shoal_segment_close(s);
		}
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	for (int i = 0; i < 8; i++) {
		int fd = open(t_path(names[i]), O_RDWR | O_CLOEXEC);

		ck_assert_int_ge(fd, 0);
		ck_assert_int_eq(pwrite(fd, &kinds[i], sizeof(kinds[i]),
					offsetof(struct shoal__hdr, kind)), (ssize_t)sizeof(kinds[i]));
		close(fd);
	}
	ck_assert_int_ge(shoal_reap(), 1);
	for (int i = 0; i < 8; i++)
		ck_assert_msg(exists(names[i]) == (kinds[i] != SHOAL__KIND_POOL),
			      "kind %u: %s", kinds[i], exists(names[i]) ? "kept" : "reaped");
	for (int i = 0; i < 8; i++)
		unlink(t_path(names[i]));
}
END_TEST

/* ---- dying inside the critical section ------------------------------------ */

static int kill_at;

static void kill_hook(int point)
{
	if (point == kill_at)
		raise(SIGKILL);
}

/* A child attaches and is killed at @point inside the ledger update. The
 * ledger stays consistent and usable: the parent's count is right, the lock
 * is recovered, and reap leaves exactly the parent's reference. */
static void die_in_attach(int point)
{
	const char *name = t_name("die_att");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	const char *h = handle_of(a);
	pid_t pid = fork();

	if (pid == 0) {
		kill_at = point;
		shoal__array_hook = kill_hook;
		shoal_array_attach(h, 0, &b);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	/* Either it counted (1 + 1) or not (1); never anything else. */
	ck_assert_uint_le(shoal_array_refcount(a), 2);
	ck_assert_uint_ge(shoal_array_refcount(a), 1);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_retain(a), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_int_eq(shoal_array_attach(h, 0, &b), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}

/* The child holds the last reference and is killed at @point inside the
 * release that frees. The array ends freed and unlinked exactly once: by
 * the next locker (EOWNERDEAD) or by reap (a dead freer's unlink). */
static void die_in_last_release(int point)
{
	const char *name = t_name("die_rel");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const char *h = handle_of(a);
	int up[2], down[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	pid = fork();
	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_attach(h, 0, &b))
			_exit(1);
		ck_assert_int_eq(write(up[1], "x", 1), 1);
		ck_assert_int_eq(read(down[0], &c, 1), 1);
		kill_at = point;
		shoal__array_hook = kill_hook;
		shoal_array_release(b);
		_exit(0);
	}
	ck_assert_int_eq(read(up[0], &c, 1), 1);
	ck_assert_int_eq(shoal_array_release(a), 0); /* the child's is the last */
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(write(down[1], "x", 1), 1);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert(!exists(name));
	ck_assert(shoal_array_is_freed(a));
	ck_assert_uint_eq(shoal_array_refcount(a), 0);
	ck_assert_int_eq(shoal_array_retain(a), -ENOENT);
	ck_assert_int_ge(shoal_reap(), 0); /* nothing freed twice: */
	ck_assert(!exists(name));
	shoal_array_close(a);
	for (int i = 0; i < 2; i++) {
		close(up[i]);
		close(down[i]);
	}
}

/* The child already holds one and is killed inside a retain: its line
 * reads 1 or 2, never anything else, and reap drops it whole. */
static void die_in_retain(int point)
{
	const char *name = t_name("die_ret");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const char *h = handle_of(a);
	pid_t pid = fork();

	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_attach(h, 0, &b))
			_exit(1);
		kill_at = point;
		shoal__array_hook = kill_hook;
		shoal_array_retain(b);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_uint_ge(shoal_array_refcount(a), 2);
	ck_assert_uint_le(shoal_array_refcount(a), 3);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), 2);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}

START_TEST(killed_inside_retain)
{
	die_in_retain(SHOAL__HOOK_LOCKED);
	die_in_retain(SHOAL__HOOK_COUNT_WRITTEN);
	die_in_retain(SHOAL__HOOK_UNLOCKED);
}
END_TEST

START_TEST(killed_inside_attach)
{
	die_in_attach(SHOAL__HOOK_LOCKED);
	die_in_attach(SHOAL__HOOK_KEY_WRITTEN);
	die_in_attach(SHOAL__HOOK_COUNT_WRITTEN);
	die_in_attach(SHOAL__HOOK_UNLOCKED);
}
END_TEST

static const int release_points[] = { SHOAL__HOOK_LOCKED, SHOAL__HOOK_COUNT_WRITTEN,
				      SHOAL__HOOK_FREED, SHOAL__HOOK_UNLOCKED };

START_TEST(killed_inside_release)
{
	die_in_last_release(release_points[_i]);
}
END_TEST

/* After a death inside the lock, the next locker (not reap) repairs: a
 * total of zero left by the dead is freed by whoever locks next. */
START_TEST(next_locker_repairs)
{
	const char *name = t_name("repair");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *n = NULL;
	pid_t pid;

	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &n), 0);
	pid = fork();
	if (pid == 0) {
		/* The child releases the parent's reference (as if it were the
		 * parent, after fork) and dies with the count committed. */
		a->fork_gen = atomic_load(&shoal__fork_gen);
		kill_at = SHOAL__HOOK_COUNT_WRITTEN;
		shoal__array_hook = kill_hook;
		shoal_array_release(a);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_uint_eq(shoal_array_refcount(n), 0);
	ck_assert(!shoal_array_is_freed(n));
	/* Our struct still thinks it holds one; the ledger says nobody does.
	 * The next locker finds EOWNERDEAD, frees and unlinks. */
	ck_assert_int_eq(shoal_array_retain(a), -ENOENT);
	ck_assert(shoal_array_is_freed(n));
	ck_assert(!exists(name));
	shoal_array_close(n);
	shoal_array_close(a);
}
END_TEST

/* Many processes attach and release at once while some are killed; in the
 * end the books balance exactly. */
START_TEST(concurrent_holders_some_killed)
{
	const char *name = t_name("many");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const char *h = handle_of(a);
	pid_t kids[8];

	for (int i = 0; i < 8; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			for (int j = 0; j < 300; j++) {
				struct shoal_array *b;

				if (shoal_array_attach(h, j % 2 ? SHOAL_RDONLY : 0, &b))
					_exit(1);
				if (j % 3 == 0 && shoal_array_retain(b))
					_exit(2);
				if (shoal_array_close(b) != 0)
					_exit(3);
			}
			_exit(0);
		}
	}
	usleep(20000);
	kill(kids[0], SIGKILL);
	kill(kids[1], SIGKILL);
	for (int i = 0; i < 8; i++) {
		int rc = t_wait(kids[i]);

		ck_assert_msg(rc == 0 || (i < 2 && rc == 128 + SIGKILL), "kid %d: %d", i, rc);
	}
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/* ---- holders that are not processes ---------------------------------------- */

static struct shoal_segment *fake_queue(const char *name)
{
	struct shoal_segment *q = NULL;

	ck_assert_int_eq(shoal__segment_create(name, SHOAL__KIND_QUEUE, 64, 4096, NULL, &q), 0);
	ck_assert_int_eq(shoal__segment_publish(q), 0);
	return q;
}

/* A producer pushes a handle (the queue takes a reference) and releases at
 * once; the array lives until the consumer, who takes the queue's reference
 * over, lets go. */
START_TEST(queue_holds_in_transit)
{
	const char *name = t_name("transit"), *qname = t_name("q");
	struct shoal_segment *q = fake_queue(qname);
	uint64_t qk = shoal__holder_queue(q->hdr.generation);
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	struct shoal_array_holder hs[2];
	char h[SHOAL_HANDLE_MAX];
	pid_t pid;

	ck_assert_uint_eq(qk >> 63, 1);
	snprintf(h, sizeof(h), "%s", handle_of(a));
	ck_assert_int_eq(shoal__array_hold(a, qk), 0); /* push */
	ck_assert_int_eq(shoal__array_hold(a, qk), 0); /* pushed twice */
	ck_assert_int_eq(shoal_array_close(a), 0);     /* the producer lets go */
	ck_assert(exists(name));
	ck_assert_int_ge(shoal_reap(), 0);             /* the queue exists: kept */
	ck_assert(exists(name));

	pid = fork();
	if (pid == 0) {
		/* Consumer: pops, and takes over one of the queue's references. */
		struct shoal_array *c;

		if (shoal__array_attach_from(h, qk, 0, &c))
			_exit(1);
		_exit(shoal__array_count_of(c, qk) == 1 && shoal_array_refcount(c) == 2 &&
		       shoal_array_close(c) == 0 ? 0 : 2);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &b), 0);
	ck_assert_int_eq(shoal_array_holders(b, hs, 2), 1);
	ck_assert_uint_eq(hs[0].key, qk);
	ck_assert_uint_eq(hs[0].count, 1);
	ck_assert_int_eq(hs[0].pid, 0);
	shoal_array_close(b);

	/* Transfer and its errors. */
	ck_assert_int_eq(shoal_array_open(name, 0, &b), 0);
	ck_assert_int_eq(shoal__array_transfer(b, shoal__holder_queue(1), SHOAL__HOLDER_PIN_KEY), -ENOENT);
	ck_assert_int_eq(shoal__array_transfer(b, qk, qk), -EINVAL);
	ck_assert_int_eq(shoal__array_transfer(b, qk, SHOAL__HOLDER_PIN_KEY), 0);
	ck_assert_uint_eq(shoal__array_count_of(b, SHOAL__HOLDER_PIN_KEY), 1);
	ck_assert_uint_eq(shoal__array_count_of(b, qk), 0);
	ck_assert_int_eq(shoal__array_transfer(b, SHOAL__HOLDER_PIN_KEY, qk), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);

	/* The queue goes away with the handle still inside: reap drops the
	 * queue's reference, and that was the last. */
	shoal_segment_close(q);
	ck_assert_int_eq(shoal_unlink(qname), 0);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert(!exists(name));
}
END_TEST

/* A consumer whose handle's queue reference was already gone still gets
 * the array if it lives (a fresh reference), or -ENOENT. */
START_TEST(attach_from_without_transit_reference)
{
	const char *name = t_name("nofrom");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	char h[SHOAL_HANDLE_MAX];
	uint64_t qk = shoal__holder_queue(777);

	snprintf(h, sizeof(h), "%s", handle_of(a));
	ck_assert_int_eq(shoal__array_attach_from(h, qk, 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_int_eq(shoal__array_attach_from("nonsense", qk, 0, &b), -EINVAL);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert_int_eq(shoal__array_attach_from(h, qk, 0, &b), -ENOENT);
}
END_TEST

/* A pin (a SharedMemory name) is never reaped; dropping it frees. */
/* ---- holding for another process (shoal_array_hold_for) ---------------- */

/* A child that lives until its pipe's write end closes or it is killed. */
static pid_t idle_child(int fds[2])
{
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		close(fds[1]);
		(void)!read(fds[0], &c, 1);
		_exit(0);
	}
	close(fds[0]);
	return pid;
}

static struct shoal_proc proc_of(pid_t pid)
{
	struct shoal_proc p;

	ck_assert_int_eq(shoal_proc_get(pid, &p), 0);
	return p;
}

START_TEST(hold_for_dead_holder_is_reaped)
{
	const char *name = t_name("hfr");
	struct shoal_array *a = make(name, SHOAL_DTYPE_FLOAT64, 2, shape34);
	struct shoal_array_holder hs[4];
	int fds[2];
	pid_t pid = idle_child(fds);
	struct shoal_proc p = proc_of(pid);

	ck_assert_int_eq(shoal_array_hold_for(a, &p), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_uint_eq(shoal_array_refs(a), 1);  /* the caller's own are unchanged */
	ck_assert_int_eq(shoal_array_holders(a, hs, 4), 2);
	ck_assert_int_eq(hs[1].pid, pid);
	ck_assert(hs[1].alive);
	/* The maker lets go: the child's line alone keeps the array. */
	ck_assert_int_eq(shoal_array_close(a), 0);
	ck_assert(exists(name));
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert(exists(name)); /* a live holder's line stays */
	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert(!exists(name));
	close(fds[1]);
}
END_TEST

START_TEST(hold_for_errors)
{
	const char *name = t_name("hfe");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL, *n = NULL;
	struct shoal_proc p, self;
	int fds[2];
	pid_t pid;

	ck_assert_int_eq(shoal_proc_self(&self), 0);
	ck_assert_int_eq(shoal_array_hold_for(NULL, &self), -EINVAL);
	ck_assert_int_eq(shoal_array_hold_for(a, NULL), -EINVAL);
	p = self;
	p.pid = 0;
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -EINVAL);
	p.pid = 1 << 22;
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -EINVAL);
	p = self;
	p.start_time = UINT64_C(1) << 41;
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -EINVAL);
	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &n), 0);
	ck_assert_int_eq(shoal_array_hold_for(n, &self), -EINVAL);
	shoal_array_close(n);
	/* A live pid with another start time: a later process on a reused pid. */
	p = self;
	p.start_time++;
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -ESRCH);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-ESRCH), "not alive"));
	/* A zombie (killed, not waited for), then no process at all. */
	pid = idle_child(fds);
	p = proc_of(pid);
	kill(pid, SIGKILL);
	{
		siginfo_t si;

		/* A zombie now: exited, not reaped (WNOWAIT). */
		ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	}
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -ESRCH);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	close(fds[1]);
	ck_assert_int_eq(shoal_array_hold_for(a, &p), -ESRCH);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), 1);
	/* A freed array. */
	ck_assert_int_eq(shoal_array_open(name, 0, &b), 0);
	ck_assert_int_eq(shoal_array_release(a), 0);
	ck_assert_int_eq(shoal_array_release(b), 1);
	ck_assert_int_eq(shoal_array_hold_for(a, &self), -ENOENT);
	shoal_array_close(a);
	shoal_array_close(b);
}
END_TEST

START_TEST(hold_for_holder_attaches_and_releases)
{
	const char *name = t_name("hfa");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT32, 2, shape34);
	const char *h = handle_of(a);
	int go[2], done[2];
	pid_t pid;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(pipe(done), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *b, *b2;
		uint64_t me = shoal__self_key();

		if (read(go[0], &c, 1) != 1)
			_exit(10);
		/* The given reference is taken over: no second one. */
		if (shoal_array_attach(h, 0, &b) || shoal_array_refcount(b) != 1 ||
		    shoal_array_refs(b) != 1 || shoal__array_given_of(b, me) != 0 ||
		    ((int32_t *)shoal_array_data(b))[5] != 42)
			_exit(11);
		/* A second struct adds one of its own. */
		if (shoal_array_attach(h, 0, &b2) || shoal_array_refcount(b) != 2)
			_exit(12);
		if (shoal_array_close(b2) != 0 || shoal_array_refcount(b) != 1 ||
		    shoal_array_holders(b, NULL, 0) != 1)
			_exit(13);
		/* The last reference: this release frees it, once. */
		if (shoal_array_release(b) != 1 || !shoal_array_is_freed(b) ||
		    shoal_array_refcount(b) != 0 || access(t_path(name), F_OK) == 0)
			_exit(14);
		if (shoal_array_release(b) != -EINVAL || shoal_array_close(b) != 0)
			_exit(15);
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	{
		struct shoal_proc p = proc_of(pid);

		((int32_t *)shoal_array_data(a))[5] = 42;
		ck_assert_int_eq(shoal_array_hold_for(a, &p), 0);
		ck_assert_uint_eq(shoal__array_given_of(a, shoal__proc_key(&p)), 1);
		ck_assert_int_eq(shoal_array_close(a), 0);
	}
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert(!exists(name));
	ck_assert_int_eq(shoal_reap(), 0);
	close(go[1]);
	close(done[0]);
}
END_TEST

/*
 * A line with more given than counted was written by hand (the count
 * store lowers given): read as none given. Trusted, the retain below
 * would have made the struct's own new reference a given one, and
 * closing it would free the array under the second struct.
 */
START_TEST(given_over_count_is_read_as_none)
{
	const char *name = t_name("gvc");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	uint64_t me = shoal__self_key();

	atomic_store(&a->hdr->ledger[0].given, 5);
	ck_assert_int_eq(shoal_array_retain(a), 0);
	ck_assert_uint_eq(shoal__array_given_of(a, me), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	ck_assert_int_eq(shoal_array_close(a), 0); /* not freed: b holds it */
	ck_assert(exists(name));
	ck_assert_uint_eq(shoal_array_refcount(b), 1);
	ck_assert_int_eq(shoal_array_close(b), 1);
	ck_assert(!exists(name));
}
END_TEST

START_TEST(hold_for_self)
{
	const char *name = t_name("hfs");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	uint64_t me = shoal__self_key();
	struct shoal_proc self;

	ck_assert_int_eq(shoal_proc_self(&self), 0);
	ck_assert_int_eq(shoal_array_hold_for(a, &self), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_uint_eq(shoal_array_refs(a), 1);
	ck_assert_uint_eq(shoal__array_given_of(a, me), 1);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), 1); /* still one line */
	/* An attach takes the given one over. */
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_uint_eq(shoal__array_given_of(a, me), 0);
	/* So does a retain. */
	ck_assert_int_eq(shoal_array_hold_for(a, &self), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	ck_assert_int_eq(shoal_array_retain(a), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	ck_assert_uint_eq(shoal_array_refs(a), 2);
	ck_assert_uint_eq(shoal__array_given_of(a, me), 0);
	/* A release never leaves a given count above the line's count. */
	ck_assert_int_eq(shoal_array_hold_for(a, &self), 0);
	ck_assert_int_eq(shoal_array_close(a), 0);
	ck_assert_uint_eq(shoal_array_refcount(b), 2);
	ck_assert_uint_eq(shoal__array_given_of(b, me), 1);
	ck_assert_int_eq(shoal_array_release(b), 0);
	ck_assert_uint_eq(shoal_array_refcount(b), 1);
	ck_assert_uint_eq(shoal__array_given_of(b, me), 1);
	ck_assert(exists(name));
	/* The given one left is taken and dropped like any other: freed. */
	ck_assert_int_eq(shoal_array_retain(b), 0);
	ck_assert_uint_eq(shoal_array_refcount(b), 1);
	ck_assert_int_eq(shoal_array_close(b), 1);
	ck_assert(!exists(name));
}
END_TEST

/* A giver killed between its commit and its given store leaves one
 * reference too many on the holder's line, never a given one the count
 * does not back: the holder's structs then own all they think. */
START_TEST(hold_for_giver_killed_after_commit)
{
	const char *name = t_name("hfk");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	uint64_t me = shoal__self_key();
	pid_t pid;

	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_proc parent;

		if (shoal_proc_get(getppid(), &parent))
			_exit(1);
		kill_at = SHOAL__HOOK_COUNT_WRITTEN;
		shoal__array_hook = kill_hook;
		shoal_array_hold_for(a, &parent);
		_exit(2);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_uint_eq(shoal__array_given_of(a, me), 0);
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 3);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 0);
	/* The extra one: held until this process dies (a child reaps it then). */
	ck_assert(exists(name));
	ck_assert_int_eq(shoal_array_open(name, 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(b), 2);
	ck_assert_int_eq(shoal__array_unhold(b, me), 0); /* the leftover, by hand */
	ck_assert_int_eq(shoal_array_close(b), 1);
	ck_assert(!exists(name));
}
END_TEST

START_TEST(pin_is_not_reaped)
{
	const char *name = t_name("pin");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);

	ck_assert_int_eq(shoal__array_hold(a, SHOAL__HOLDER_PIN_KEY), 0);
	ck_assert_int_eq(shoal_array_close(a), 0);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert(exists(name));
	ck_assert_int_eq(shoal_array_open(name, 0, &a), 0);
	ck_assert_int_eq(shoal__array_unhold(a, SHOAL__HOLDER_PIN_KEY), 0);
	ck_assert_int_eq(shoal__array_unhold(a, SHOAL__HOLDER_PIN_KEY), -ENOENT);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
	ck_assert_int_eq(shoal__array_hold(NULL, 1), -EINVAL);
	ck_assert_int_eq(shoal__array_unhold(NULL, 1), -EINVAL);
}
END_TEST

/* A ledger full of live holders refuses one more; dead ones make room. */
START_TEST(ledger_full)
{
	const char *name = t_name("full");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	uint32_t cap = SHOAL_ARRAY_HOLDERS_MAX;
	pid_t pid;

	ck_assert_uint_eq(SHOAL__ARRAY_LEDGER_CAP + SHOAL__ARRAY_OVF_CAP, cap);
	for (uint32_t i = 1; i < cap; i++)
		ck_assert_int_eq(shoal__array_hold(a, shoal__holder_queue(i)), 0);
	ck_assert_int_eq(shoal__array_hold(a, shoal__holder_queue(cap)), -EUSERS);
	/* More for a holder that has a line is fine. */
	ck_assert_int_eq(shoal__array_hold(a, shoal__holder_queue(1)), 0);
	pid = fork();
	if (pid == 0)
		_exit(shoal_array_attach(handle_of(a), 0, &b) == -EUSERS ? 0 : 1);
	ck_assert_int_eq(t_wait(pid), 0);
	/* No queue has those generations: reap frees every line but ours. */
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
}
END_TEST

/* ---- memory returns ---------------------------------------------------------- */

static long meminfo_kb(const char *key)
{
	char line[256];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0 && line[strlen(key)] == ':')
			v = strtol(line + strlen(key) + 1, NULL, 10);
	fclose(f);
	return v;
}

/* After the last release the name is gone and the machine's Shmem drops by
 * the array's size. Others may allocate shared memory at the same time, so
 * the drop is measured a few times and the best taken. */
START_TEST(memory_returns)
{
	size_t shape[] = { 256u << 20 }; /* 256 MiB */
	long best = 0;

	for (int attempt = 0; attempt < 3 && best < 230 * 1024; attempt++) {
		const char *name = t_name("mem");
		struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 1, shape), *b = NULL;
		long before, after;

		memset(shoal_array_data(a), 1, shape[0]);
		ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
		ck_assert_int_eq(shoal_array_close(b), 0);
		before = meminfo_kb("Shmem");
		ck_assert_int_eq(shoal_array_close(a), 1);
		ck_assert(!exists(name));
		after = meminfo_kb("Shmem");
		if (before - after > best)
			best = before - after;
	}
	ck_assert_msg(best >= 230 * 1024, "Shmem dropped by only %ld kB", best);
}
END_TEST

/* ---- arrays through real queues ------------------------------------------ */

static struct shoal_queue *make_queue(const char *name, uint32_t cap)
{
	struct shoal_queue *q = NULL;

	ck_assert_int_eq(shoal_queue_create(name, cap, SHOAL_HANDLE_MAX, NULL, &q), 0);
	return q;
}

static uint32_t queue_count(struct shoal_array *a, struct shoal_queue *q)
{
	return shoal__array_count_of(a, shoal__holder_queue(shoal__queue_generation(q)));
}

/* The producer releases right after pushing; the queue keeps it alive. */
START_TEST(queue_keeps_array_alive)
{
	const char *qn = t_name("q"), *an = t_name("a");
	struct shoal_queue *q = make_queue(qn, 8);
	struct shoal_array *a = make(an, SHOAL_DTYPE_INT32, 2, shape34), *b = NULL;
	pid_t pid;

	((int32_t *)shoal_array_data(a))[11] = 1234;
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *c;

		/* A producer of its own: attach, push, let go, exit. */
		if (shoal_array_attach(handle_of(a), 0, &c) || shoal_queue_push_array(q, c, -1) ||
		    shoal_array_close(c))
			_exit(1);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_uint_eq(queue_count(a, q), 1);
	ck_assert_int_eq(shoal_array_close(a), 0); /* the creator lets go too */
	ck_assert(exists(an));                     /* the queue still holds it */

	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), 0);
	ck_assert_int_eq(((int32_t *)shoal_array_data(b))[11], 1234);
	ck_assert_uint_eq(queue_count(b, q), 0); /* taken over, not added */
	ck_assert_uint_eq(shoal_array_refcount(b), 1);
	ck_assert_int_eq(shoal_array_close(b), 1); /* the last reference: freed */
	ck_assert(!exists(an));
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
}
END_TEST

/* Unlinking a queue with handles inside drops their references. */
START_TEST(queue_unlink_drops_references)
{
	const char *qn = t_name("q"), *an = t_name("a"), *kept = t_name("kept");
	struct shoal_queue *q = make_queue(qn, 8);
	struct shoal_array *a = make(an, SHOAL_DTYPE_UINT8, 2, shape34);
	struct shoal_array *k = make(kept, SHOAL_DTYPE_UINT8, 2, shape34);

	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_queue_push_array(q, k, 0), 0);
	ck_assert_uint_eq(queue_count(a, q), 2);
	ck_assert_int_eq(shoal_array_close(a), 0);
	ck_assert(exists(an));
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	ck_assert(!exists(an)); /* nobody else held it: freed */
	ck_assert(exists(kept)); /* its creator still holds this one */
	ck_assert_uint_eq(shoal_array_refcount(k), 1);
	ck_assert_int_eq(shoal_array_close(k), 1);
	ck_assert(!exists(kept));
}
END_TEST

/* A consumer that dies between popping a handle and attaching it: the
 * reference stays with the queue, and unlinking the queue returns it. */
START_TEST(consumer_dies_before_attach)
{
	const char *qn = t_name("q"), *an = t_name("a");
	struct shoal_queue *q = make_queue(qn, 8);
	struct shoal_array *a = make(an, SHOAL_DTYPE_FLOAT64, 2, shape34);
	pid_t pid;

	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_array_close(a), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char buf[SHOAL_HANDLE_MAX];
		size_t len;

		if (shoal_queue_pop(q, buf, sizeof(buf), &len, 0) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert(exists(an));
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	ck_assert(!exists(an));
}
END_TEST

/* A popped message that is a handle with a NUL byte after it (or inside)
 * is refused, not attached as the part before the NUL: that would be a
 * different string from the one pushed. */
START_TEST(popped_handle_with_nul)
{
	const char *qn = t_name("q"), *an = t_name("a");
	struct shoal_queue *q = make_queue(qn, 4);
	struct shoal_array *a = make(an, SHOAL_DTYPE_INT8, 2, shape34), *b = NULL;
	char msg[SHOAL_HANDLE_MAX + 8];
	const char *h = handle_of(a);
	size_t len = strlen(h);

	memcpy(msg, h, len);
	memcpy(msg + len, "\0x", 2);
	ck_assert_int_eq(shoal_queue_push(q, msg, len + 2, 0), 0);
	ck_assert_int_eq(shoal_queue_push(q, msg, len + 1, 0), 0);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EINVAL);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	/* Consumed: the queue is empty, and a clean handle still works. */
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EAGAIN);
	ck_assert_int_eq(shoal_queue_push(q, h, len, 0), 0);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
}
END_TEST

/* Reaping stays linear with many arrays in queues: a queue that alone held
 * 300 arrays is unlinked and every one of them is freed by the one walk
 * inside shoal_queue_unlink(); others that a live queue holds are kept, and
 * an array held by both loses only the dead queue's line. */
START_TEST(queue_unlink_frees_many)
{
	enum { N = 300 };
	const char *dead = t_name("qd"), *live = t_name("ql"), *both = t_name("both");
	struct shoal_queue *qd = make_queue(dead, 4), *ql = make_queue(live, 4);
	struct shoal_array *b = make(both, SHOAL_DTYPE_INT8, 2, shape34), *k;
	char nm[64];

	k = make(t_name("kept"), SHOAL_DTYPE_INT8, 2, shape34);
	ck_assert_int_eq(shoal_queue_hold_array(ql, k), 0);
	ck_assert_int_eq(shoal_queue_hold_array(qd, b), 0);
	ck_assert_int_eq(shoal_queue_hold_array(ql, b), 0);
	for (int i = 0; i < N; i++) {
		struct shoal_array *a;

		snprintf(nm, sizeof(nm), "t.%d.many%d", (int)getpid(), i);
		a = make(nm, SHOAL_DTYPE_INT8, 2, shape34);
		ck_assert_int_eq(shoal_queue_hold_array(qd, a), 0);
		ck_assert_int_eq(shoal_array_close(a), 0);
		ck_assert(exists(nm));
	}
	ck_assert_int_eq(shoal_queue_detach(qd), 0);
	ck_assert_int_eq(shoal_queue_unlink(dead), 0);
	for (int i = 0; i < N; i++) {
		snprintf(nm, sizeof(nm), "t.%d.many%d", (int)getpid(), i);
		ck_assert_msg(!exists(nm), "%s left", nm);
	}
	ck_assert_uint_eq(queue_count(b, ql), 1);
	ck_assert_uint_eq(shoal_array_refcount(b), 2); /* ours and the live queue's */
	ck_assert_uint_eq(queue_count(k, ql), 1);
	ck_assert_int_ge(shoal_reap(), 0); /* a second walk changes nothing */
	ck_assert_uint_eq(shoal_array_refcount(b), 2);
	ck_assert_uint_eq(shoal_array_refcount(k), 2);
	ck_assert_int_eq(shoal_queue_unhold_array(ql, b), 0);
	ck_assert_int_eq(shoal_queue_unhold_array(ql, k), 0);
	ck_assert_int_eq(shoal_array_close(b), 1);
	ck_assert_int_eq(shoal_array_close(k), 1);
	shoal_queue_detach(ql);
	ck_assert_int_eq(shoal_queue_unlink(live), 0);
}
END_TEST

START_TEST(queue_array_errors)
{
	const char *qn = t_name("q"), *an = t_name("a"), *gone = t_name("gone");
	struct shoal_queue *q = make_queue(qn, 2), *small = NULL;
	struct shoal_array *a = make(an, SHOAL_DTYPE_INT8, 2, shape34), *b = NULL;
	struct shoal_array *g = make(gone, SHOAL_DTYPE_INT8, 2, shape34);
	char long_msg[SHOAL_HANDLE_MAX];
	const char *qs = t_name("small");

	ck_assert_int_eq(shoal_queue_hold_array(NULL, a), -EINVAL);
	ck_assert_int_eq(shoal_queue_hold_array(q, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_unhold_array(NULL, a), -EINVAL);
	ck_assert_int_eq(shoal_queue_unhold_array(q, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_unhold_array(q, a), -ENOENT); /* holds none */
	ck_assert_int_eq(shoal_queue_attach_array(NULL, "x", 0, &b), -EINVAL);
	ck_assert_int_eq(shoal_queue_attach_array(q, NULL, 0, &b), -EINVAL);
	ck_assert_int_eq(shoal_queue_attach_array(q, handle_of(a), 0, NULL), -EINVAL);
	ck_assert_int_eq(shoal_queue_attach_array(q, "not a handle", 0, &b), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_array(NULL, a, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_push_array(q, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_array(NULL, 0, &b, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EAGAIN);

	/* A failed push leaves the queue holding nothing more. */
	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), -EAGAIN);
	ck_assert_uint_eq(queue_count(a, q), 2);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_uint_eq(queue_count(a, q), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);

	/* Too small a queue for a handle: the push fails, nothing is held. */
	ck_assert_int_eq(shoal_queue_create(qs, 2, 16, NULL, &small), 0);
	ck_assert_int_eq(shoal_queue_push_array(small, a, 0), -EMSGSIZE);
	ck_assert_uint_eq(queue_count(a, small), 0);
	shoal_queue_detach(small);
	ck_assert_int_eq(shoal_queue_unlink(qs), 0);

	/* Not a handle: consumed, -EINVAL. Longer than a handle: stays. */
	ck_assert_int_eq(shoal_queue_push(q, "hello", 5, 0), 0);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EINVAL);
	memset(long_msg, 'x', sizeof(long_msg));
	ck_assert_int_eq(shoal_queue_push(q, long_msg, sizeof(long_msg), 0), 0);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EMSGSIZE);
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -EMSGSIZE);
	{
		char buf[SHOAL_HANDLE_MAX];
		size_t len;

		ck_assert_int_eq(shoal_queue_pop(q, buf, sizeof(buf), &len, 0), 0);
		ck_assert_uint_eq(len, sizeof(long_msg));
	}

	/* A handle pushed without a reference, to an array since freed. */
	ck_assert_int_eq(shoal_queue_push(q, handle_of(g), strlen(handle_of(g)), 0), 0);
	ck_assert_int_eq(shoal_array_close(g), 1);
	ck_assert(!exists(gone));
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), -ENOENT);

	ck_assert_int_eq(shoal_array_close(a), 1);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
}
END_TEST

/* A reap that cannot look at the queues (no file descriptors left) keeps
 * their references: only a queue certainly gone loses them. */
START_TEST(reap_without_fds_keeps_queue_references)
{
	const char *qn = t_name("q"), *an = t_name("a");
	struct shoal_queue *q = make_queue(qn, 4);
	struct shoal_array *a = make(an, SHOAL_DTYPE_INT16, 2, shape34), *b = NULL;
	struct t_fds fds;

	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_int_eq(shoal_array_close(a), 0); /* only the queue holds it */
	/* Room for the reaper's directory and one object, not for more. */
	t_fds_take(&fds, 64, 2);
	shoal_reap();
	t_fds_back(&fds);
	ck_assert(exists(an));
	ck_assert_int_eq(shoal_queue_pop_array(q, 0, &b, 0), 0);
	ck_assert_int_eq(shoal_array_close(b), 1);
	ck_assert(!exists(an));
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
}
END_TEST

/* ---- hostile lock bytes ------------------------------------------------- */

/* A child that runs until killed: a live process for a lock to name. */
static pid_t live_child(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		for (;;)
			pause();
	return pid;
}

static uint64_t key_of(pid_t pid)
{
	struct shoal_proc p;

	ck_assert_int_eq(shoal_proc_get(pid, &p), 0);
	return shoal__proc_key(&p);
}

/* The key of a process that existed and is gone (reaped). */
static uint64_t dead_key(void)
{
	pid_t pid = live_child();
	uint64_t k = key_of(pid);

	kill(pid, SIGKILL);
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	return k;
}

/* `shoal gc` from the build tree, its output discarded: its exit code. */
static int run_gc(void)
{
	const char *dir = getenv("SHOAL_TEST_BUILDDIR");
	char path[4096];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/tools/shoal", dir ? dir : ".");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		dup2(fd, 1);
		execl(path, "shoal", "gc", (char *)NULL);
		_exit(127);
	}
	return t_wait(pid);
}

static uint64_t secs_since(uint64_t t0)
{
	return (shoal__now_ns() - t0) / 1000000000u;
}

/* The four words of a glibc pthread_mutex_t's first 16 bytes (x86-64):
 * __lock (tid, | FUTEX_WAITERS, | FUTEX_OWNER_DIED), __count, __owner,
 * __nusers: what the first layout's ledger lock held. */
static void put_words(struct shoal__lock *l, uint32_t w0, uint32_t w1, uint32_t w2, uint32_t w3)
{
	uint32_t w[4] = { w0, w1, w2, w3 };

	memcpy(l, w, sizeof(w));
}

#define LOCK_PATTERNS 9

/* Lock bytes no live process will ever release: taken over at once. */
static void dead_pattern(int i, struct shoal__lock *l, uint64_t dead)
{
	uint32_t dpid = (uint32_t)(dead & ((1u << SHOAL__PID_BITS) - 1));

	switch (i) {
	case 0: /* random bytes (owner != 0) */
		do
			shoal__random(l, sizeof(*l));
		while (atomic_load(&l->owner) == 0);
		break;
	case 1:
		memset(l, 0xff, sizeof(*l));
		break;
	case 2: /* held by a dead process */
		atomic_store(&l->owner, dead);
		break;
	case 3: /* impossible key: pid 0 */
		atomic_store(&l->owner, UINT64_C(1) << SHOAL__PID_BITS);
		break;
	case 4: /* robust mutex "held" by a live thread (this one) */
		put_words(l, (uint32_t)getpid(), 0, (uint32_t)getpid(), 1);
		break;
	case 5: /* robust + PI, owned by a thread id that does not exist */
		put_words(l, 0x80000000u | dpid, 0, dpid, 1);
		break;
	case 6: /* robust, owner died */
		put_words(l, 0x40000000u | dpid, 0, 0, 0);
		break;
	case 7: /* "held" (lock word 1) with waiters */
		put_words(l, 1, 0, 1, 7);
		break;
	default: /* a dead owner and a garbage waiter count */
		atomic_store(&l->owner, dead);
		atomic_store(&l->word, UINT32_MAX);
		atomic_store(&l->waiters, UINT32_MAX);
		break;
	}
}

/* For every pattern: attach, release, shoal_reap() and `shoal gc` neither
 * abort nor hang, and the lock is taken over (a live holder would make
 * attach wait its 10 s). Then the repair: a ledger left at total 0 by the
 * "dead locker" is freed by the reaper. */
START_TEST(hostile_lock_bytes)
{
	const char *name = t_name("lk");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT32, 2, shape34), *b;
	uint64_t dead = dead_key(), t0 = shoal__now_ns();

	dead_pattern(_i, &a->hdr->lock, dead);
	ck_assert(shoal__lock_owner_dead(atomic_load(&a->hdr->lock.owner)));
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->lock.owner), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_int_eq(shoal_array_close(b), 0);
	dead_pattern(_i, &a->hdr->lock, dead);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->lock.owner), 0);
	dead_pattern(_i, &a->hdr->lock, dead);
	ck_assert_int_eq(run_gc(), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->lock.owner), 0);
	dead_pattern(_i, &a->hdr->lock, dead);
	ck_assert_int_eq(shoal_array_release(a), 1);
	ck_assert(!exists(name));
	shoal_array_close(a);

	/* A locker that died with the total at 0 and the state ALIVE. */
	name = t_name("lk0");
	a = make(name, SHOAL_DTYPE_INT32, 2, shape34);
	atomic_store(&a->hdr->ledger[0].count, 0);
	dead_pattern(_i, &a->hdr->lock, dead);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert(!exists(name));
	ck_assert(shoal_array_is_freed(a));
	ck_assert_int_eq(shoal_array_close(a), 0);
	ck_assert_uint_lt(secs_since(t0), 30);
}
END_TEST

/* Every other call that takes the ledger lock, each run by a child of its
 * own (holding a reference of its own, so that release and close reach
 * the lock): they wait out their bound side by side with the parent's
 * attach, so the lot costs one bound. */
enum { LOCKED_OPS = 9 };
static const char *const locked_op_name[LOCKED_OPS] = {
	"retain", "release", "close", "pin", "unpin", "hold_for",
	"queue_hold_array", "queue_unhold_array", "queue_pop_array",
};

static int locked_op(int i, struct shoal_array *b, struct shoal_queue *q)
{
	struct shoal_array *c = NULL;
	struct shoal_proc self;

	switch (i) {
	case 0: return shoal_array_retain(b);
	case 1: return shoal_array_release(b);
	case 2: return shoal_array_close(b);
	case 3: return shoal_array_pin(b);
	case 4: return shoal_array_unpin(b);
	case 5: return shoal_proc_self(&self) ? -EIO : shoal_array_hold_for(b, &self);
	case 6: return shoal_queue_hold_array(q, b);
	case 7: return shoal_queue_unhold_array(q, b);
	default: return shoal_queue_pop_array(q, 0, &c, 0);  /* its attach */
	}
}

/* Fork the children: each attaches @handle, says so on @ready, and runs
 * its call once @go is written; its exit code is 0 if that was -EDEADLK. */
static void locked_op_children(const char *handle, struct shoal_queue *q, pid_t *pids, int go[2])
{
	int ready[2];
	char c;

	ck_assert_int_eq(pipe(ready), 0);
	ck_assert_int_eq(pipe(go), 0);
	for (int i = 0; i < LOCKED_OPS; i++) {
		pids[i] = fork();
		ck_assert_int_ge(pids[i], 0);
		if (pids[i] == 0) {
			struct shoal_array *b = NULL;

			close(go[1]);
			if (shoal_array_attach(handle, 0, &b) || write(ready[1], "r", 1) != 1 ||
			    read(go[0], &c, 1) != 1)
				_exit(2);
			_exit(locked_op(i, b, q) == -EDEADLK ? 0 : 1);
		}
	}
	close(go[0]);
	for (int i = 0; i < LOCKED_OPS; i++)
		ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	close(ready[1]);
}

/* Lock bytes naming a live process that never lets go (a stopped holder,
 * or garbage that happens to be a live key): the reaper and `shoal gc`
 * skip the array after a short wait and finish, attach and every other
 * call that takes the lock give -EDEADLK after its bound, and once the
 * process is gone everything proceeds. */
START_TEST(live_lock_holder_is_bounded)
{
	struct shoal_array *a[3], *b;
	const char *names[3], *qn = t_name("heldq");
	struct shoal_queue *q = make_queue(qn, 4);
	pid_t kid = live_child(), ops[LOCKED_OPS];
	uint64_t k = key_of(kid), dead = dead_key(), t0;
	int go[2];

	for (int i = 0; i < 3; i++) {
		names[i] = t_name("held");
		a[i] = make(names[i], SHOAL_DTYPE_INT32, 2, shape34);
		/* A dead holder's line, for the reaper to (not) drop. */
		ck_assert_int_eq(shoal__array_hold(a[i], dead), 0);
	}
	/* A handle to pop, a queue reference to give back. */
	ck_assert_int_eq(shoal_queue_push_array(q, a[0], 0), 0);
	locked_op_children(handle_of(a[0]), q, ops, go);
	for (int i = 0; i < 3; i++)
		atomic_store(&a[i]->hdr->lock.owner, k);
	t0 = shoal__now_ns();
	ck_assert_int_ge(shoal_reap(), 0);
	/* 3 x 10 ms and the walk; generous for a loaded machine. */
	ck_assert_uint_lt(secs_since(t0), 8);
	t0 = shoal__now_ns();
	ck_assert_int_eq(run_gc(), 0);
	ck_assert_uint_lt(secs_since(t0), 8);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(shoal__array_count_of(a[i], dead), 1); /* skipped */
		ck_assert_uint_eq(atomic_load(&a[i]->hdr->lock.owner), k);
	}
	t0 = shoal__now_ns();
	ck_assert_int_eq(write(go[1], "ggggggggg", LOCKED_OPS), LOCKED_OPS);  /* a byte each */
	close(go[1]);
	ck_assert_int_eq(shoal_array_attach(handle_of(a[0]), 0, &b), -EDEADLK);
	ck_assert_uint_ge(secs_since(t0), 9);
	ck_assert_uint_lt(secs_since(t0), 60);
	for (int i = 0; i < LOCKED_OPS; i++)
		ck_assert_msg(t_wait(ops[i]) == 0, "shoal_%s: not -EDEADLK", locked_op_name[i]);
	ck_assert_uint_lt(secs_since(t0), 60);
	ck_assert_uint_eq(shoal__array_count_of(a[0], shoal__holder_queue(shoal__queue_generation(q))), 1);

	kill(kid, SIGKILL);
	ck_assert_int_eq(t_wait(kid), 128 + SIGKILL);
	ck_assert_int_ge(shoal_reap(), 0);  /* the children's references too */
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(shoal__array_count_of(a[i], dead), 0);
		ck_assert_uint_eq(atomic_load(&a[i]->hdr->lock.owner), 0);
		ck_assert_int_eq(shoal_array_close(a[i]), 1);
		ck_assert(!exists(names[i]));
	}
}
END_TEST

/* ---- thousands of holders: the overflow ledger ------------------------------ */

/* A holder key of a kind this version keeps and never reaps: a stand-in for
 * a process when a test needs thousands of holders in one process. */
static uint64_t kept_key(uint32_t i)
{
	return SHOAL__HOLDER_NONPROC | (UINT64_C(5) << SHOAL__HOLDER_KIND_SHIFT) | i;
}

/* Bytes of memory the object's file really has (holes excluded). */
static uint64_t allocated(const char *name)
{
	struct stat st;

	ck_assert_int_eq(stat(t_path(name), &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

static uint32_t ovf_mark(const struct shoal_array *a)
{
	return atomic_load(&a->hdr->ovf_used);
}

/* Past the first page's 204 lines, holders take overflow lines; a page of
 * them is reserved only when its first line is needed, lines freed are
 * reused before the mark moves, and every ledger operation (count, holders,
 * unhold, reap) sees overflow lines as first-page ones. */
START_TEST(thousands_of_holders)
{
	const char *name = t_name("thous");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const uint32_t n = 5000, cap0 = SHOAL__ARRAY_LEDGER_CAP;
	uint64_t base = allocated(name);
	uint32_t mark;

	ck_assert_uint_eq(base, 2 * SHOAL__DATA_ALIGN); /* headers + data; the tail is a hole */
	for (uint32_t i = 1; i < cap0; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	ck_assert_uint_eq(ovf_mark(a), 0);
	ck_assert_uint_eq(allocated(name), base);
	ck_assert_int_eq(shoal__array_hold(a, kept_key(cap0)), 0);
	ck_assert_uint_eq(ovf_mark(a), 1);
	ck_assert_uint_eq(allocated(name), base + SHOAL__DATA_ALIGN);
	for (uint32_t i = cap0 + 1; i < n; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	ck_assert_uint_eq(ovf_mark(a), n - cap0);
	ck_assert_uint_eq(allocated(name),
			  base + ((n - cap0) * 16 + SHOAL__DATA_ALIGN - 1) / SHOAL__DATA_ALIGN *
			  SHOAL__DATA_ALIGN);
	ck_assert_uint_eq(shoal_array_refcount(a), n);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), (int)n);
	/* One more for a holder whose line is in the overflow. */
	ck_assert_int_eq(shoal__array_hold(a, kept_key(4000)), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, kept_key(4000)), 2);
	ck_assert_uint_eq(ovf_mark(a), n - cap0);
	ck_assert_int_eq(shoal__array_unhold(a, kept_key(4000)), 0);
	/* Drop every other holder; new holders reuse their lines. */
	for (uint32_t i = 1; i < n; i += 2)
		ck_assert_int_eq(shoal__array_unhold(a, kept_key(i)), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), n / 2);
	ck_assert_int_eq(shoal__array_unhold(a, kept_key(4999)), -ENOENT);
	mark = ovf_mark(a);
	for (uint32_t i = n; i < n + n / 2; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	ck_assert_uint_eq(ovf_mark(a), mark);
	ck_assert_uint_eq(shoal_array_refcount(a), n);
	/* A queue holder in the overflow is reaped like any other. */
	ck_assert_int_eq(shoal__array_hold(a, shoal__holder_queue(77)), 0);
	ck_assert_uint_eq(ovf_mark(a), mark + 1);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, shoal__holder_queue(77)), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), n);
	for (uint32_t i = 1; i < n + n / 2; i++)
		if (shoal__array_count_of(a, kept_key(i)))
			ck_assert_int_eq(shoal__array_unhold(a, kept_key(i)), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/* An overflow page that cannot be reserved is an error from the call, and
 * the ledger is as before it. The hook stands in for the kernel. */
START_TEST(overflow_reserve_fails)
{
	const char *name = t_name("resfail");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	static const struct { int err, rc; const char *says; } cases[] = {
		{ ENOSPC, -ENOSPC, "no room in /dev/shm/" },
		{ EFAULT, -ENOSPC, "overflow ledger" },
		{ ENOMEM, -ENOMEM, "out of memory" },
		{ EINVAL, -EUSERS, "Linux 5.14" },
	};

	for (uint32_t i = 1; i < SHOAL__ARRAY_LEDGER_CAP; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		shoal__array_reserve_fail = cases[i].err;
		ck_assert_int_eq(shoal__array_hold(a, kept_key(9999)), cases[i].rc);
		ck_assert_ptr_nonnull(strstr(shoal_errdetail(cases[i].rc), name));
		ck_assert_ptr_nonnull(strstr(shoal_errdetail(cases[i].rc), cases[i].says));
		ck_assert_uint_eq(ovf_mark(a), 0);
		ck_assert_uint_eq(shoal_array_refcount(a), SHOAL__ARRAY_LEDGER_CAP);
	}
	/* A new page is reserved once per page, not once per line. */
	shoal__array_reserve_fail = 0;
	ck_assert_int_eq(shoal__array_hold(a, kept_key(9999)), 0);
	shoal__array_reserve_fail = ENOSPC;
	ck_assert_int_eq(shoal__array_hold(a, kept_key(10000)), 0);
	shoal__array_reserve_fail = 0;
	ck_assert_uint_eq(ovf_mark(a), 2);
	ck_assert_uint_eq(shoal_array_refcount(a), SHOAL__ARRAY_LEDGER_CAP + 2);
	shoal_array_close(a);
	shoal_unlink(name);
}
END_TEST

/* With /dev/shm really full, taking a line that needs a new overflow page
 * is -ENOSPC from the attach, never SIGBUS; room made, it succeeds. Runs
 * in a child with a private 64 KiB tmpfs on /dev/shm (needs root). */
START_TEST(full_shm_is_enospc_not_sigbus)
{
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private tmpfs");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		static const char fill[4096];
		struct shoal_array *a = NULL, *b = NULL;
		char h[SHOAL_HANDLE_MAX];
		const size_t one[] = { 4096 };
		int fd, rc;
		pid_t kid;

		if (unshare(CLONE_NEWNS) != 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0)
			_exit(10);
		if (shoal_array_create("full", SHOAL_DTYPE_UINT8, 0, 1, one, NULL, &a) != 0)
			_exit(11);
		for (uint32_t i = 1; i < SHOAL__ARRAY_LEDGER_CAP; i++)
			if (shoal__array_hold(a, kept_key(i)) != 0)
				_exit(12);
		fd = open("/dev/shm/filler", O_RDWR | O_CREAT | O_EXCL, 0600);
		while (write(fd, fill, sizeof(fill)) == (ssize_t)sizeof(fill))
			;
		if (errno != ENOSPC)
			_exit(13);
		shoal_array_handle(a, h, sizeof(h));
		kid = fork();
		if (kid == 0)
			_exit(shoal_array_attach(h, 0, &b) == -ENOSPC &&
			      strstr(shoal_errdetail(-ENOSPC), "overflow ledger") ? 0 : 1);
		if (t_wait(kid) != 0)
			_exit(14);
		if (shoal__array_hold(a, kept_key(9999)) != -ENOSPC || ovf_mark(a) != 0)
			_exit(15);
		/* Room for one page: the attach gets its line. */
		if (ftruncate(fd, 0) != 0)
			_exit(16);
		kid = fork();
		if (kid == 0) {
			rc = shoal_array_attach(h, 0, &b);
			_exit(rc == 0 && ovf_mark(b) == 1 ? 0 : 1);
		}
		if (t_wait(kid) != 0)
			_exit(17);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

/* ---- a full ledger: bounded sweeps, hostile marks ---------------------------- */

/* Fill every free line of @a by hand, as 16383 holders would: key(i) on
 * line i (line 0 is the creator's). Writing the overflow through the
 * mapping allocates its pages, as reserving them would. */
static void fill_ledger(struct shoal_array *a, uint64_t (*key)(uint32_t i, uint64_t arg),
			uint64_t arg)
{
	const uint32_t cap0 = a->ledger_cap;

	for (uint32_t i = 1; i < cap0 + a->ovf_cap; i++) {
		struct shoal__array_entry *e = i < cap0 ? &a->hdr->ledger[i] : &a->ovf[i - cap0];

		atomic_store(&e->key, key(i, arg));
		atomic_store(&e->count, 1);
	}
	atomic_store(&a->hdr->used, cap0);
	atomic_store(&a->hdr->ovf_used, a->ovf_cap);
}

/* A process key that is dead while @self lives: its pid with another start
 * time, so judging it is a real /proc read (a pid that was reused). */
static uint64_t reused_pid_key(uint32_t i, uint64_t self)
{
	return self + ((uint64_t)(i + 1) * 1000 << SHOAL__PID_BITS);
}

static uint64_t same_key(uint32_t i SHOAL__UNUSED, uint64_t key)
{
	return key;
}

/* The longest hold of the ledger lock in this process, from the hook. */
static uint64_t hold_started, hold_max;
static void time_holds(int point)
{
	if (point == SHOAL__HOOK_LOCKED) {
		hold_started = shoal__now_ns();
	} else if (point == SHOAL__HOOK_UNLOCKED && hold_started) {
		uint64_t d = shoal__now_ns() - hold_started;

		if (d > hold_max)
			hold_max = d;
		hold_started = 0;
	}
}

/* What a child's attach saw: its result, the longest lock hold, how long
 * it took in all. */
struct attach_seen {
	int rc;
	uint64_t hold_max_ns, took_ns;
	char detail[200];
};

static struct attach_seen attach_in_child(const char *handle)
{
	struct attach_seen seen = { 0 };
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *b = NULL;
		uint64_t t0 = shoal__now_ns();

		shoal__array_hook = time_holds;
		seen.rc = shoal_array_attach(handle, 0, &b);
		seen.took_ns = shoal__now_ns() - t0;
		shoal__array_hook = NULL;
		seen.hold_max_ns = hold_max;
		snprintf(seen.detail, sizeof(seen.detail), "%s", shoal_errdetail(seen.rc));
		if (write(p[1], &seen, sizeof(seen)) != (ssize_t)sizeof(seen))
			_exit(2);
		_exit(seen.rc == 0 && shoal_array_close(b) != 0);
	}
	close(p[1]);
	ck_assert_int_eq(read(p[0], &seen, sizeof(seen)), (ssize_t)sizeof(seen));
	close(p[0]);
	ck_assert_int_eq(t_wait(pid), 0);
	return seen;
}

static uint32_t lines_in_use(const struct shoal_array *a)
{
	return (uint32_t)shoal_array_holders(a, NULL, 0);
}

/* 16383 dead holders behind the live creator on line 0 (which stops a
 * release's sweep): an attach judges them outside the lock, a chunk at a
 * time, and holds the lock only to drop a chunk's dead and take a line.
 * Sweeping all of them under the lock, a /proc read each, held it for
 * 0.2-0.9 s. Later holders continue from the stored cursor. */
START_TEST(full_of_dead_sweeps_in_bounded_holds)
{
	const char *name = t_name("fdead");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const uint32_t max = SHOAL_ARRAY_HOLDERS_MAX, chunk = SHOAL__ARRAY_SWEEP_CHECKS;
	struct attach_seen seen;

	fill_ledger(a, reused_pid_key, shoal__self_key());
	ck_assert_uint_eq(lines_in_use(a), max);
	seen = attach_in_child(handle_of(a));
	ck_assert_int_eq(seen.rc, 0);
	/* Generous (the sweep under the lock took 200 ms and more), but a
	 * hold is a scan of the lines and one chunk's drops: well under. */
	ck_assert_msg(seen.hold_max_ns < 100000000, "longest lock hold %llu us",
		      (unsigned long long)(seen.hold_max_ns / 1000));
	/* One chunk judged: the creator (alive) and 63 dead, dropped; the
	 * child's line is given back by its close. */
	ck_assert_uint_eq(atomic_load(&a->hdr->sweep_next), chunk);
	ck_assert_uint_eq(lines_in_use(a), max - (chunk - 1));
	/* Holders after it take the freed lines, then sweep on from the
	 * cursor (this process's own line 0 is passed, not judged). */
	for (uint32_t i = 0; i < 2 * chunk; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i + 1)), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->sweep_next), 3 * chunk);
	ck_assert_uint_eq(lines_in_use(a), max - chunk + 1);
	for (uint32_t i = 1; i < 3 * chunk; i++)
		ck_assert_uint_eq(shoal__array_count_of(a, reused_pid_key(i, shoal__self_key())), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, reused_pid_key(3 * chunk, shoal__self_key())), 1);
	/* A cursor out of range is not followed: the sweep starts at line 0,
	 * passes the lines that are not processes' and drops the next dead. */
	atomic_store(&a->hdr->sweep_next, UINT32_MAX);
	for (uint32_t i = 0; i < chunk; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(1000 + i)), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->sweep_next), 4 * chunk);
	ck_assert_uint_eq(shoal__array_count_of(a, reused_pid_key(4 * chunk - 1, shoal__self_key())), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, reused_pid_key(4 * chunk, shoal__self_key())), 1);
	ck_assert_uint_eq(shoal_array_refcount(a), max - chunk + 1);
	/* A reap judges them outside the lock too, and drops them in chunks. */
	hold_max = 0;
	shoal__array_hook = time_holds;
	ck_assert_int_ge(shoal_reap(), 0); /* the dead go; the kept keys stay */
	shoal__array_hook = NULL;
	ck_assert_msg(hold_max < 100000000, "longest lock hold in reap %llu us",
		      (unsigned long long)(hold_max / 1000));
	ck_assert_uint_eq(lines_in_use(a), 1 + 3 * chunk);
	ck_assert_int_eq(shoal_array_close(a), 0); /* the kept keys hold it */
	shoal_unlink(name);
}
END_TEST

/* Full of live holders: one round of sweeps finds none dead and the attach
 * is -EUSERS, naming the array and its holders; the lock is never held for
 * the round, only for each chunk's try. */
START_TEST(full_of_live_is_eusers_after_one_round)
{
	const char *name = t_name("flive");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	char want[128];
	struct attach_seen seen;
	int up[2];
	pid_t live;
	char c;

	/* One live process's key on every line: each is a /proc read, as
	 * 16383 live workers would be. */
	ck_assert_int_eq(pipe(up), 0);
	live = fork();
	ck_assert_int_ge(live, 0);
	if (live == 0) {
		close(up[1]);
		while (read(up[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(up[0]);
	{
		struct shoal_proc p;

		ck_assert_int_eq(shoal_proc_get(live, &p), 0);
		fill_ledger(a, same_key, shoal__proc_key(&p));
	}
	seen = attach_in_child(handle_of(a));
	ck_assert_int_eq(seen.rc, -EUSERS);
	snprintf(want, sizeof(want), "array '%s': holder ledger full (%d live holders", name,
		 SHOAL_ARRAY_HOLDERS_MAX);
	ck_assert_msg(strstr(seen.detail, want), "detail: %s", seen.detail);
	ck_assert_ptr_nonnull(strstr(seen.detail, "none dead"));
	ck_assert_msg(seen.hold_max_ns < 100000000, "longest lock hold %llu us",
		      (unsigned long long)(seen.hold_max_ns / 1000));
	ck_assert_uint_eq(lines_in_use(a), SHOAL_ARRAY_HOLDERS_MAX);
	/* Holders that are not processes are never judged: as full. */
	ck_assert_int_eq(shoal__array_hold(a, kept_key(1)), -EUSERS);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EUSERS), want));
	/* Once it has died, the next holder finds room. */
	close(up[1]);
	ck_assert_int_eq(t_wait(live), 0);
	ck_assert_int_eq(shoal__array_hold(a, kept_key(1)), 0);
	ck_assert_uint_eq(lines_in_use(a), SHOAL_ARRAY_HOLDERS_MAX - SHOAL__ARRAY_SWEEP_CHECKS + 1);
	ck_assert_int_eq(shoal__array_unhold(a, kept_key(1)), 0);
	ck_assert_int_eq(shoal_array_close(a), 1); /* our release sweeps the rest */
	ck_assert(!exists(name));
}
END_TEST

/* A same-user process wrote the overflow mark past the reserved pages.
 * With room on the mount the holes are allocated as a scan reaches them;
 * on a full mount every scan stops at the last reserved page and a new
 * line is -ENOSPC: no SIGBUS in any call. Runs in a child with a private
 * 64 KiB tmpfs on /dev/shm (needs root). */
START_TEST(ovf_mark_past_reserved_pages)
{
	const char *name = t_name("ovfmark");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	pid_t pid;

	/* Room: the pages under the mark are reserved by the first scan. */
	atomic_store(&a->hdr->ovf_used, 5000);
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(b), 2);
	ck_assert_uint_eq(allocated(name), 2 * SHOAL__DATA_ALIGN + (5000 * 16 / SHOAL__DATA_ALIGN + 1) *
			  SHOAL__DATA_ALIGN);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);

	ck_assert_msg(geteuid() == 0, "this test needs root for a private tmpfs");
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		static const char fill[4096];
		struct shoal_array_holder hs[8];
		const size_t one[] = { 4096 };
		char h[SHOAL_HANDLE_MAX];
		int fd;
		pid_t kid;

		if (unshare(CLONE_NEWNS) != 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=64k") != 0)
			_exit(10);
		if (shoal_array_create("m", SHOAL_DTYPE_UINT8, 0, 1, one, NULL, &a) != 0)
			_exit(11);
		fd = open("/dev/shm/filler", O_RDWR | O_CREAT | O_EXCL, 0600);
		while (write(fd, fill, sizeof(fill)) == (ssize_t)sizeof(fill))
			;
		if (errno != ENOSPC)
			_exit(12);
		shoal_array_handle(a, h, sizeof(h));
		atomic_store(&a->hdr->ovf_used, 1000); /* four pages of holes */
		kid = fork();
		if (kid == 0) {
			/* A fresh mapping: attach (a line on the first page),
			 * count, list, release. */
			if (shoal_array_attach(h, 0, &b) != 0 || shoal_array_refcount(b) != 2 ||
			    shoal_array_holders(b, hs, 8) != 2 || shoal_array_release(b) != 0)
				_exit(1);
			if (!strstr(shoal_errdetail(-EBADMSG), "never reserved"))
				_exit(2);
			shoal_array_close(b);
			/* An inspection maps it read-only: the same. */
			if (shoal_array_open("m", SHOAL_ARRAY_NOREF, &b) != 0 ||
			    shoal_array_refcount(b) != 1 || shoal_array_holders(b, hs, 8) != 1)
				_exit(3);
			shoal_array_close(b);
			_exit(0);
		}
		if (t_wait(kid) != 0)
			_exit(13);
		/* The first page full: the next line is past the mark, on a
		 * page there is no room for. */
		for (uint32_t i = 1; i < SHOAL__ARRAY_LEDGER_CAP; i++)
			if (shoal__array_hold(a, kept_key(i)) != 0)
				_exit(14);
		kid = fork();
		if (kid == 0) {
			int rc = shoal_array_attach(h, 0, &b);
			_exit(rc == -ENOSPC &&
			      strstr(shoal_errdetail(-ENOSPC), "overflow ledger") ? 0 : 1);
		}
		if (t_wait(kid) != 0)
			_exit(15);
		if (shoal_reap() < 0 || shoal_array_refcount(a) != SHOAL__ARRAY_LEDGER_CAP)
			_exit(16);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
}
END_TEST

/* Thousands of real processes hold one array at once; their lines are
 * counted, listed and, for the half that is killed, swept by the last live
 * release, which frees the array. */
#define PROCS 4096
START_TEST(thousands_of_processes)
{
	const char *name = t_name("procs");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const char *h = handle_of(a);
	static pid_t kids[PROCS];
	int up[2], down[2], alive = 0;
	char c;

	ck_assert_int_eq(pipe(up), 0);
	ck_assert_int_eq(pipe(down), 0);
	for (int i = 0; i < PROCS; i++) {
		kids[i] = fork();
		ck_assert_int_ge(kids[i], 0);
		if (kids[i] == 0) {
			struct shoal_array *b = NULL;
			int rc;

			close(down[1]);
			close(up[0]);
			rc = shoal_array_attach(h, 0, &b);
			if (write(up[1], rc == 0 ? "k" : "e", 1) != 1)
				_exit(2);
			while (read(down[0], &c, 1) > 0)
				;
			_exit(rc == 0 && shoal_array_close(b) == 0 ? 0 : 1);
		}
	}
	close(up[1]);
	close(down[0]);
	for (int i = 0; i < PROCS; i++) {
		ck_assert_int_eq(read(up[0], &c, 1), 1);
		alive += c == 'k';
	}
	ck_assert_int_eq(alive, PROCS);
	ck_assert_uint_eq(shoal_array_refcount(a), PROCS + 1);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), PROCS + 1);
	ck_assert_uint_eq(ovf_mark(a), PROCS + 1 - SHOAL__ARRAY_LEDGER_CAP);
	for (int i = 0; i < PROCS; i += 2)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < PROCS; i += 2)
		ck_assert_int_eq(t_wait(kids[i]), 128 + SIGKILL);
	close(down[1]);
	for (int i = 1; i < PROCS; i += 2)
		ck_assert_int_eq(t_wait(kids[i]), 0);
	close(up[0]);
	/* Only the dead hold it now besides us: our close sweeps them. */
	ck_assert_uint_eq(shoal_array_refcount(a), PROCS / 2 + 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/* A process killed inside an operation on an overflow line: after the page
 * is reserved (mark not moved), after the key, after the commit. The
 * ledger stays consistent and reap takes back exactly the dead one's. */
START_TEST(killed_inside_overflow_line)
{
	static const int points[] = { SHOAL__HOOK_LOCKED, SHOAL__HOOK_OVF_RESERVED, SHOAL__HOOK_KEY_WRITTEN,
				      SHOAL__HOOK_COUNT_WRITTEN, SHOAL__HOOK_UNLOCKED };
	const char *name = t_name("die_ovf");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	const char *h = handle_of(a);
	const uint32_t cap0 = SHOAL__ARRAY_LEDGER_CAP;

	for (uint32_t i = 1; i < cap0; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	for (size_t p = 0; p < sizeof(points) / sizeof(points[0]); p++) {
		pid_t pid = fork();

		if (pid == 0) {
			kill_at = points[p];
			shoal__array_hook = kill_hook;
			shoal_array_attach(h, 0, &b);
			_exit(0);
		}
		ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
		ck_assert_uint_ge(shoal_array_refcount(a), cap0);
		ck_assert_uint_le(shoal_array_refcount(a), cap0 + 1);
		ck_assert_uint_le(ovf_mark(a), 1);
		ck_assert_int_ge(shoal_reap(), 0);
		ck_assert_uint_eq(shoal_array_refcount(a), cap0);
	}
	/* Killed inside a release of an overflow line. */
	for (int p = 0; p < 2; p++) {
		pid_t pid = fork();

		if (pid == 0) {
			if (shoal_array_attach(h, 0, &b) != 0 || ovf_mark(b) != 1)
				_exit(1);
			kill_at = p ? SHOAL__HOOK_UNLOCKED : SHOAL__HOOK_COUNT_WRITTEN;
			shoal__array_hook = kill_hook;
			shoal_array_close(b);
			_exit(0);
		}
		ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
		ck_assert_uint_eq(shoal_array_refcount(a), cap0);
	}
	/* Still usable: one more process, then every holder gone frees it. */
	ck_assert_int_eq(shoal_array_attach(h, 0, &b), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), cap0 + 1);
	ck_assert_int_eq(shoal_array_close(b), 0);
	for (uint32_t i = 1; i < cap0; i++)
		ck_assert_int_eq(shoal__array_unhold(a, kept_key(i)), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/* A queue's reference to an array on an overflow line is taken over by the
 * consumer as on a first-page line (lib/queue_arrays.c). */
START_TEST(queue_transfer_on_overflow_line)
{
	const char *name = t_name("qovf"), *qname = t_name("qovfq");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	struct shoal_queue *q = NULL;
	uint64_t qk;
	pid_t pid;

	for (uint32_t i = 1; i < SHOAL__ARRAY_LEDGER_CAP; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	ck_assert_int_eq(shoal_queue_create(qname, 4, SHOAL_HANDLE_MAX, NULL, &q), 0);
	qk = shoal__holder_queue(shoal__queue_generation(q));
	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	ck_assert_uint_eq(ovf_mark(a), 1);
	ck_assert_uint_eq(shoal__array_count_of(a, qk), 1);
	pid = fork();
	if (pid == 0) {
		/* The consumer's line is a new overflow line; the queue's goes. */
		if (shoal_queue_pop_array(q, 0, &b, 0) != 0)
			_exit(1);
		_exit(shoal__array_count_of(b, qk) == 0 && ovf_mark(b) == 2 &&
		      shoal_array_refcount(b) == SHOAL__ARRAY_LEDGER_CAP + 1 ? 0 : 2);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), SHOAL__ARRAY_LEDGER_CAP);
	ck_assert_int_eq(shoal_queue_detach(q), 0);
	ck_assert_int_eq(shoal_queue_unlink(qname), 0);
	ck_assert_int_eq(shoal_array_close(a), 0);
	shoal_unlink(name);
}
END_TEST

/*
 * What the system refuses an array: an address space too small to map it
 * (-ENOMEM from create and attach, in a child whose address space is
 * capped), no file descriptor left (-EMFILE from create, attach and
 * pop_array, whose handle is then consumed and whose reference the queue
 * keeps). Nothing is held for the child.
 */
START_TEST(system_refusals)
{
	const char *name = t_name("sysref"), *qn = t_name("sysrefq"), *none = t_name("sysnone");
	const size_t big[1] = { 48u << 20 };
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 1, big);
	struct shoal_queue *q = make_queue(qn, 4);
	const char *h = handle_of(a);
	pid_t pid;

	ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *b = NULL;

		/* Known to itself and registered with the queue first (its
		 * message goes behind the handle). */
		if (shoal_queue_push(q, "r", 1, 0) || t_cap_address_space(16u << 20))
			_exit(10);
		if (shoal_array_create(none, SHOAL_DTYPE_UINT8, 0, 1, big, NULL, &b) != -ENOMEM || b)
			_exit(1);
		if (shoal_array_attach(h, 0, &b) != -ENOMEM || b)
			_exit(2);
		if (t_no_more_fds())
			_exit(11);
		if (shoal_array_create(none, SHOAL_DTYPE_UINT8, 0, 2, shape34, NULL, &b) != -EMFILE || b)
			_exit(3);
		if (shoal_array_attach(h, 0, &b) != -EMFILE || b)
			_exit(4);
		if (shoal_queue_pop_array(q, 0, &b, 0) != -EMFILE || b)
			_exit(5);
		if (shoal_queue_pop_array(q, 0, &b, 0) != -EINVAL)  /* its own "r" */
			_exit(6);
		if (shoal_queue_pop_array(q, 0, &b, 0) != -EAGAIN)
			_exit(7);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert(!exists(none));
	ck_assert_uint_eq(shoal_array_refcount(a), 2);  /* ours and the queue's */
	ck_assert_uint_eq(queue_count(a, q), 1);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/* ---- every error of taking a reference, hold_for's above all ----------------- */

/* A key of this kind is never judged (kept_key), one per line from @i. */
static uint64_t kept_line(uint32_t i, uint64_t arg SHOAL__UNUSED)
{
	return kept_key(i);
}

/*
 * A ledger with no line to spare, each way it can lack one: every line a
 * holder's that no sweep may take (-EUSERS), or the first page full and
 * the next overflow page not to be had (-ENOSPC, -ENOMEM: the hook stands
 * in for the kernel). Each call that takes a line for a new holder fails
 * with the code and leaves the ledger as it was: shoal_array_hold_for()
 * for a live process, a pin, a queue's hold, a forked child's retain,
 * attach and pop_array (the handle is consumed, the queue keeps its
 * reference).
 */
static int new_holder_calls(struct shoal_array *a, struct shoal_queue *q, struct shoal_queue *q2,
			    const struct shoal_proc *p, int want)
{
	struct shoal_array *b = NULL;
	uint64_t total = shoal_array_refcount(a);
	pid_t pid;

	ck_assert_int_eq(shoal_array_hold_for(a, p), want);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(want), shoal_array_name(a)));
	ck_assert_int_eq(shoal_array_pin(a), want);
	ck_assert_int_eq(shoal_queue_hold_array(q2, a), want);  /* a queue without a line */
	ck_assert_uint_eq(shoal_array_refcount(a), total);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (shoal_array_retain(a) != want)
			_exit(1);
		if (shoal_array_attach(handle_of(a), 0, &b) != want || b)
			_exit(2);
		/* A handle the queue holds a reference for: consumed. */
		if (shoal_queue_pop_array(q, 0, &b, 0) != want || b)
			_exit(3);
		_exit(0);
	}
	return t_wait(pid);
}

static uint64_t depth_of(const struct shoal_queue *q)
{
	struct shoal_queue_stats st;

	ck_assert_int_eq(shoal_queue_stats(q, &st), 0);
	return st.depth;
}

START_TEST(no_line_for_a_new_holder)
{
	const char *name = t_name("noline"), *qn = t_name("nolineq"), *qn2 = t_name("nolineq2");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	struct shoal_queue *q = make_queue(qn, 4), *q2 = make_queue(qn2, 4);
	static const struct { int err, rc; } cases[] = {
		{ ENOSPC, -ENOSPC }, { EFAULT, -ENOSPC }, { ENOMEM, -ENOMEM },
	};
	int fds[2];
	pid_t kid = idle_child(fds);
	struct shoal_proc p = proc_of(kid);

	/* Line 1: the queue's, for the handles the consumers pop below. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(shoal_queue_push_array(q, a, 0), 0);
	for (uint32_t i = 2; i < SHOAL__ARRAY_LEDGER_CAP; i++)
		ck_assert_int_eq(shoal__array_hold(a, kept_key(i)), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		shoal__array_reserve_fail = cases[i].err;
		ck_assert_int_eq(new_holder_calls(a, q, q2, &p, cases[i].rc), 0);
		shoal__array_reserve_fail = 0;
		ck_assert_uint_eq(ovf_mark(a), 0);
		ck_assert_uint_eq(depth_of(q), 3 - i);
		ck_assert_uint_eq(queue_count(a, q), 4);
	}
	/* Every line taken by a holder no sweep judges: -EUSERS. */
	fill_ledger(a, kept_line, 0);
	atomic_store(&a->hdr->ledger[1].key, shoal__holder_queue(shoal__queue_generation(q)));
	atomic_store(&a->hdr->ledger[1].count, 4);
	ck_assert_uint_eq(queue_count(a, q), 4);
	ck_assert_int_eq(new_holder_calls(a, q, q2, &p, -EUSERS), 0);
	ck_assert_uint_eq(depth_of(q), 0);
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-EUSERS), "holder ledger full"));
	ck_assert_uint_eq(shoal__array_count_of(a, shoal__proc_key(&p)), 0);
	/* Holders that have a line take more without one to spare. */
	ck_assert_int_eq(shoal_array_retain(a), 0);
	ck_assert_int_eq(shoal_array_release(a), 0);
	/* Made room for, the same calls go through. */
	ck_assert_int_eq(shoal__array_unhold(a, kept_key(7)), 0);
	ck_assert_int_eq(shoal_array_hold_for(a, &p), 0);
	ck_assert_uint_eq(shoal__array_given_of(a, shoal__proc_key(&p)), 1);
	kill(kid, SIGKILL);
	ck_assert_int_eq(t_wait(kid), 128 + SIGKILL);
	close(fds[1]);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0); /* drops the queue's 4 */
	shoal_queue_detach(q2);
	ck_assert_int_eq(shoal_queue_unlink(qn2), 0);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, shoal__proc_key(&p)), 0);
	ck_assert_int_eq(shoal_array_close(a), 0); /* the kept keys hold it */
	shoal_unlink(name);
}
END_TEST

/*
 * A count at its most, written by hand (four billion references are not
 * taken in a test): one more for that holder is -EOVERFLOW, from every
 * call that adds one to a line, and the line is as it was.
 */
START_TEST(counts_that_would_overflow)
{
	const char *name = t_name("ovfl"), *qn = t_name("ovflq");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *b = NULL;
	struct shoal_queue *q = make_queue(qn, 4);
	struct shoal_proc self;

	ck_assert_int_eq(shoal_proc_self(&self), 0);
	atomic_store(&a->hdr->ledger[0].count, UINT32_MAX);
	ck_assert_int_eq(shoal_array_hold_for(a, &self), -EOVERFLOW);
	ck_assert_int_eq(shoal_array_retain(a), -EOVERFLOW);
	ck_assert_int_eq(shoal_array_attach(handle_of(a), 0, &b), -EOVERFLOW);
	ck_assert_ptr_null(b);
	ck_assert_uint_eq(atomic_load(&a->hdr->ledger[0].count), UINT32_MAX);
	ck_assert_uint_eq(shoal__array_given_of(a, shoal__self_key()), 0);
	atomic_store(&a->hdr->ledger[0].count, 1);
	/* The pin's line and a queue's. */
	ck_assert_int_eq(shoal_array_pin(a), 0);
	ck_assert_int_eq(shoal_queue_hold_array(q, a), 0);
	atomic_store(&a->hdr->ledger[1].count, UINT32_MAX);
	atomic_store(&a->hdr->ledger[2].count, UINT32_MAX);
	ck_assert_int_eq(shoal_array_pin(a), -EOVERFLOW);
	ck_assert_int_eq(shoal_queue_hold_array(q, a), -EOVERFLOW);
	atomic_store(&a->hdr->ledger[1].count, 1);
	atomic_store(&a->hdr->ledger[2].count, 1);
	ck_assert_int_eq(shoal_array_unpin(a), 0);
	ck_assert_int_eq(shoal_queue_unhold_array(q, a), 0);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/*
 * A giver killed after writing a new line's key and @given, before its
 * count: the line is free, with the stale @given of a reference never
 * committed. The holder it named then claims that line by attaching: its
 * @given must start at 0. Left at 1, the attach would take the phantom
 * over on its retain, two structs would own one counted reference, and
 * the first close would free the array under the second.
 */
START_TEST(line_claimed_after_a_giver_died_mid_claim)
{
	const char *name = t_name("hfclaim");
	struct shoal_array *a = make(name, SHOAL_DTYPE_INT32, 2, shape34);
	const char *h = handle_of(a);
	int go[2];
	pid_t holder, giver;
	char c;

	ck_assert_int_eq(pipe(go), 0);
	holder = fork();
	ck_assert_int_ge(holder, 0);
	if (holder == 0) {
		struct shoal_array *b, *b2;
		uint64_t me = shoal__self_key();

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(10);
		if (shoal_array_attach(h, 0, &b) || shoal__array_given_of(b, me) != 0 ||
		    shoal__array_count_of(b, me) != 1)
			_exit(11);
		if (shoal_array_retain(b) || shoal__array_count_of(b, me) != 2)
			_exit(12);
		if (shoal_array_attach(h, 0, &b2) || shoal__array_count_of(b, me) != 3)
			_exit(13);
		/* Each struct owns what it thinks: none frees under another. */
		if (shoal_array_close(b) != 0 || shoal_array_is_freed(b2) ||
		    shoal__array_count_of(b2, me) != 1)
			_exit(14);
		_exit(shoal_array_close(b2) == 0 ? 0 : 15);
	}
	close(go[0]);
	giver = fork();
	ck_assert_int_ge(giver, 0);
	if (giver == 0) {
		struct shoal_proc p;

		if (shoal_proc_get(holder, &p))
			_exit(1);
		kill_at = SHOAL__HOOK_KEY_WRITTEN;
		shoal__array_hook = kill_hook;
		shoal_array_hold_for(a, &p);
		_exit(2);
	}
	ck_assert_int_eq(t_wait(giver), 128 + SIGKILL);
	/* Line 1: the holder's key and a given reference, no count. */
	ck_assert_uint_eq(atomic_load(&a->hdr->used), 2);
	ck_assert_uint_eq(atomic_load(&a->hdr->ledger[1].count), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->ledger[1].given), 1);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(write(go[1], "x", 1), 1);
	ck_assert_int_eq(t_wait(holder), 0);
	close(go[1]);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/*
 * A full ledger whose lines are dead holders', each with given references
 * left (a worker handed results to callers that died): hold_for for a
 * live process sweeps them as an attach does, and the line it takes
 * carries exactly its one given reference, none of the dead line's.
 */
START_TEST(hold_for_into_a_full_ledger_of_dead_givers)
{
	const char *name = t_name("hfdead");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	const uint32_t max = SHOAL_ARRAY_HOLDERS_MAX, chunk = SHOAL__ARRAY_SWEEP_CHECKS;
	int fds[2];
	pid_t kid = idle_child(fds);
	struct shoal_proc p = proc_of(kid);
	uint64_t k = shoal__proc_key(&p);
	struct shoal__array_entry *e;

	fill_ledger(a, reused_pid_key, shoal__self_key());
	for (uint32_t i = 1; i < max; i++) {
		e = i < a->ledger_cap ? &a->hdr->ledger[i] : &a->ovf[i - a->ledger_cap];
		atomic_store(&e->count, 3);
		atomic_store(&e->given, 2);
	}
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), (int)max);
	ck_assert_int_eq(shoal_array_hold_for(a, &p), 0);
	/* One chunk swept (the caller's own line passed, not judged): 64
	 * dead dropped, with their given ones, and the first line taken. */
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), (int)(max - chunk + 1));
	ck_assert_uint_eq(atomic_load(&a->hdr->ledger[1].key), k);
	ck_assert_uint_eq(shoal__array_count_of(a, k), 1);
	ck_assert_uint_eq(shoal__array_given_of(a, k), 1);
	for (uint32_t i = 2; i <= chunk; i++)
		ck_assert_uint_eq(atomic_load(&a->hdr->ledger[i].given), 0);
	ck_assert_uint_eq(atomic_load(&a->hdr->ledger[chunk + 1].given), 2);
	/* A second one for it goes on its line, still no room needed. */
	ck_assert_int_eq(shoal_array_hold_for(a, &p), 0);
	ck_assert_uint_eq(shoal__array_count_of(a, k), 2);
	ck_assert_uint_eq(shoal__array_given_of(a, k), 2);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), (int)(max - chunk + 1));
	/* Once it is dead too, a reap leaves the creator alone. */
	kill(kid, SIGKILL);
	ck_assert_int_eq(t_wait(kid), 128 + SIGKILL);
	close(fds[1]);
	ck_assert_int_ge(shoal_reap(), 0);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 0), 1);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

/*
 * A process that cannot read /proc: a fresh child cannot tell who it is,
 * so no call that takes the ledger lock or a line can be made for it
 * (-EIO, nothing held); and hold_for, for a process whose stat is garbled,
 * cannot tell whether it lives (-EIO). Needs a mount namespace of its own,
 * so root (CI runs as root).
 */
START_TEST(unreadable_proc_is_eio)
{
	const char *name = t_name("eio"), *qn = t_name("eioq");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34);
	struct shoal_queue *q = make_queue(qn, 4);
	const char *h = handle_of(a);
	pid_t pid;

	ck_assert_msg(geteuid() == 0, "this test needs root for a private /proc");
	ck_assert_int_eq(shoal_queue_hold_array(q, a), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_array *b = NULL;

		if (t_private_proc() != 0)
			_exit(10);
		if (shoal_array_retain(a) != -EIO)
			_exit(1);
		if (shoal_array_attach(h, 0, &b) != -EIO || b)
			_exit(2);
		if (shoal_array_create(NULL, SHOAL_DTYPE_UINT8, 0, 2, shape34, NULL, &b) != -EIO || b)
			_exit(3);
		if (shoal_array_pin(a) != -EIO || shoal_array_unpin(a) != -EIO)
			_exit(4);
		if (shoal_queue_hold_array(q, a) != -EIO || shoal_queue_unhold_array(q, a) != -EIO)
			_exit(5);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 2);
	ck_assert_uint_eq(queue_count(a, q), 1);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct shoal_proc p = { .pid = 4242, .start_time = 7 };
		FILE *f;

		if (shoal_array_retain(a) != 0)  /* knows itself, holds one */
			_exit(10);
		if (t_private_proc() != 0)
			_exit(11);
		mkdir("/proc/4242", 0755);
		f = fopen("/proc/4242/stat", "w");
		fputs("4242 (x) R not numbers at all", f);
		fclose(f);
		if (shoal_array_hold_for(a, &p) != -EIO)
			_exit(1);
		if (shoal__array_count_of(a, shoal__proc_key(&p)) != 0 ||
		    shoal_array_refcount(a) != 3)
			_exit(2);
		_exit(0);
	}
	ck_assert_int_eq(t_wait(pid), 0);
	ck_assert_int_ge(shoal_reap(), 0);  /* the child's reference */
	ck_assert_int_eq(shoal_queue_unhold_array(q, a), 0);
	shoal_queue_detach(q);
	ck_assert_int_eq(shoal_queue_unlink(qn), 0);
	ck_assert_uint_eq(shoal_array_refcount(a), 1);
	ck_assert_int_eq(shoal_array_close(a), 1);
	ck_assert(!exists(name));
}
END_TEST

START_TEST(pin_and_holders_errors)
{
	const char *name = t_name("pinerr");
	struct shoal_array *a = make(name, SHOAL_DTYPE_UINT8, 2, shape34), *n = NULL, *b = NULL;
	struct shoal_array_holder h;

	ck_assert_int_eq(shoal_array_pin(NULL), -EINVAL);
	ck_assert_int_eq(shoal_array_unpin(NULL), -EINVAL);
	ck_assert_int_eq(shoal_array_holders(NULL, &h, 1), -EINVAL);
	ck_assert_int_eq(shoal_array_holders(a, NULL, 1), -EINVAL);
	ck_assert_int_eq(shoal_array_open(name, SHOAL_ARRAY_NOREF, &n), 0);
	ck_assert_int_eq(shoal_array_pin(n), -EINVAL);
	ck_assert_int_eq(shoal_array_unpin(n), -EINVAL);
	ck_assert_int_eq(shoal_array_unpin(a), -ENOENT);  /* no pin */
	ck_assert_int_eq(shoal_array_pin(a), 0);
	ck_assert_int_eq(shoal_array_unpin(a), 0);
	ck_assert_int_eq(shoal_array_unpin(a), -ENOENT);
	ck_assert_int_eq(shoal_array_open(name, 0, &b), 0);
	ck_assert_int_eq(shoal_array_close(b), 0);
	ck_assert_int_eq(shoal_array_release(a), 1);
	ck_assert_int_eq(shoal_array_pin(n), -EINVAL);
	ck_assert_int_eq(shoal_array_pin(a), -ENOENT);  /* freed */
	ck_assert_ptr_nonnull(strstr(shoal_errdetail(-ENOENT), "was freed"));
	ck_assert_int_eq(shoal_array_unpin(a), -ENOENT);
	shoal_array_close(n);
	shoal_array_close(a);
}
END_TEST

/* shoal_leaks(): a holder killed holding an array makes it a dead-holders
 * leak, with its creator and bytes; an array held by this live process is
 * an old reference only past the age asked; the reap takes the first. */
static int find_leak(const char *name, struct shoal_leak *out)
{
	struct shoal_leak v[64];
	int n = shoal_leaks(out ? 1 : 0, v, 64);

	ck_assert_int_ge(n, 0);
	for (int i = 0; i < n && i < 64; i++)
		if (strcmp(v[i].name, name) == 0) {
			if (out)
				*out = v[i];
			return v[i].reason;
		}
	return 0;
}

START_TEST(leaks_dead_holder_and_old_reference)
{
	const char *dead_name = t_name("leakdead"), *live_name = t_name("leaklive");
	size_t shape[1] = { 3 * 4096 };
	struct shoal_array *a = make(live_name, SHOAL_DTYPE_UINT8, 1, shape);
	struct shoal_leak l;
	pid_t pid;

	ck_assert_int_eq(shoal_leaks(0, NULL, 1), -EINVAL);
	ck_assert_int_ge(shoal_leaks(0, NULL, 0), 0);
	pid = fork();
	if (pid == 0) {
		struct shoal_array *b;

		if (shoal_array_create(dead_name, SHOAL_DTYPE_UINT8, 0, 1, shape, NULL, &b))
			_exit(1);
		memset(shoal_array_data(b), 1, 3 * 4096);
		kill(getpid(), SIGKILL);
	}
	ck_assert_int_eq(t_wait(pid), 128 + SIGKILL);
	ck_assert_int_eq(find_leak(dead_name, &l), SHOAL_LEAK_DEAD_HOLDERS);
	ck_assert_int_eq(l.creator.pid, pid);
	ck_assert(!l.creator_alive);
	ck_assert_uint_eq(l.references, 1);
	ck_assert_uint_ge(l.bytes, 3 * 4096);
	ck_assert_int_eq(l.holder.pid, 0);
	/* min_age 1 ns: this process and its array are older than that (a
	 * process's age is known to a clock tick: wait a few). */
	usleep(50000);
	ck_assert_int_eq(find_leak(live_name, &l), SHOAL_LEAK_OLD_REFERENCE);
	ck_assert_int_eq(l.holder.pid, getpid());
	ck_assert(l.creator_alive);
	/* min_age 0: no old references at all. */
	ck_assert_int_eq(find_leak(live_name, NULL), 0);
	ck_assert_int_ge(shoal_reap(), 1);
	ck_assert_int_eq(find_leak(dead_name, NULL), 0);
	ck_assert_int_ge(shoal_array_release(a), 0);
	shoal_array_close(a);
	ck_assert_int_eq(find_leak(live_name, NULL), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("array");
	TCase *tc = tcase_create("array");
	TCase *tp = tcase_create("processes");
	TCase *tl = tcase_create("locks");
	TCase *th;

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, create_attach_release);
	tcase_add_test(tc, every_dtype);
	tcase_add_test(tc, anonymous_names_are_short_and_unique);
	tcase_add_test(tc, create_errors);
	tcase_add_test(tc, bad_handles);
	tcase_add_test(tc, recycled_name_is_refused);
	tcase_add_test(tc, attach_after_free);
	tcase_add_test(tc, double_release);
	tcase_add_test(tc, readonly_attach_cannot_write);
	tcase_add_test(tc, corrupt_headers);
	tcase_add_test(tc, random_kind_headers_never_crash);
	tcase_add_test(tc, memory_returns);
	suite_add_tcase(s, tc);

	tcase_set_timeout(tp, 60);
	tcase_add_test(tp, fork_inherits_no_reference);
	tcase_add_test(tp, killed_holder_is_reaped);
	tcase_add_test(tp, last_live_release_sweeps_the_dead);
	tcase_add_test(tp, unreadable_proc_is_not_death);
	tcase_add_test(tp, all_holders_dead_reap_frees);
	tcase_add_test(tp, reap_removes_dead_creators_temp_files);
	tcase_add_test(tp, reap_dispatches_by_kind);
	tcase_add_test(tp, killed_inside_attach);
	tcase_add_test(tp, killed_inside_retain);
	tcase_add_loop_test(tp, killed_inside_release, 0, 4);
	tcase_add_test(tp, next_locker_repairs);
	tcase_add_test(tp, concurrent_holders_some_killed);
	tcase_add_test(tp, queue_holds_in_transit);
	tcase_add_test(tp, attach_from_without_transit_reference);
	tcase_add_test(tp, pin_is_not_reaped);
	tcase_add_test(tp, hold_for_dead_holder_is_reaped);
	tcase_add_test(tp, hold_for_errors);
	tcase_add_test(tp, hold_for_holder_attaches_and_releases);
	tcase_add_test(tp, hold_for_self);
	tcase_add_test(tp, given_over_count_is_read_as_none);
	tcase_add_test(tp, hold_for_giver_killed_after_commit);
	tcase_add_test(tp, ledger_full);
	tcase_add_test(tp, queue_keeps_array_alive);
	tcase_add_test(tp, queue_unlink_drops_references);
	tcase_add_test(tp, consumer_dies_before_attach);
	tcase_add_test(tp, queue_array_errors);
	tcase_add_test(tp, popped_handle_with_nul);
	tcase_add_test(tp, queue_unlink_frees_many);
	tcase_add_test(tp, reap_without_fds_keeps_queue_references);
	tcase_add_test(tp, system_refusals);
	suite_add_tcase(s, tp);

	th = tcase_create("holders");
	tcase_set_timeout(th, 120);
	tcase_add_test(th, thousands_of_holders);
	tcase_add_test(th, overflow_reserve_fails);
	tcase_add_test(th, full_shm_is_enospc_not_sigbus);
	tcase_add_test(th, full_of_dead_sweeps_in_bounded_holds);
	tcase_add_test(th, full_of_live_is_eusers_after_one_round);
	tcase_add_test(th, ovf_mark_past_reserved_pages);
	tcase_add_test(th, thousands_of_processes);
	tcase_add_test(th, killed_inside_overflow_line);
	tcase_add_test(th, queue_transfer_on_overflow_line);
	tcase_add_test(th, no_line_for_a_new_holder);
	tcase_add_test(th, counts_that_would_overflow);
	tcase_add_test(th, line_claimed_after_a_giver_died_mid_claim);
	tcase_add_test(th, hold_for_into_a_full_ledger_of_dead_givers);
	tcase_add_test(th, unreadable_proc_is_eio);
	tcase_add_test(th, pin_and_holders_errors);
	suite_add_tcase(s, th);

	tcase_set_timeout(tl, 120);
	tcase_add_loop_test(tl, hostile_lock_bytes, 0, LOCK_PATTERNS);
	tcase_add_test(tl, live_lock_holder_is_bounded);
	suite_add_tcase(s, tl);
	{
		TCase *tk = tcase_create("leaks");

		tcase_set_timeout(tk, 30);
		tcase_add_test(tk, leaks_dead_holder_and_old_reference);
		suite_add_tcase(s, tk);
	}
	return s;
}

int main(void)
{
	return t_run(suite());
}
