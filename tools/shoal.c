/*
 * shoal - look at and tidy up the shoal objects in their directory:
 * shoal_dir(), /dev/shm unless SHOAL_DIR names another.
 *
 *   shoal ls [--json]            every object: name, kind, size, references
 *                                per process, creator, stale or not
 *   shoal info [--json] OBJECT   one object in detail; OBJECT is a name,
 *                                its file name (shoal.NAME) or a handle
 *   shoal top [--once] [--json] [--interval S]
 *                                live view of processes and objects (top.c)
 *   shoal leaks [--json] [--age S]
 *                                what nobody will free (shoal_leaks())
 *   shoal rm NAME...             remove objects by name
 *   shoal gc [--json]            reap: drop dead holders' references, free
 *                                what nobody holds, remove dead creators'
 *                                temporary files
 *   shoal help | --help | --version
 *
 * Exit status: 0 success; 1 an object was missing, corrupt or could not be
 * removed (leaks: at least one leak found); 2 bad usage. Every object is
 * read as untrusted input.
 *
 * What the commands share (the walk, the facts of one object) is in
 * objects.c; top is top.c. What the tool knows of the library beyond the
 * public API is in internal.h: the common header of any object
 * (shoal__segment_peek), kind names, the temporary files' prefix, holder
 * keys and process keys. Queues and pool boards are read through their
 * observation calls; no kind's private layout is visible here.
 */
#include "objects.h"
#include "top.h"

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
	      "       shoal info [--json] NAME|shoal.NAME|HANDLE\n"
	      "       shoal top [--once] [--json] [--interval SECONDS]\n"
	      "       shoal leaks [--json] [--age SECONDS]\n"
	      "       shoal rm NAME...\n"
	      "       shoal gc [--json]\n"
	      "       shoal help | --help | --version\n",
	      f);
}

static const char *const reason_name[SHOAL_POOL_NREASONS] = {
	"tasks", "memory", "hard", "age", "died",
};

static const char *seat_state_name(int st)
{
	switch (st) {
	case SHOAL_POOL_SEAT_STARTING:
		return "starting";
	case SHOAL_POOL_SEAT_READY:
		return "ready";
	case SHOAL_POOL_SEAT_RETIRING:
		return "retiring";
	default:
		return "?";
	}
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
		jstr(stdout, t);
		printf("}");
	}
	printf("]");
}

/* Arrays whose ledgers hold references for the queue of @generation. */
static int arrays_held_by_queue(uint64_t generation, uint64_t *bytes)
{
	struct objs l;
	uint64_t key = shoal__holder_queue(generation);
	int n = 0;

	*bytes = 0;
	if (objs_read(&l))
		return -1;
	for (size_t i = 0; i < l.n; i++)
		for (int k = 0; k < l.v[i].nholders; k++)
			if (l.v[i].holders[k].key == key) {
				n++;
				*bytes += obj_size(&l.v[i]);
				break;
			}
	objs_free(&l);
	return n;
}

static void print_json(const struct obj *o, bool detail)
{
	printf("{\"name\":");
	jstr(stdout, o->name);
	printf(",\"kind\":\"%s\",\"size\":%" PRIu64 ",\"creator_pid\":%d,\"creator_alive\":%s,\"stale\":%s",
	       obj_kind(o), obj_size(o), (int)o->hdr.creator_pid, o->creator_alive ? "true" : "false",
	       o->stale ? "true" : "false");
	if (o->err) {
		printf(",\"error\":\"%s\",\"detail\":", shoal_strerror(o->err));
		jstr(stdout, obj_error(o));
	}
	if (o->arr) {
		printf(",\"refcount\":%" PRIu64 ",\"holders\":", shoal_array_refcount(o->arr));
		holders_json(o);
	}
	if (!o->err && (o->is_queue || o->is_pool))
		printf(",\"live\":%u,\"dead\":%u", o->live, o->dead);
	if (!o->err && o->is_queue) {
		const struct shoal_queue_stats *s = &o->qv.stats;

		printf(",\"capacity\":%" PRIu64 ",\"max_msg\":%" PRIu64 ",\"depth\":%" PRIu64
		       ",\"pushes\":%" PRIu64 ",\"pops\":%" PRIu64 ",\"redelivered\":%" PRIu64
		       ",\"dropped\":%" PRIu64 ",\"recoveries\":%" PRIu64 ",\"sleeps\":%" PRIu64
		       ",\"closed\":%s,\"participants\":[",
		       s->capacity, s->max_msg, s->depth, s->pushes, s->pops, s->redelivered, s->dropped,
		       s->recoveries, s->sleeps, o->qv.closed ? "true" : "false");
		for (int i = 0; i < o->nparts; i++)
			printf("%s{\"pid\":%d,\"alive\":%s}", i ? "," : "", (int)o->parts[i].pid,
			       o->parts[i].alive ? "true" : "false");
		printf("]");
		if (detail) {
			uint64_t bytes;
			int n = arrays_held_by_queue(o->hdr.generation, &bytes);

			printf(",\"arrays_held\":%d,\"arrays_held_bytes\":%" PRIu64, n, bytes);
		}
	}
	if (!o->err && o->is_pool) {
		const struct shoal_pool_view *v = &o->pv;

		printf(",\"supervisor_pid\":%d,\"supervisor_alive\":%s,\"seats\":%u,\"tasks_running\":%" PRIu64
		       ",\"tasks_done\":%" PRIu64 ",\"recycles\":{",
		       (int)v->supervisor.pid, v->supervisor_alive ? "true" : "false", v->seats,
		       v->tasks_running, v->tasks_done);
		for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
			printf("%s\"%s\":%" PRIu64, r ? "," : "", reason_name[r], v->recycles[r]);
		printf("},\"workers\":[");
		for (int i = 0; i < o->nworkers; i++) {
			const struct shoal_pool_worker_view *w = &o->workers[i];

			printf("%s{\"seat\":%u,\"position\":%d,\"pid\":%d,\"state\":\"%s\",\"alive\":%s"
			       ",\"tasks\":%" PRIu64 ",\"private_bytes\":%" PRIu64 ",\"recycles\":{",
			       i ? "," : "", w->seat, w->position, (int)w->pid, seat_state_name(w->state),
			       w->alive ? "true" : "false", w->tasks, w->private_bytes);
			for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
				printf("%s\"%s\":%" PRIu64, r ? "," : "", reason_name[r], w->recycles[r]);
			printf("}}");
		}
		printf("]");
	}
	if (detail && !o->err && !o->tmp) {
		printf(",\"generation\":\"%016" PRIx64 "\",\"total_size\":%" PRIu64
		       ",\"data_off\":%" PRIu64 ",\"data_size\":%" PRIu64 ",\"created_ns\":%" PRIu64
		       ",\"age_s\":%" PRIu64,
		       o->hdr.generation, o->hdr.total_size, o->hdr.data_off, o->hdr.data_size,
		       o->hdr.created_ns, obj_age_s(o));
		if (o->arr) {
			char h[SHOAL_HANDLE_MAX];

			shoal_array_handle(o->arr, h, sizeof(h));
			printf(",\"dtype\":\"%s\",\"itemsize\":%zu,\"shape\":[",
			       shoal_dtype_name(shoal_array_dtype(o->arr)), shoal_array_itemsize(o->arr));
			for (int i = 0; i < shoal_array_ndim(o->arr); i++)
				printf("%s%zu", i ? "," : "", shoal_array_shape(o->arr)[i]);
			printf("],\"freed\":%s,\"shared_memory\":%s,\"handle\":",
			       shoal_array_is_freed(o->arr) ? "true" : "false", o->shm ? "true" : "false");
			jstr(stdout, h);
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
	} else if (!o->err && (o->is_queue || o->is_pool)) {
		snprintf(refs, sizeof(refs), "%u live, %u dead", o->live, o->dead);
	}
	printf("%-32s %-8s %14" PRIu64 "  %-24s %8d%s  %s", o->name, obj_kind(o), obj_size(o), refs,
	       (int)o->hdr.creator_pid, o->creator_alive ? " " : "†", o->stale ? "stale" : "-");
	/* What is wrong with it, in words, at the end of its row. */
	if (o->err && !o->tmp)
		printf("  %s", obj_error(o));
	printf("\n");
}

static int cmd_ls(void)
{
	struct objs l;

	if (objs_read(&l))
		return 1;
	if (!json)
		printf("%-32s %-8s %14s  %-24s %9s  %s\n", "NAME", "KIND", "SIZE", "REFS (pid:count)",
		       "CREATOR", "STALE");
	for (size_t i = 0; i < l.n; i++)
		if (json)
			print_json(&l.v[i], false);
		else
			print_row(&l.v[i]);
	objs_free(&l);
	return 0;
}

static void info_process(const char *label, pid_t pid, bool alive)
{
	char cmd[128];

	proc_command(pid, cmd, sizeof(cmd));
	printf("%-11s pid %d%s  %s\n", label, (int)pid, alive ? "" : " (dead)", alive ? cmd : "");
}

static void info_text(const struct obj *o)
{
	time_t t = (time_t)(o->hdr.created_ns / 1000000000u);
	char when[64], hb[32];
	uint64_t age = obj_age_s(o);

	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
	printf("name        %s\nkind        %s%s\nsize        %" PRIu64 " bytes (%s)\n"
	       "generation  %016" PRIx64 "\n",
	       o->name, obj_kind(o), o->shm ? " (a shoal.SharedMemory: 1-d bytes its name holds)" : "",
	       obj_size(o), human_bytes(obj_size(o), hb, sizeof(hb)), o->hdr.generation);
	info_process("creator", o->hdr.creator_pid, o->creator_alive);
	printf("created     %s (%" PRIu64 " s ago)\n", when, age);
	if (o->arr) {
		char h[SHOAL_HANDLE_MAX];

		shoal_array_handle(o->arr, h, sizeof(h));
		printf("dtype       %s (%zu bytes)\nshape       (", shoal_dtype_name(shoal_array_dtype(o->arr)),
		       shoal_array_itemsize(o->arr));
		for (int i = 0; i < shoal_array_ndim(o->arr); i++)
			printf("%s%zu", i ? ", " : "", shoal_array_shape(o->arr)[i]);
		printf("%s)\nstate       %s\nhandle      %s\nrefcount    %" PRIu64 "\n",
		       shoal_array_ndim(o->arr) == 1 ? "," : "",
		       shoal_array_is_freed(o->arr) ? "freed" : "alive", h, shoal_array_refcount(o->arr));
		printf("holders     %d of at most %d (%u live, %u dead processes)\n", o->nholders,
		       SHOAL_ARRAY_HOLDERS_MAX, o->live, o->dead);
		for (int i = 0; i < o->nholders; i++) {
			const struct shoal_array_holder *hd = &o->holders[i];
			char txt[64], cmd[96] = "";

			holder_text(hd, txt, sizeof(txt));
			if (!(hd->key & SHOAL__HOLDER_NONPROC) && hd->alive)
				proc_command(hd->pid, cmd, sizeof(cmd));
			printf("holder      %-24s %s\n", txt, cmd);
		}
	}
	if (o->is_queue) {
		const struct shoal_queue_stats *s = &o->qv.stats;
		uint64_t bytes;
		int held = arrays_held_by_queue(o->hdr.generation, &bytes);

		printf("capacity    %" PRIu64 " messages of at most %" PRIu64 " bytes\n"
		       "depth       %" PRIu64 " (%" PRIu64 "%% full)\n"
		       "pushes      %" PRIu64 "\npops        %" PRIu64 "\nredelivered %" PRIu64 "\n"
		       "dropped     %" PRIu64 "\nrecoveries  %" PRIu64 "\nsleeps      %" PRIu64 "\n"
		       "closed      %s\n",
		       s->capacity, s->max_msg, s->depth, s->capacity ? 100 * s->depth / s->capacity : 0,
		       s->pushes, s->pops, s->redelivered, s->dropped, s->recoveries, s->sleeps,
		       o->qv.closed ? "yes" : "no");
		if (held >= 0)
			printf("arrays held %d (%s)\n", held, human_bytes(bytes, hb, sizeof(hb)));
		printf("participants %u live, %u dead, of %u entries\n", o->qv.live, o->qv.dead,
		       o->qv.table);
		for (int i = 0; i < o->nparts; i++)
			info_process("participant", o->parts[i].pid, o->parts[i].alive);
	}
	if (o->is_pool) {
		const struct shoal_pool_view *v = &o->pv;

		info_process("supervisor", v->supervisor.pid, v->supervisor_alive);
		printf("seats       %u (%u cells of %" PRIu64 " bytes each way)\n"
		       "workers     %u (%u live, %u dead)\ntasks       %" PRIu64 " running, %" PRIu64
		       " done by the current workers\nrecycles   ",
		       v->seats, v->prefetch, v->inline_bytes, v->workers, o->live, o->dead,
		       v->tasks_running, v->tasks_done);
		for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
			printf(" %s %" PRIu64, reason_name[r], v->recycles[r]);
		printf("%s\n", v->published ? "" : " (not published by this board's library)");
		for (int i = 0; i < o->nworkers; i++) {
			const struct shoal_pool_worker_view *w = &o->workers[i];

			printf("worker      seat %u position %d pid %d %s%s, %" PRIu64 " tasks, %s private,"
			       " recycled:",
			       w->seat, w->position, (int)w->pid, seat_state_name(w->state),
			       w->alive ? "" : " (dead)", w->tasks,
			       human_bytes(w->private_bytes, hb, sizeof(hb)));
			for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
				printf(" %s %" PRIu64, reason_name[r], w->recycles[r]);
			printf("\n");
		}
	}
	printf("stale       %s\n", o->stale ? "yes (reclaim it: shoal gc)" : "no");
}

static int cmd_info(const char *arg)
{
	struct obj o;
	const char *why;
	uint64_t gen;
	int rc;

	memset(&o, 0, sizeof(o));
	if (obj_resolve(arg, o.name, &gen, &why) != 0) {
		fprintf(stderr, "shoal: %s: %s\n", arg, why);
		return 1;
	}
	obj_probe(&o);
	/* "shoal.x" is the file of x, unless only an object named "shoal.x"
	 * exists. */
	if (o.err == -ENOENT && !gen && strncmp(arg, SHOAL_PREFIX, strlen(SHOAL_PREFIX)) == 0 &&
	    shoal__name_check(arg) == 0) {
		obj_done(&o);
		memset(&o, 0, sizeof(o));
		snprintf(o.name, sizeof(o.name), "%s", arg);
		obj_probe(&o);
	}
	if (o.err == -ENOENT) {
		fprintf(stderr, "shoal: %s: no such object\n", arg);
		obj_done(&o);
		return 1;
	}
	if (gen && !o.err && (o.hdr.kind != SHOAL__KIND_ARRAY || o.hdr.generation != gen)) {
		fprintf(stderr,
			"shoal: %s: the handle's array is gone: '%s' is now another object "
			"(%s, generation %016" PRIx64 ")\n",
			arg, o.name, obj_kind(&o), o.hdr.generation);
		obj_done(&o);
		return 1;
	}
	if (json)
		print_json(&o, true);
	else if (o.err)
		printf("name        %s\nkind        %s\nerror       %s\n", o.name, obj_kind(&o), obj_error(&o));
	else
		info_text(&o);
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

static const char *const leak_reason[] = {
	[SHOAL_LEAK_DEAD_HOLDERS] = "dead-holders",
	[SHOAL_LEAK_UNREAD_QUEUE] = "unread-queue",
	[SHOAL_LEAK_OLD_REFERENCE] = "old-reference",
	[SHOAL_LEAK_DEAD_POOL] = "dead-pool",
	[SHOAL_LEAK_DEAD_CREATE] = "dead-create",
};

static const char *const leak_fix[] = {
	[SHOAL_LEAK_DEAD_HOLDERS] = "shoal gc",
	[SHOAL_LEAK_UNREAD_QUEUE] = "unlink the queue",
	[SHOAL_LEAK_OLD_REFERENCE] = "release it in that process",
	[SHOAL_LEAK_DEAD_POOL] = "shoal gc",
	[SHOAL_LEAK_DEAD_CREATE] = "shoal gc",
};

/* Exit status: 0 no leak, 1 leaks found, 3 the directory unreadable. */
static int cmd_leaks(double age_s)
{
	struct shoal_leak *v = NULL;
	uint64_t total = 0;
	char tb[32];
	int n, cap = 0;

	/* The directory may change between the count and the fill. */
	for (int tries = 0;; tries++) {
		n = shoal_leaks((uint64_t)(age_s * 1e9), v, (size_t)cap);
		if (n < 0 || n <= cap || tries == 3)
			break;
		free(v);
		cap = n + 16;
		v = calloc((size_t)cap, sizeof(*v));
		if (!v) {
			n = -ENOMEM;
			break;
		}
	}
	if (n < 0) {
		fprintf(stderr, "shoal: leaks: %s\n",
			shoal_errdetail(n)[0] ? shoal_errdetail(n) : shoal_strerror(n));
		free(v);
		return 3;
	}
	if (n > cap)
		n = cap;
	if (!json && n)
		printf("%-32s %-13s %10s %6s %8s  %-28s %s\n", "OBJECT", "WHY", "FREES", "AGE", "CREATOR",
		       "CREATED BY", "HOLDER / FIX");
	for (int i = 0; i < n; i++) {
		const struct shoal_leak *l = &v[i];
		const char *why = l->reason >= 1 && l->reason <= SHOAL_LEAK_DEAD_CREATE ?
					  leak_reason[l->reason] : "?";
		const char *fix = l->reason >= 1 && l->reason <= SHOAL_LEAK_DEAD_CREATE ?
					  leak_fix[l->reason] : "?";
		char cmd[96] = "", hcmd[96] = "", hb[32];

		total += l->bytes;
		if (l->creator_alive)
			proc_command(l->creator.pid, cmd, sizeof(cmd));
		if (l->holder.pid)
			proc_command(l->holder.pid, hcmd, sizeof(hcmd));
		if (json) {
			printf("{\"name\":");
			jstr(stdout, l->name);
			printf(",\"reason\":\"%s\",\"bytes\":%" PRIu64 ",\"age_s\":%" PRIu64
			       ",\"creator_pid\":%d,\"creator_alive\":%s,\"creator_command\":",
			       why, l->bytes, l->age_ns / 1000000000u, (int)l->creator.pid,
			       l->creator_alive ? "true" : "false");
			jstr(stdout, cmd);
			printf(",\"references\":%u,\"holder_pid\":%d,\"holder_command\":", l->references,
			       (int)l->holder.pid);
			jstr(stdout, hcmd);
			printf(",\"fix\":");
			jstr(stdout, fix);
			printf("}\n");
			continue;
		}
		printf("%-32s %-13s %10s %5" PRIu64 "s %7d%s  %-28.28s ", l->name, why,
		       human_bytes(l->bytes, hb, sizeof(hb)), l->age_ns / 1000000000u, (int)l->creator.pid,
		       l->creator_alive ? " " : "†", l->creator_alive ? cmd : "(dead)");
		if (l->holder.pid)
			printf("pid %d %s, %u ref%s\n", (int)l->holder.pid, hcmd, l->references,
			       l->references == 1 ? "" : "s");
		else
			printf("%s\n", fix);
	}
	if (!json)
		printf("%d leak%s, %s to reclaim\n", n, n == 1 ? "" : "s", human_bytes(total, tb, sizeof(tb)));
	free(v);
	return n ? 1 : 0;
}

/* A number of seconds, > 0 (fractions allowed): 0 or -1. */
static int seconds(const char *s, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v > 0) || v > 1e9)
		return -1;
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	const char *cmd;
	char *args[64];
	int nargs = 0;
	bool once = false, have_age = false;
	double interval = 1.0, age = 0;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	cmd = argv[1];
	if (strcmp(cmd, "--version") == 0) {
		printf("shoal %s (libshoal %s)\n", SHOAL_VERSION_STRING, shoal_version());
		return 0;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--once") == 0) {
			once = true;
		} else if ((strcmp(argv[i], "--interval") == 0 || strcmp(argv[i], "--age") == 0) &&
			   i + 1 < argc) {
			bool is_age = argv[i][2] == 'a';

			/* A refresh at most every 0.1 s, at least once a day. */
			if (seconds(argv[i + 1], is_age ? &age : &interval) ||
			    (!is_age && (interval < 0.1 || interval > 86400))) {
				fprintf(stderr, "shoal: %s wants a number of seconds%s, not '%s'\n",
					argv[i], is_age ? "" : " from 0.1 to 86400", argv[i + 1]);
				return 2;
			}
			have_age |= is_age;
			i++;
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
	/* Options only where they mean something. */
	if ((once || interval != 1.0) && strcmp(cmd, "top") != 0) {
		usage(stderr);
		return 2;
	}
	if (have_age && strcmp(cmd, "leaks") != 0) {
		usage(stderr);
		return 2;
	}
	if (strcmp(cmd, "ls") == 0 && nargs == 0)
		return cmd_ls();
	if (strcmp(cmd, "info") == 0 && nargs == 1)
		return cmd_info(args[0]);
	if (strcmp(cmd, "top") == 0 && nargs == 0)
		return top_main(once, json, interval);
	if (strcmp(cmd, "leaks") == 0 && nargs == 0)
		return cmd_leaks(have_age ? age : 3600);
	if (strcmp(cmd, "rm") == 0 && nargs >= 1 && !json)
		return cmd_rm(nargs, args);
	if (strcmp(cmd, "gc") == 0 && nargs == 0)
		return cmd_gc();
	usage(stderr);
	return 2;
}
