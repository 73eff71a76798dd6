/*
 * shoal - look at and tidy up the shoal objects in their directory:
 * shoal_dir(), /dev/shm unless SHOAL_DIR names another.
 *
 *   shoal ls [--json]            every object: name, kind, size, references
 *                                per process, creator, stale or not
 *   shoal info [--json] NAME     one object in detail
 *   shoal rm NAME...             remove objects by name
 *   shoal gc [--json]            reap: drop dead holders' references, free
 *                                what nobody holds, remove dead creators'
 *                                temporary files
 *
 * Exit status: 0 success; 1 an object was missing, corrupt or could not be
 * removed; 2 bad usage. Every object is read as untrusted input.
 *
 * What it may know of the library beyond the public API is in internal.h:
 * the common header of any object (shoal__segment_peek, the same checks as
 * an open), kind names, the temporary files' prefix, holder keys and
 * process keys. Arrays are read through the public API; no kind's private
 * layout is visible here.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool json;

static void usage(FILE *f)
{
	fputs("usage: shoal ls [--json]\n"
	      "       shoal info [--json] NAME\n"
	      "       shoal rm NAME...\n"
	      "       shoal gc [--json]\n",
	      f);
}

/* A JSON string; names are printable ASCII, but may hold '"' and '\'. */
static void jstr(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s < 0x20)
			printf("\\u%04x", (unsigned char)*s);
		else
			putchar(*s);
	}
	putchar('"');
}

struct obj {
	char name[SHOAL_NAME_MAX + 1];
	int err;                     /* 0, or why it could not be opened */
	bool tmp;                    /* a creator's temporary file */
	struct shoal__hdr hdr;       /* valid when !err && !tmp */
	struct shoal_array *arr;     /* arrays only, no reference taken */
	struct shoal_array_holder *holders; /* all of them (up to SHOAL_ARRAY_HOLDERS_MAX) */
	int nholders;
	bool creator_alive;
	bool stale;
};

/* Read @name's common header, whatever its kind; open it too if an array. */
static void probe(struct obj *o)
{
	struct shoal_proc p;

	o->err = shoal__segment_peek(o->name, &o->hdr);
	if (o->err)
		return;
	p.pid = o->hdr.creator_pid;
	p.start_time = o->hdr.creator_start;
	o->creator_alive = shoal_proc_is_alive(&p);
	/* A pool's task board is its supervisor's, the creator: stale once that
	 * is certainly dead, as shoal_reap() judges it. */
	if (o->hdr.kind == SHOAL__KIND_POOL)
		o->stale = shoal__key_dead(shoal__proc_key(&p));
	if (o->hdr.kind == SHOAL__KIND_ARRAY) {
		o->err = shoal_array_open(o->name, SHOAL_ARRAY_NOREF, &o->arr);
		if (o->err)
			return;
		/* Every line, overflow included: a dead holder anywhere makes
		 * the array stale. The ledger may grow between the two calls;
		 * what is listed is then a snapshot of the first ones. */
		o->nholders = shoal_array_holders(o->arr, NULL, 0);
		if (o->nholders > 0) {
			o->holders = calloc((size_t)o->nholders, sizeof(*o->holders));
			if (!o->holders) {
				o->err = -ENOMEM;
				return;
			}
			int got = shoal_array_holders(o->arr, o->holders, (size_t)o->nholders);

			if (got < 0) {
				o->err = got;
				return;
			}
			/* The count, which may now exceed what was allocated. */
			if (got < o->nholders)
				o->nholders = got;
		}
		o->stale = shoal_array_is_freed(o->arr) || o->nholders == 0;
		for (int i = 0; i < o->nholders; i++)
			o->stale |= !o->holders[i].alive;
	}
}

static void probe_tmp(struct obj *o, const char *file)
{
	struct shoal_proc p;
	long pid = strtol(file + strlen(SHOAL__TMP_PREFIX), NULL, 10);

	snprintf(o->name, sizeof(o->name), "%s", file + strlen(SHOAL_PREFIX));
	o->tmp = true;
	o->hdr.creator_pid = (int32_t)pid;
	o->creator_alive = pid > 0 && shoal_proc_get((pid_t)pid, &p) == 0;
	o->stale = !o->creator_alive;
}

static void obj_done(struct obj *o)
{
	shoal_array_close(o->arr);
	o->arr = NULL;
	free(o->holders);
	o->holders = NULL;
}

static const char *kind_of(const struct obj *o)
{
	if (o->tmp)
		return "tmp";
	if (o->err)
		return "corrupt";
	return shoal__kind_name(o->hdr.kind);
}

static void holder_text(const struct shoal_array_holder *h, char *buf, size_t cap)
{
	uint64_t kind = shoal__holder_kind_of(h->key);

	if (!(h->key & SHOAL__HOLDER_NONPROC))
		snprintf(buf, cap, "%d:%u%s", (int)h->pid, h->count, h->alive ? "" : "(dead)");
	else if (kind == SHOAL__HOLDER_QUEUE)
		snprintf(buf, cap, "queue-%015" PRIx64 ":%u", h->key & SHOAL__HOLDER_ID_MASK, h->count);
	else if (kind == SHOAL__HOLDER_PIN)
		snprintf(buf, cap, "name:%u", h->count);
	else
		snprintf(buf, cap, "other:%u", h->count);
}

static void holders_json(const struct obj *o)
{
	printf("[");
	for (int i = 0; i < o->nholders; i++) {
		const struct shoal_array_holder *h = &o->holders[i];
		char t[64];

		holder_text(h, t, sizeof(t));
		printf("%s{\"key\":\"%016" PRIx64 "\",\"pid\":%d,\"count\":%u,\"alive\":%s,\"text\":", i ? "," : "",
		       h->key, (int)h->pid, h->count, h->alive ? "true" : "false");
		jstr(t);
		printf("}");
	}
	printf("]");
}

static uint64_t size_of(const struct obj *o)
{
	if (o->arr)
		return shoal_array_nbytes(o->arr);
	return o->err || o->tmp ? 0 : o->hdr.data_size;
}

static void print_json(const struct obj *o, bool detail)
{
	printf("{\"name\":");
	jstr(o->name);
	printf(",\"kind\":\"%s\",\"size\":%" PRIu64 ",\"creator_pid\":%d,\"creator_alive\":%s,\"stale\":%s",
	       kind_of(o), size_of(o), (int)o->hdr.creator_pid, o->creator_alive ? "true" : "false",
	       o->stale ? "true" : "false");
	if (o->err)
		printf(",\"error\":\"%s\"", shoal_strerror(o->err));
	if (o->arr) {
		printf(",\"refcount\":%" PRIu64 ",\"holders\":", shoal_array_refcount(o->arr));
		holders_json(o);
	}
	if (detail && !o->err && !o->tmp) {
		printf(",\"generation\":\"%016" PRIx64 "\",\"total_size\":%" PRIu64
		       ",\"data_off\":%" PRIu64 ",\"data_size\":%" PRIu64 ",\"created_ns\":%" PRIu64,
		       o->hdr.generation, o->hdr.total_size, o->hdr.data_off, o->hdr.data_size,
		       o->hdr.created_ns);
		if (o->arr) {
			char h[SHOAL_HANDLE_MAX];

			shoal_array_handle(o->arr, h, sizeof(h));
			printf(",\"dtype\":\"%s\",\"itemsize\":%zu,\"shape\":[",
			       shoal_dtype_name(shoal_array_dtype(o->arr)), shoal_array_itemsize(o->arr));
			for (int i = 0; i < shoal_array_ndim(o->arr); i++)
				printf("%s%zu", i ? "," : "", shoal_array_shape(o->arr)[i]);
			printf("],\"freed\":%s,\"handle\":", shoal_array_is_freed(o->arr) ? "true" : "false");
			jstr(h);
		}
	}
	printf("}\n");
}

static void print_row(const struct obj *o)
{
	char refs[512] = "-";

	if (o->arr) {
		size_t len = 0;

		refs[0] = '\0';
		for (int i = 0; i < o->nholders; i++) {
			char t[64];

			if (len >= sizeof(refs) - 96) {
				/* A row stays a row: the rest is counted. */
				snprintf(refs + len, sizeof(refs) - len, ",+%d more", o->nholders - i);
				break;
			}
			holder_text(&o->holders[i], t, sizeof(t));
			len += (size_t)snprintf(refs + len, sizeof(refs) - len, "%s%s", i ? "," : "", t);
		}
		if (!o->nholders)
			strcpy(refs, "none");
	}
	printf("%-32s %-8s %14" PRIu64 "  %-24s %8d%s  %s\n", o->name, kind_of(o), size_of(o), refs,
	       (int)o->hdr.creator_pid, o->creator_alive ? " " : "†", o->stale ? "stale" : "-");
}

static int cmd_ls(void)
{
	const char *dir;
	struct dirent *de;
	DIR *d;
	int rc = shoal_dir(&dir);

	if (rc) {
		fprintf(stderr, "shoal: %s\n", shoal_errdetail(rc));
		return 1;
	}
	d = opendir(dir);
	if (!d) {
		fprintf(stderr, "shoal: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	if (!json)
		printf("%-32s %-8s %14s  %-24s %9s  %s\n", "NAME", "KIND", "SIZE", "REFS (pid:count)",
		       "CREATOR", "STALE");
	while ((de = readdir(d)) != NULL) {
		struct obj o;

		memset(&o, 0, sizeof(o));
		if (strncmp(de->d_name, SHOAL__TMP_PREFIX, strlen(SHOAL__TMP_PREFIX)) == 0) {
			probe_tmp(&o, de->d_name);
		} else if (strncmp(de->d_name, SHOAL_PREFIX, strlen(SHOAL_PREFIX)) == 0 &&
			   shoal__name_check(de->d_name + strlen(SHOAL_PREFIX)) == 0) {
			snprintf(o.name, sizeof(o.name), "%s", de->d_name + strlen(SHOAL_PREFIX));
			probe(&o);
		} else {
			continue;
		}
		if (json)
			print_json(&o, false);
		else
			print_row(&o);
		obj_done(&o);
	}
	closedir(d);
	return 0;
}

static int cmd_info(const char *name)
{
	struct obj o;
	int rc;

	memset(&o, 0, sizeof(o));
	if (shoal__name_check(name) != 0) {
		fprintf(stderr, "shoal: %s: not a valid name\n", name);
		return 1;
	}
	snprintf(o.name, sizeof(o.name), "%s", name);
	probe(&o);
	if (o.err == -ENOENT) {
		fprintf(stderr, "shoal: %s: no such object\n", name);
		return 1;
	}
	if (json) {
		print_json(&o, true);
	} else if (o.err) {
		printf("name       %s\nerror      %s\n", name, shoal_strerror(o.err));
	} else {
		time_t t = (time_t)(o.hdr.created_ns / 1000000000u);
		char when[64];

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
		printf("name       %s\nkind       %s\nsize       %" PRIu64 " bytes\n"
		       "generation %016" PRIx64 "\ncreator    pid %d (%s)\ncreated    %s\n",
		       name, kind_of(&o), size_of(&o), o.hdr.generation, (int)o.hdr.creator_pid,
		       o.creator_alive ? "running" : "gone", when);
		if (o.arr) {
			char h[SHOAL_HANDLE_MAX];

			shoal_array_handle(o.arr, h, sizeof(h));
			printf("dtype      %s (%zu bytes)\nshape      (", shoal_dtype_name(shoal_array_dtype(o.arr)),
			       shoal_array_itemsize(o.arr));
			for (int i = 0; i < shoal_array_ndim(o.arr); i++)
				printf("%s%zu", i ? ", " : "", shoal_array_shape(o.arr)[i]);
			printf("%s)\nstate      %s\nhandle     %s\nrefcount   %" PRIu64 "\n",
			       shoal_array_ndim(o.arr) == 1 ? "," : "",
			       shoal_array_is_freed(o.arr) ? "freed" : "alive", h, shoal_array_refcount(o.arr));
			printf("holders    %d of at most %d\n", o.nholders, SHOAL_ARRAY_HOLDERS_MAX);
			for (int i = 0; i < o.nholders; i++) {
				char txt[64];

				holder_text(&o.holders[i], txt, sizeof(txt));
				printf("holder     %s\n", txt);
			}
		}
		printf("stale      %s\n", o.stale ? "yes" : "no");
	}
	rc = o.err ? 1 : 0;
	obj_done(&o);
	return rc;
}

static int cmd_rm(int argc, char **argv)
{
	int status = 0;

	for (int i = 0; i < argc; i++) {
		int rc = shoal_unlink(argv[i]);

		if (rc) {
			fprintf(stderr, "shoal: rm %s: %s\n", argv[i], shoal_strerror(rc));
			status = 1;
		}
	}
	return status;
}

static int cmd_gc(void)
{
	int n = shoal_reap();

	if (n < 0) {
		fprintf(stderr, "shoal: gc: %s\n", shoal_strerror(n));
		return 1;
	}
	if (json)
		printf("{\"removed\":%d}\n", n);
	else
		printf("removed %d object%s\n", n, n == 1 ? "" : "s");
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;
	char *args[64];
	int nargs = 0;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-' && argv[i][1] == '-') {
			fprintf(stderr, "shoal: unknown option %s\n", argv[i]);
			return 2;
		} else if (nargs < 64) {
			args[nargs++] = argv[i];
		} else {
			fprintf(stderr, "shoal: too many arguments\n");
			return 2;
		}
	}
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(cmd, "ls") == 0 && nargs == 0)
		return cmd_ls();
	if (strcmp(cmd, "info") == 0 && nargs == 1)
		return cmd_info(args[0]);
	if (strcmp(cmd, "rm") == 0 && nargs >= 1 && !json)
		return cmd_rm(nargs, args);
	if (strcmp(cmd, "gc") == 0 && nargs == 0)
		return cmd_gc();
	usage(stderr);
	return 2;
}
