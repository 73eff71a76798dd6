/*
 * queue_scale.c - the queue at scale: many handles on one queue, and many
 * producers and consumers on one small queue, against peers on the same work
 * in the same run.
 *
 *   queue_scale handles IDLE ROUNDS
 *       -> {"shoal": M/s, "two_handles": M/s, "handles": IDLE + 2}
 *   queue_scale fair PRODUCERS CONSUMERS CAPACITY TOTAL TRANSPORT
 *       -> {"tput": msgs/s, "p50": us, "p99": us, "max": us, "pops": n, "capacity": n}
 *
 * handles: one producer process pushes 64-byte messages one by one to one
 * consumer process through a queue of 1024 slots; the value is messages per
 * second from the go signal to the last pop, the median of ROUNDS runs. In
 * "shoal" a third process holds IDLE more handles on the queue, each
 * registered (a try-pop), and sleeps; "two_handles" is the same queue with
 * only the producer's and the consumer's. The two alternate, so a noisy
 * machine hits both alike.
 *
 * fair: PRODUCERS processes push TOTAL 64-byte messages in all, one by one,
 * blocking, into one queue of CAPACITY slots; CONSUMERS processes pop them
 * one by one, blocking. A pop's latency is the time inside one blocking pop
 * call that returned a message (CLOCK_MONOTONIC before and after); the
 * percentiles are over every such pop of every consumer. tput is TOTAL over
 * the time from the go signal to the last message's pop. TRANSPORT is shoal,
 * pipe (a pipe of CAPACITY messages: F_SETPIPE_SZ) or mqueue (a POSIX
 * message queue of CAPACITY messages, or of fs.mqueue.msg_max if that is
 * smaller and we may not exceed it: "capacity" says); the end of the stream is
 * shoal_queue_close() for shoal, one poison message per consumer for the
 * peers, and those last calls are not counted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <shoal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define POISON 0xff

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *shm(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "queue_scale: %s: %s (%s)\n", what, shoal_strerror(rc), shoal_errdetail(rc));
	exit(1);
}

/* Every child blocks in read() until the parent closes the write end. */
static int go_pipe[2];

static void wait_go(void)
{
	char c;

	close(go_pipe[1]);
	if (read(go_pipe[0], &c, 1) != 0)
		exit(1);
	close(go_pipe[0]);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* ---- handles ------------------------------------------------------------- */

struct hsync {
	_Atomic int ready;
	_Atomic int quit;
};

static double one_to_one(int idle, int round)
{
	struct hsync *s = shm(sizeof(*s));
	struct shoal_queue *q;
	unsigned char msg[MSG] = { 0x5a }, buf[MSG];
	const long total = 2000000;
	char name[64];
	pid_t holder = -1, prod;
	uint64_t t0, t1;
	size_t len;
	int rc;

	snprintf(name, sizeof(name), "bench.scale.%d.%d", (int)getpid(), round);
	rc = shoal_queue_create(name, 1024, MSG, NULL, &q);
	if (rc)
		die("create", rc);
	if (idle > 0) {
		holder = fork();
		if (holder == 0) {
			struct shoal_queue **h = calloc((size_t)idle, sizeof(*h));

			for (int i = 0; i < idle; i++) {
				if ((rc = shoal_queue_open(name, 0, &h[i])) != 0)
					die("open", rc);
				rc = shoal_queue_pop(h[i], buf, MSG, &len, 0);
				if (rc != -EAGAIN)
					die("register", rc);
			}
			atomic_store(&s->ready, 1);
			while (!atomic_load(&s->quit))
				usleep(10000);
			for (int i = 0; i < idle; i++)
				shoal_queue_detach(h[i]);
			_exit(0);
		}
		while (!atomic_load(&s->ready))
			usleep(1000);
	}
	if (pipe(go_pipe) != 0)
		exit(1);
	prod = fork();
	if (prod == 0) {
		wait_go();
		for (long m = 0; m < total; m++)
			if ((rc = shoal_queue_push(q, msg, MSG, -1)) != 0)
				die("push", rc);
		_exit(0);
	}
	close(go_pipe[0]);
	/* Register before the clock starts, as the producer does on its
	 * first push (its registration is inside the clock: one scan). */
	if ((rc = shoal_queue_pop(q, buf, MSG, &len, 0)) != -EAGAIN)
		die("register", rc);
	t0 = now_ns();
	close(go_pipe[1]);
	for (long m = 0; m < total; m++)
		if ((rc = shoal_queue_pop(q, buf, MSG, &len, -1)) != 0)
			die("pop", rc);
	t1 = now_ns();
	waitpid(prod, NULL, 0);
	if (holder > 0) {
		struct shoal_queue_stats st;

		shoal_queue_stats(q, &st);
		if (st.participants != (uint64_t)idle + 2) {
			fprintf(stderr, "queue_scale: %llu participants, want %d\n",
				(unsigned long long)st.participants, idle + 2);
			exit(1);
		}
		atomic_store(&s->quit, 1);
		waitpid(holder, NULL, 0);
	}
	shoal_queue_detach(q);
	shoal_queue_unlink(name);
	munmap(s, sizeof(*s));
	return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

static int handles(int idle, int rounds)
{
	double with[16], two[16];

	if (idle < 1 || rounds < 1 || rounds > 16)
		return 2;
	for (int r = 0; r < rounds; r++) {
		two[r] = one_to_one(0, 2 * r);
		with[r] = one_to_one(idle, 2 * r + 1);
	}
	qsort(with, (size_t)rounds, sizeof(double), cmp_d);
	qsort(two, (size_t)rounds, sizeof(double), cmp_d);
	printf("{\"shoal\": %.3f, \"two_handles\": %.3f, \"handles\": %d}\n", with[rounds / 2],
	       two[rounds / 2], idle + 2);
	return 0;
}

/* ---- fair ---------------------------------------------------------------- */

struct fsync {
	_Atomic long received;
	_Atomic uint64_t last_ns;
	_Atomic long nlat;
	uint32_t lat[]; /* ns, one per pop that returned a message */
};

static struct shoal_queue *fq;
static char fq_name[64];
static int fpipe[2];
static mqd_t fmq;
static int fcap;

static void f_setup(const char *t, int cap)
{
	fcap = cap;
	if (strcmp(t, "shoal") == 0) {
		int rc;

		snprintf(fq_name, sizeof(fq_name), "bench.fair.%d", (int)getpid());
		if ((rc = shoal_queue_create(fq_name, (uint32_t)cap, MSG, NULL, &fq)) != 0)
			die("create", rc);
	} else if (strcmp(t, "pipe") == 0) {
		if (pipe(fpipe) != 0 || fcntl(fpipe[1], F_SETPIPE_SZ, cap * MSG) < 0) {
			perror("pipe");
			exit(1);
		}
	} else if (strcmp(t, "mqueue") == 0) {
		struct mq_attr a = { .mq_maxmsg = cap, .mq_msgsize = MSG };
		FILE *f;

		snprintf(fq_name, sizeof(fq_name), "/shoal-bench-fair.%d", (int)getpid());
		fmq = mq_open(fq_name, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
		/* Above fs.mqueue.msg_max only with CAP_SYS_RESOURCE. */
		if (fmq == (mqd_t)-1 && errno == EINVAL &&
		    (f = fopen("/proc/sys/fs/mqueue/msg_max", "r"))) {
			if (fscanf(f, "%d", &fcap) == 1 && fcap < cap) {
				a.mq_maxmsg = fcap;
				fmq = mq_open(fq_name, O_CREAT | O_EXCL | O_RDWR, 0600, &a);
			}
			fclose(f);
		}
		if (fmq == (mqd_t)-1) {
			perror("mq_open");
			exit(1);
		}
		mq_unlink(fq_name);
	} else {
		fprintf(stderr, "queue_scale: no transport '%s'\n", t);
		exit(2);
	}
}

static void f_send(const char *t, const unsigned char *msg)
{
	int rc;

	if (t[0] == 's') {
		if ((rc = shoal_queue_push(fq, msg, MSG, -1)) != 0)
			die("push", rc);
	} else if (t[0] == 'p') {
		if (write(fpipe[1], msg, MSG) != MSG)
			exit(1);
	} else {
		while (mq_send(fmq, (const char *)msg, MSG, 0) != 0)
			if (errno != EINTR)
				exit(1);
	}
}

/* 1 for a message, 0 at the end of the stream. */
static int f_recv(const char *t, unsigned char *buf)
{
	size_t len;
	int rc;

	if (t[0] == 's') {
		rc = shoal_queue_pop(fq, buf, MSG, &len, -1);
		if (rc == -EPIPE)
			return 0;
		if (rc)
			die("pop", rc);
		return 1;
	}
	if (t[0] == 'p') {
		/* Every write is MSG bytes (atomic: <= PIPE_BUF) and every
		 * read asks MSG, so reads return whole messages. */
		if (read(fpipe[0], buf, MSG) != MSG)
			exit(1);
	} else {
		while (mq_receive(fmq, (char *)buf, MSG, NULL) != MSG)
			if (errno != EINTR)
				exit(1);
	}
	return buf[0] != POISON;
}

static int fair(int producers, int consumers, int cap, long total, const char *t)
{
	struct fsync *s;
	pid_t *kids;
	size_t ssize = sizeof(*s) + (size_t)total * sizeof(uint32_t);
	long per = total / producers;
	uint64_t t0;
	int n = 0;

	if (producers < 1 || consumers < 1 || cap < 2 || total < producers)
		return 2;
	total = per * producers;
	s = shm(ssize);
	kids = calloc((size_t)(producers + consumers), sizeof(*kids));
	f_setup(t, cap);
	if (pipe(go_pipe) != 0)
		exit(1);
	for (int c = 0; c < consumers; c++) {
		if ((kids[n++] = fork()) == 0) {
			uint32_t *mine = malloc((size_t)total * sizeof(uint32_t));
			unsigned char buf[MSG];
			long k = 0, at;

			wait_go();
			for (;;) {
				uint64_t a = now_ns(), b;
				int got = f_recv(t, buf);

				b = now_ns();
				if (!got)
					break;
				mine[k++] = b - a > UINT32_MAX ? UINT32_MAX : (uint32_t)(b - a);
				if (atomic_fetch_add(&s->received, 1) + 1 == total)
					atomic_store(&s->last_ns, b);
			}
			at = atomic_fetch_add(&s->nlat, k);
			memcpy(&s->lat[at], mine, (size_t)k * sizeof(uint32_t));
			_exit(0);
		}
	}
	for (int p = 0; p < producers; p++) {
		if ((kids[n++] = fork()) == 0) {
			unsigned char msg[MSG];

			memset(msg, p & 0x7f, sizeof(msg));
			wait_go();
			for (long m = 0; m < per; m++)
				f_send(t, msg);
			_exit(0);
		}
	}
	close(go_pipe[0]);
	t0 = now_ns();
	close(go_pipe[1]);
	for (int i = consumers; i < n; i++)
		waitpid(kids[i], NULL, 0);
	/* Every message is in; end the stream for the consumers. */
	if (t[0] == 's') {
		shoal_queue_close(fq);
	} else {
		unsigned char poison[MSG];

		memset(poison, POISON, sizeof(poison));
		for (int c = 0; c < consumers; c++)
			f_send(t, poison);
	}
	for (int i = 0; i < consumers; i++)
		waitpid(kids[i], NULL, 0);
	if (atomic_load(&s->received) != total || atomic_load(&s->nlat) != total) {
		fprintf(stderr, "queue_scale: %ld of %ld messages received\n",
			atomic_load(&s->received), total);
		return 1;
	}
	qsort(s->lat, (size_t)total, sizeof(uint32_t), cmp_u32);
	printf("{\"tput\": %.0f, \"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f, \"pops\": %ld, "
	       "\"capacity\": %d}\n",
	       (double)total / ((double)(atomic_load(&s->last_ns) - t0) / 1e9),
	       s->lat[total / 2] / 1e3, s->lat[total * 99 / 100] / 1e3, s->lat[total - 1] / 1e3,
	       total, fcap);
	if (t[0] == 's') {
		shoal_queue_detach(fq);
		shoal_queue_unlink(fq_name);
	}
	munmap(s, ssize);
	free(kids);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "handles") == 0)
		return handles(atoi(argv[2]), atoi(argv[3]));
	if (argc == 7 && strcmp(argv[1], "fair") == 0)
		return fair(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atol(argv[5]), argv[6]);
	fprintf(stderr, "usage: queue_scale handles IDLE ROUNDS\n"
			"       queue_scale fair PRODUCERS CONSUMERS CAPACITY TOTAL shoal|pipe|mqueue\n");
	return 2;
}
