/*
 * top.c - `shoal top`: who holds shoal objects and what they cost, live.
 *
 * Each refresh walks the objects' directory once (objects.c: the common
 * header of every object, an array's ledger, a queue's or a pool board's
 * observation call; nothing is joined or changed), turns what the objects
 * say about their holders into a table of processes (array ledger lines,
 * queue participants, pool supervisors and workers, the creators of plain
 * segments), and reads each live process's memory once
 * (shoal_memstat(SHOAL_MEMSTAT_SMAPS): anonymous + swap, PSS, shared
 * memory mapped). Rates are differences of a queue's counters between two
 * refreshes, so the first frame has none.
 *
 *   objs_read() -> holder tuples (pid, object) -> sort -> processes
 *               -> shoal_memstat() per process -> frame (ANSI or JSON)
 *
 * The terminal: raw input (no echo, no line buffering; signals kept), the
 * alternate screen and a hidden cursor while it runs; all restored on 'q',
 * on SIGINT, SIGTERM or SIGHUP, and at any exit. Not a terminal, or
 * --once: plain text, no control sequences. What a refresh costs is
 * measured in bench/top.sh and shown in the header (docs/observe.md).
 */
#include "top.h"
#include "objects.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

/* ---- the terminal ---------------------------------------------------------- */

static struct termios saved_tio, raw_tio;
static const char leave_screen[] = "\x1b[0m\x1b[?25h\x1b[?1049l";
static const char enter_screen[] = "\x1b[?1049h\x1b[?25l\x1b[H\x1b[2J";
static bool tio_saved, screen_on;
static volatile sig_atomic_t quit_signal;

static void term_restore(void)
{
	if (screen_on) {
		/* Show the cursor, leave the alternate screen. */
		fputs(leave_screen, stdout);
		fflush(stdout);
		screen_on = false;
	}
	if (tio_saved) {
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tio);
		tio_saved = false;
	}
}

static void on_signal(int sig)
{
	quit_signal = sig;
}


/* Ctrl-Z: give the shell its terminal back (only async-signal-safe calls:
 * tcsetattr, write, raise), stop; on SIGCONT take it again. */
static void on_stop(int sig)
{
	int saved = errno;

	(void)sig;
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tio);
	if (screen_on && write(STDOUT_FILENO, leave_screen, sizeof(leave_screen) - 1) < 0)
		saved = errno;
	signal(SIGTSTP, SIG_DFL);
	raise(SIGTSTP);
	errno = saved;
}

static void on_cont(int sig)
{
	struct sigaction sa;
	int saved = errno;

	(void)sig;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTSTP, &sa, NULL);
	if (tio_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &raw_tio);
	if (screen_on && write(STDOUT_FILENO, enter_screen, sizeof(enter_screen) - 1) < 0)
		saved = errno;
	errno = saved;
}

/*
 * The terminal is given back on every way out: q, exit (atexit), SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT (each ends the loop), a reader gone (SIGPIPE
 * ignored: the write fails and the loop ends), and across Ctrl-Z. Raw
 * input only when both ends are a terminal.
 */
static void term_setup(bool screen)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	atexit(term_restore);
	if (screen && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved_tio) == 0) {
		raw_tio = saved_tio;
		raw_tio.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
		raw_tio.c_cc[VMIN] = 0;
		raw_tio.c_cc[VTIME] = 0;
		if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw_tio) == 0)
			tio_saved = true;
	}
	if (!screen)
		return;
	fputs(enter_screen, stdout);
	fflush(stdout);
	screen_on = true;
	sa.sa_handler = on_stop;
	sigaction(SIGTSTP, &sa, NULL);
	sa.sa_handler = on_cont;
	sigaction(SIGCONT, &sa, NULL);
}

static void term_size(int *rows, int *cols)
{
	struct winsize ws;

	*rows = 24;
	*cols = 80;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row && ws.ws_col) {
		*rows = ws.ws_row;
		*cols = ws.ws_col;
	}
}

/* ---- one refresh -------------------------------------------------------------- */

struct tproc {
	pid_t pid;
	char cmd[96];
	uint32_t arrays, queues, pools, segments;
	uint64_t array_bytes;
	struct shoal_memstat m;
	int mem_err;
};

/* A process holding an object: one per (process, object). */
struct tuple {
	pid_t pid;
	uint32_t obj;
};

/* A queue's counters at the previous refresh, for rates. */
struct qprev {
	uint64_t generation, pushes, pops;
};

struct frame {
	struct objs l;
	struct tproc *procs;
	size_t nprocs;
	double *push_rate, *pop_rate; /* per object; < 0: unknown */
	uint64_t total_bytes, stale_bytes;
	size_t nstale;
	double wall_ms, cpu_ms;       /* what building it cost */
	double every_s;               /* the wait before the next */
};

static struct qprev *prev;
static size_t nprev;
static uint64_t prev_ns;

static int by_pid(const void *a, const void *b)
{
	const struct tuple *x = a, *y = b;

	if (x->pid != y->pid)
		return x->pid < y->pid ? -1 : 1;
	return x->obj < y->obj ? -1 : x->obj > y->obj;
}

static int by_gen(const void *a, const void *b)
{
	const struct qprev *x = a, *y = b;

	return x->generation < y->generation ? -1 : x->generation > y->generation;
}

static int add_tuple(struct tuple **v, size_t *n, size_t *cap, pid_t pid, size_t obj)
{
	if (pid <= 0)
		return 0;
	if (*n == *cap) {
		size_t c = *cap ? 2 * *cap : 256;
		struct tuple *t = realloc(*v, c * sizeof(*t));

		if (!t)
			return -ENOMEM;
		*v = t;
		*cap = c;
	}
	(*v)[*n].pid = pid;
	(*v)[(*n)++].obj = (uint32_t)obj;
	return 0;
}

/*
 * PSS comes from smaps_rollup, for which the kernel walks the process's
 * page tables: with thousands of arrays mapped it costs milliseconds a
 * process, most of a refresh (bench/top.sh). PSS moves slowly, so the
 * live view reads it once every PSS_FRAMES refreshes, and at most every
 * PSS_NS, per process (keyed by pid and start time: a reused pid is
 * another process); private and shared memory come from /proc/PID/status
 * (kernel counters, microseconds) on every refresh.
 */
#define PSS_NS 10000000000ull
#define PSS_FRAMES 10u
struct pss_entry {
	struct shoal_proc id;
	uint64_t pss, uss, private_dirty, swap_pss, at_ns, at_frame;
	bool seen;
};
static uint64_t frame_no;
static struct pss_entry *pss_cache;
static size_t npss, pss_cap;
static bool pss_always; /* --once: one frame, read it all */

static int memstat(pid_t pid, struct shoal_memstat *m)
{
	struct shoal_proc id;
	struct pss_entry *e = NULL;
	uint64_t now = shoal__now_ns();
	int rc;

	if (shoal_proc_get(pid, &id))
		return -ESRCH;
	for (size_t i = 0; i < npss && !pss_always; i++)
		if (pss_cache[i].id.pid == id.pid && pss_cache[i].id.start_time == id.start_time) {
			e = &pss_cache[i];
			break;
		}
	if (e && (now - e->at_ns < PSS_NS || frame_no - e->at_frame < PSS_FRAMES)) {
		rc = shoal_memstat(pid, 0, m);
		if (rc == 0) {
			m->pss = e->pss;
			m->uss = e->uss;
			m->private_dirty = e->private_dirty;
			m->swap_pss = e->swap_pss;
			m->flags |= SHOAL_MEMSTAT_SMAPS;
		}
		e->seen = true;
		return rc;
	}
	rc = shoal_memstat(pid, SHOAL_MEMSTAT_SMAPS, m);
	/* Another user's process: its smaps_rollup is closed to us. */
	if (rc == -EACCES || rc == -EPERM)
		return shoal_memstat(pid, 0, m);
	if (rc)
		return rc;
	if (!e) {
		if (npss == pss_cap) {
			size_t c = pss_cap ? 2 * pss_cap : 64;
			struct pss_entry *v = realloc(pss_cache, c * sizeof(*v));

			if (!v)
				return 0;
			pss_cache = v;
			pss_cap = c;
		}
		e = &pss_cache[npss++];
		e->id = id;
	}
	e->pss = m->pss;
	e->uss = m->uss;
	e->private_dirty = m->private_dirty;
	e->swap_pss = m->swap_pss;
	e->at_ns = now;
	e->at_frame = frame_no;
	e->seen = true;
	return 0;
}

/* Forget the processes this refresh did not see. */
static void pss_cache_trim(uint64_t now)
{
	size_t k = 0;

	(void)now;
	for (size_t i = 0; i < npss; i++)
		if (pss_cache[i].seen) {
			pss_cache[k] = pss_cache[i];
			pss_cache[k++].seen = false;
		}
	npss = k;
}

/* Who holds what: live processes only (a dead holder has no memory to
 * show; its object shows it as dead). */
static int gather(struct frame *f)
{
	struct tuple *t = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	for (size_t i = 0; i < f->l.n && !rc; i++) {
		const struct obj *o = &f->l.v[i];

		if (o->err || o->tmp)
			continue;
		for (int k = 0; k < o->nholders && !rc; k++)
			if (!(o->holders[k].key & SHOAL__HOLDER_NONPROC) && o->holders[k].alive)
				rc = add_tuple(&t, &n, &cap, o->holders[k].pid, i);
		for (int k = 0; k < o->nparts && !rc; k++)
			if (o->parts[k].alive)
				rc = add_tuple(&t, &n, &cap, o->parts[k].pid, i);
		if (o->is_pool && o->pv.supervisor_alive && !rc)
			rc = add_tuple(&t, &n, &cap, o->pv.supervisor.pid, i);
		for (int k = 0; k < o->nworkers && !rc; k++)
			if (o->workers[k].alive)
				rc = add_tuple(&t, &n, &cap, o->workers[k].pid, i);
		/* A plain segment keeps no list of who maps it: its creator,
		 * while alive, stands for them. */
		if (o->hdr.kind == SHOAL__KIND_SEGMENT && o->creator_alive && !rc)
			rc = add_tuple(&t, &n, &cap, o->hdr.creator_pid, i);
	}
	if (rc) {
		free(t);
		return rc;
	}
	if (n)
		qsort(t, n, sizeof(*t), by_pid);
	f->procs = calloc(n + 1, sizeof(*f->procs));
	if (!f->procs) {
		free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct obj *o = &f->l.v[t[i].obj];
		struct tproc *p;

		if (i && t[i].pid == t[i - 1].pid && t[i].obj == t[i - 1].obj)
			continue; /* one process, one object: counted once */
		if (!f->nprocs || f->procs[f->nprocs - 1].pid != t[i].pid) {
			p = &f->procs[f->nprocs++];
			p->pid = t[i].pid;
		}
		p = &f->procs[f->nprocs - 1];
		if (o->is_queue)
			p->queues++;
		else if (o->is_pool)
			p->pools++;
		else if (o->arr) {
			p->arrays++;
			p->array_bytes += obj_size(o);
		} else
			p->segments++;
	}
	free(t);
	for (size_t i = 0; i < f->nprocs; i++) {
		struct tproc *p = &f->procs[i];

		proc_command(p->pid, p->cmd, sizeof(p->cmd));
		p->mem_err = memstat(p->pid, &p->m);
	}
	pss_cache_trim(shoal__now_ns());
	frame_no++;
	return 0;
}

static void rates(struct frame *f, uint64_t now)
{
	struct qprev *next;
	size_t nnext = 0;
	double dt = prev_ns ? (double)(now - prev_ns) / 1e9 : 0;

	for (size_t i = 0; i < f->l.n; i++)
		f->push_rate[i] = f->pop_rate[i] = -1;
	next = calloc(f->l.n + 1, sizeof(*next));
	if (!next)
		return;
	for (size_t i = 0; i < f->l.n; i++) {
		const struct obj *o = &f->l.v[i];
		struct qprev key, *p;

		if (!o->is_queue || o->err)
			continue;
		key.generation = o->hdr.generation;
		p = nprev ? bsearch(&key, prev, nprev, sizeof(*prev), by_gen) : NULL;
		if (p && dt > 0 && o->qv.stats.pushes >= p->pushes && o->qv.stats.pops >= p->pops) {
			f->push_rate[i] = (double)(o->qv.stats.pushes - p->pushes) / dt;
			f->pop_rate[i] = (double)(o->qv.stats.pops - p->pops) / dt;
		}
		next[nnext].generation = key.generation;
		next[nnext].pushes = o->qv.stats.pushes;
		next[nnext++].pops = o->qv.stats.pops;
	}
	qsort(next, nnext, sizeof(*next), by_gen);
	free(prev);
	prev = next;
	nprev = nnext;
	prev_ns = now;
}

static double cpu_ms_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static int frame_build(struct frame *f)
{
	uint64_t t0 = shoal__now_ns();
	double c0 = cpu_ms_now();
	int rc;

	memset(f, 0, sizeof(*f));
	rc = objs_read(&f->l);
	if (rc)
		return rc;
	f->push_rate = calloc(f->l.n + 1, sizeof(double));
	f->pop_rate = calloc(f->l.n + 1, sizeof(double));
	if (!f->push_rate || !f->pop_rate)
		return -ENOMEM;
	rc = gather(f);
	if (rc)
		return rc;
	for (size_t i = 0; i < f->l.n; i++) {
		f->total_bytes += obj_size(&f->l.v[i]);
		if (f->l.v[i].stale) {
			f->nstale++;
			/* What gc frees: not an array a live holder keeps. */
			if (f->l.v[i].whole)
				f->stale_bytes += obj_size(&f->l.v[i]);
		}
	}
	rates(f, shoal__now_ns());
	f->wall_ms = (double)(shoal__now_ns() - t0) / 1e6;
	f->cpu_ms = cpu_ms_now() - c0;
	return 0;
}

static void frame_free(struct frame *f)
{
	objs_free(&f->l);
	free(f->procs);
	free(f->push_rate);
	free(f->pop_rate);
}

/* ---- drawing --------------------------------------------------------------------- */

struct screen {
	bool tty;
	int rows, cols, used;
	size_t hidden; /* object rows that did not fit */
};

/* One line: cut to the width on a terminal, styled as a whole. */
static bool line(struct screen *s, const char *style, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static bool line(struct screen *s, const char *style, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (s->tty && s->used >= s->rows - 1)
		return false;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (s->tty && s->cols > 0 && (int)strlen(buf) > s->cols)
		buf[s->cols] = '\0';
	if (s->tty)
		printf("%s%s%s\x1b[K\r\n", style ? style : "", buf, style ? "\x1b[0m" : "");
	else
		printf("%s\n", buf);
	s->used++;
	return true;
}

static const char *age_text(uint64_t s, char *buf, size_t cap)
{
	if (s < 120)
		snprintf(buf, cap, "%" PRIu64 "s", s);
	else if (s < 7200)
		snprintf(buf, cap, "%" PRIu64 "m", s / 60);
	else if (s < 172800)
		snprintf(buf, cap, "%" PRIu64 "h", s / 3600);
	else
		snprintf(buf, cap, "%" PRIu64 "d", s / 86400);
	return buf;
}

static const char *rate_text(double r, char *buf, size_t cap)
{
	if (r < 0)
		snprintf(buf, cap, "-");
	else if (r >= 1e6)
		snprintf(buf, cap, "%.1fM", r / 1e6);
	else if (r >= 1e3)
		snprintf(buf, cap, "%.1fk", r / 1e3);
	else
		snprintf(buf, cap, "%.0f", r);
	return buf;
}

static const char *const reason_short[SHOAL_POOL_NREASONS] = {
	"tasks", "mem", "hard", "age", "died",
};

static void detail_text(const struct frame *f, size_t i, char *buf, size_t cap)
{
	const struct obj *o = &f->l.v[i];
	char a[16], b[16];

	buf[0] = '\0';
	if (o->err) {
		snprintf(buf, cap, "%s", obj_error(o));
	} else if (o->tmp) {
		snprintf(buf, cap, "creator %d %s", (int)o->hdr.creator_pid,
			 o->creator_alive ? "creating" : "died creating");
	} else if (o->is_queue) {
		const struct shoal_queue_stats *q = &o->qv.stats;

		snprintf(buf, cap, "depth %" PRIu64 "/%" PRIu64 "  in %s/s out %s/s  redelivered %" PRIu64 "%s",
			 q->depth, q->capacity, rate_text(f->push_rate[i], a, sizeof(a)),
			 rate_text(f->pop_rate[i], b, sizeof(b)), q->redelivered,
			 o->qv.closed ? "  closed" : "");
	} else if (o->is_pool) {
		size_t len;

		len = (size_t)snprintf(buf, cap, "workers %u  done %" PRIu64 "  recycled", o->pv.workers,
				       o->pv.tasks_done);
		for (int r = 0; r < SHOAL_POOL_NREASONS && len < cap; r++)
			if (o->pv.recycles[r])
				len += (size_t)snprintf(buf + len, cap - len, " %s %" PRIu64, reason_short[r],
							o->pv.recycles[r]);
		if (len < cap && !o->pv.recycles[0] && !o->pv.recycles[1] && !o->pv.recycles[2] &&
		    !o->pv.recycles[3] && !o->pv.recycles[4])
			snprintf(buf + len, cap - len, " 0");
		if (!o->pv.supervisor_alive && len < cap)
			snprintf(buf + strlen(buf), cap - strlen(buf), "  supervisor %d dead",
				 (int)o->pv.supervisor.pid);
	} else if (o->arr) {
		if (shoal_array_is_freed(o->arr))
			snprintf(buf, cap, "freed, still named");
		else if (o->nholders == 0)
			snprintf(buf, cap, "nobody holds it");
		else if (o->dead)
			snprintf(buf, cap, "%u dead holder%s", o->dead, o->dead == 1 ? "" : "s");
	}
}

/* Stale first, then the largest. */
static const struct frame *sort_frame;
static int obj_order(const void *a, const void *b)
{
	const struct obj *x = &sort_frame->l.v[*(const size_t *)a];
	const struct obj *y = &sort_frame->l.v[*(const size_t *)b];
	uint64_t sx = obj_size(x), sy = obj_size(y);

	if (x->stale != y->stale)
		return x->stale ? -1 : 1;
	if (sx != sy)
		return sx > sy ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void draw(const struct frame *f, bool tty)
{
	struct screen s = { .tty = tty };
	const char *dir = "?";
	char hb[32], pb[32], ps[32], sh[32], ab[32], when[32], age[24], det[256];
	size_t *order;
	time_t now = time(NULL);

	if (tty)
		term_size(&s.rows, &s.cols);
	shoal_dir(&dir);
	strftime(when, sizeof(when), "%H:%M:%S", localtime(&now));
	if (tty)
		fputs("\x1b[H", stdout);
	line(&s, tty ? "\x1b[1m" : NULL,
	     "shoal top - %s - %s - %zu processes, %zu objects (%s)%s", dir, when, f->nprocs, f->l.n,
	     human_bytes(f->total_bytes, hb, sizeof(hb)), tty ? "   q: quit" : "");
	line(&s, NULL, "refresh: %.1f ms wall, %.1f ms CPU; every %.1f s", f->wall_ms, f->cpu_ms,
	     f->every_s);
	line(&s, NULL, "%s", "");
	line(&s, tty ? "\x1b[7m" : NULL, "%7s %-28s %10s %10s %10s %6s %6s %5s", "PID", "COMMAND", "PRIVATE",
	     "PSS", "SHARED", "ARRAYS", "QUEUES", "POOLS");
	for (size_t i = 0; i < f->nprocs; i++) {
		const struct tproc *p = &f->procs[i];

		if (p->mem_err) {
			line(&s, NULL, "%7d %-28.28s %10s %10s %10s %6u %6u %5u", (int)p->pid, p->cmd, "?",
			     "?", "?", p->arrays, p->queues, p->pools);
			continue;
		}
		line(&s, NULL, "%7d %-28.28s %10s %10s %10s %6u %6u %5u", (int)p->pid, p->cmd,
		     human_bytes(p->m.private_bytes, pb, sizeof(pb)),
		     p->m.flags & SHOAL_MEMSTAT_SMAPS ? human_bytes(p->m.pss, ps, sizeof(ps)) : "?",
		     human_bytes(p->m.shmem, sh, sizeof(sh)), p->arrays, p->queues, p->pools);
	}
	line(&s, NULL, "%s", "");
	line(&s, tty ? "\x1b[7m" : NULL, "%-32s %-7s %10s %5s %5s %5s  %s", "OBJECT", "KIND", "SIZE", "LIVE",
	     "DEAD", "AGE", "DETAIL");
	order = calloc(f->l.n + 1, sizeof(*order));
	for (size_t i = 0; order && i < f->l.n; i++)
		order[i] = i;
	sort_frame = f;
	if (order && f->l.n)
		qsort(order, f->l.n, sizeof(*order), obj_order);
	/* Keep the last rows for the stale line. */
	if (tty)
		s.rows -= 2;
	for (size_t k = 0; order && k < f->l.n; k++) {
		const struct obj *o = &f->l.v[order[k]];

		detail_text(f, order[k], det, sizeof(det));
		if (!line(&s, o->stale ? "\x1b[1;31m" : NULL, "%-32.32s %-7s %10s %5u %5u %5s  %s%s", o->name,
			  obj_kind(o), human_bytes(obj_size(o), ab, sizeof(ab)), o->live, o->dead,
			  age_text(obj_age_s(o), age, sizeof(age)), o->stale ? "STALE " : "", det)) {
			s.hidden = f->l.n - k;
			break;
		}
	}
	free(order);
	if (tty)
		s.rows += 2;
	if (s.hidden)
		line(&s, NULL, "... %zu more objects (shoal ls lists them all)", s.hidden);
	if (f->nstale)
		line(&s, tty ? "\x1b[1;31m" : NULL, "%zu stale object%s: `shoal gc` reclaims %s, freeing %s",
		     f->nstale, f->nstale == 1 ? "" : "s", f->nstale == 1 ? "it" : "them", human_bytes(f->stale_bytes, hb, sizeof(hb)));
	else
		line(&s, NULL, "no stale objects");
	if (tty)
		fputs("\x1b[J", stdout);
	fflush(stdout);
}

static void draw_json(const struct frame *f)
{
	const char *dir = "?";

	shoal_dir(&dir);
	printf("{\"time_ns\":%" PRIu64 ",\"dir\":", shoal__realtime_ns());
	jstr(stdout, dir);
	printf(",\"refresh_wall_ms\":%.3f,\"refresh_cpu_ms\":%.3f,\"every_s\":%.3f,\"processes\":[",
	       f->wall_ms, f->cpu_ms, f->every_s);
	for (size_t i = 0; i < f->nprocs; i++) {
		const struct tproc *p = &f->procs[i];

		printf("%s{\"pid\":%d,\"command\":", i ? "," : "", (int)p->pid);
		jstr(stdout, p->cmd);
		if (p->mem_err)
			printf(",\"private_bytes\":null,\"pss\":null,\"shared_bytes\":null");
		else if (p->m.flags & SHOAL_MEMSTAT_SMAPS)
			printf(",\"private_bytes\":%" PRIu64 ",\"pss\":%" PRIu64 ",\"shared_bytes\":%" PRIu64,
			       p->m.private_bytes, p->m.pss, p->m.shmem);
		else
			printf(",\"private_bytes\":%" PRIu64 ",\"pss\":null,\"shared_bytes\":%" PRIu64,
			       p->m.private_bytes, p->m.shmem);
		printf(",\"arrays\":%u,\"array_bytes\":%" PRIu64 ",\"queues\":%u,\"pools\":%u,\"segments\":%u}",
		       p->arrays, p->array_bytes, p->queues, p->pools, p->segments);
	}
	printf("],\"objects\":[");
	for (size_t i = 0; i < f->l.n; i++) {
		const struct obj *o = &f->l.v[i];

		printf("%s{\"name\":", i ? "," : "");
		jstr(stdout, o->name);
		printf(",\"kind\":\"%s\",\"size\":%" PRIu64 ",\"live\":%u,\"dead\":%u,\"age_s\":%" PRIu64
		       ",\"stale\":%s",
		       obj_kind(o), obj_size(o), o->live, o->dead, obj_age_s(o), o->stale ? "true" : "false");
		if (o->err && !o->tmp) {
			printf(",\"error\":\"%s\",\"detail\":", shoal_strerror(o->err));
			jstr(stdout, obj_error(o));
		}
		if (o->is_queue && !o->err) {
			const struct shoal_queue_stats *q = &o->qv.stats;

			printf(",\"depth\":%" PRIu64 ",\"capacity\":%" PRIu64 ",\"pushes\":%" PRIu64
			       ",\"pops\":%" PRIu64 ",\"redelivered\":%" PRIu64,
			       q->depth, q->capacity, q->pushes, q->pops, q->redelivered);
			if (f->push_rate[i] >= 0)
				printf(",\"push_rate\":%.3f,\"pop_rate\":%.3f", f->push_rate[i], f->pop_rate[i]);
			else
				printf(",\"push_rate\":null,\"pop_rate\":null");
		}
		if (o->is_pool && !o->err) {
			printf(",\"workers\":%u,\"tasks_done\":%" PRIu64 ",\"tasks_running\":%" PRIu64
			       ",\"supervisor_alive\":%s,\"recycles\":{",
			       o->pv.workers, o->pv.tasks_done, o->pv.tasks_running,
			       o->pv.supervisor_alive ? "true" : "false");
			for (int r = 0; r < SHOAL_POOL_NREASONS; r++)
				printf("%s\"%s\":%" PRIu64, r ? "," : "",
				       r == SHOAL_POOL_MEMORY ? "memory" : reason_short[r], o->pv.recycles[r]);
			printf("}");
		}
		printf("}");
	}
	printf("],\"stale\":%zu,\"stale_bytes\":%" PRIu64 ",\"reclaim\":\"shoal gc\"}\n", f->nstale,
	       f->stale_bytes);
	fflush(stdout);
}

/* Wait up to @ms for 'q' on a terminal (or the interval to pass). */
static bool wait_quit(int ms, bool tty)
{
	uint64_t end = shoal__now_ns() + (uint64_t)ms * 1000000u;

	for (;;) {
		struct pollfd pfd = { .fd = STDIN_FILENO, .events = POLLIN };
		uint64_t now = shoal__now_ns();
		int left = now >= end ? 0 : (int)((end - now) / 1000000u);
		int n;

		if (quit_signal)
			return true;
		if (left == 0)
			return false;
		n = poll(&pfd, tty ? 1 : 0, left);
		if (n > 0) {
			char c[64];
			ssize_t got = read(STDIN_FILENO, c, sizeof(c));

			for (ssize_t i = 0; i < got; i++)
				if (c[i] == 'q' || c[i] == 'Q')
					return true;
			if (got == 0)
				tty = false; /* end of input: only the interval and signals now */
		}
	}
}

int top_main(bool once, bool json, double interval)
{
	bool tty = !once && !json && isatty(STDOUT_FILENO);
	double wait_s;
	int status = 0;

	pss_always = once;

	if (!once)
		term_setup(tty);
	for (;;) {
		struct frame f;
		int rc = frame_build(&f);

		if (rc) {
			frame_free(&f);
			term_restore();
			fprintf(stderr, "shoal: top: %s\n", shoal_strerror(rc));
			status = 1;
			break;
		}
		/* Never more than a tenth of a CPU: a refresh that cost c ms of
		 * CPU waits at least 10 c ms before the next. */
		wait_s = interval;
		if (f.cpu_ms * 10 / 1000 > wait_s)
			wait_s = f.cpu_ms * 10 / 1000;
		f.every_s = wait_s;
		if (json)
			draw_json(&f);
		else
			draw(&f, tty);
		frame_free(&f);
		/* A reader gone (a pipe closed: SIGPIPE is ignored) ends it. */
		if (fflush(stdout) != 0 || ferror(stdout)) {
			status = 1;
			break;
		}
		if (once || wait_quit((int)(wait_s * 1000 + 0.999), tio_saved))
			break;
	}
	term_restore();
	free(prev);
	prev = NULL;
	free(pss_cache);
	pss_cache = NULL;
	return status;
}
