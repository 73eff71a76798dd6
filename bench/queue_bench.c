/*
 * queue_bench.c - shoal's queue against a pipe and a mutex+condvar ring in
 * shared memory, on the same work in the same run.
 *
 *   queue_bench tput PRODUCERS BATCH ROUNDS [ONLY] -> {"shoal": M/s, "pipe": .., "mutex_ring": ..}
 *   queue_bench wake ROUNDS                   -> {"shoal": us, "pipe": .., "mutex_ring": ..}
 *
 * tput: PRODUCERS processes send 64-byte messages (BATCH at a time, 1 = one
 * by one) to one consumer process; the value is messages per second from the
 * go signal to the consumer's last receive, the median of ROUNDS runs, the
 * peers interleaved with shoal so that a noisy machine hits all alike.
 * wake: a consumer asleep on an empty queue; one message is sent; the value
 * is the median time until the consumer's receive returns (both read
 * CLOCK_MONOTONIC), in microseconds.
 */
#include <errno.h>
#include <pthread.h>
#include <shoal.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG 64
#define BATCH_MAX 32
#define RING 1024

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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
	fprintf(stderr, "queue_bench: %s: %s\n", what, shoal_strerror(rc));
	exit(1);
}

/* ---- transports: one send/recv of n messages of MSG bytes each ----------- */

struct transport {
	const char *name;
	void (*setup)(void);
	void (*teardown)(void);
	void (*send)(const unsigned char *msgs, int n);
	int (*recv)(unsigned char *buf, int n); /* returns how many, >= 1 */
};

/* shoal */
static struct shoal_queue *sq;
static char sq_name[64];

static void shoal_setup(void)
{
	int rc;

	snprintf(sq_name, sizeof(sq_name), "bench.%d", (int)getpid());
	rc = shoal_queue_create(sq_name, RING, MSG, NULL, &sq);
	if (rc)
		die("create", rc);
}

static void shoal_teardown(void)
{
	shoal_queue_detach(sq);
	shoal_queue_unlink(sq_name);
}

static void shoal_send(const unsigned char *msgs, int n)
{
	static const size_t lens[BATCH_MAX] = { [0 ... BATCH_MAX - 1] = MSG };
	int rc;

	if (n == 1) {
		rc = shoal_queue_push(sq, msgs, MSG, -1);
		if (rc)
			die("push", rc);
		return;
	}
	while (n > 0) {
		ssize_t k = shoal_queue_push_many(sq, msgs, lens, (size_t)n, -1);

		if (k < 0)
			die("push_many", (int)k);
		msgs += k * MSG;
		n -= (int)k;
	}
}

static int shoal_recv(unsigned char *buf, int n)
{
	size_t lens[BATCH_MAX], len;
	ssize_t k;

	if (n == 1) {
		int rc = shoal_queue_pop(sq, buf, MSG, &len, -1);

		if (rc)
			die("pop", rc);
		return 1;
	}
	k = shoal_queue_pop_many(sq, buf, (size_t)n * MSG, lens, (size_t)n, -1);
	if (k < 0)
		die("pop_many", (int)k);
	return (int)k;
}

/* pipe: writes of up to PIPE_BUF are atomic, so several writers are fine. */
static int pfd[2];

static void pipe_setup(void)
{
	if (pipe(pfd) != 0)
		exit(1);
}

static void pipe_teardown(void)
{
	close(pfd[0]);
	close(pfd[1]);
}

static void pipe_send(const unsigned char *msgs, int n)
{
	if (write(pfd[1], msgs, (size_t)n * MSG) != (ssize_t)n * MSG)
		exit(1);
}

static int pipe_recv(unsigned char *buf, int n)
{
	size_t want = (size_t)n * MSG, got = 0;

	/* Whole messages only: a batch read may return part of one. */
	do {
		ssize_t r = read(pfd[0], buf + got, want - got);

		if (r <= 0)
			exit(1);
		got += (size_t)r;
	} while (got % MSG);
	return (int)(got / MSG);
}

/* mutex_ring: the textbook bounded buffer, in shared memory. */
struct mring {
	pthread_mutex_t m;
	pthread_cond_t not_empty, not_full;
	unsigned head, tail;
	unsigned char slots[RING][MSG];
};
static struct mring *mr;

static void mring_setup(void)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;

	mr = shm(sizeof(*mr));
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutex_init(&mr->m, &ma);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	pthread_cond_init(&mr->not_empty, &ca);
	pthread_cond_init(&mr->not_full, &ca);
}

static void mring_teardown(void)
{
	munmap(mr, sizeof(*mr));
}

static void mring_send(const unsigned char *msgs, int n)
{
	pthread_mutex_lock(&mr->m);
	for (int i = 0; i < n; i++) {
		while (mr->tail - mr->head == RING) {
			pthread_cond_signal(&mr->not_empty);
			pthread_cond_wait(&mr->not_full, &mr->m);
		}
		memcpy(mr->slots[mr->tail % RING], msgs + i * MSG, MSG);
		mr->tail++;
	}
	pthread_cond_signal(&mr->not_empty);
	pthread_mutex_unlock(&mr->m);
}

static int mring_recv(unsigned char *buf, int n)
{
	int k = 0;

	pthread_mutex_lock(&mr->m);
	while (mr->tail == mr->head)
		pthread_cond_wait(&mr->not_empty, &mr->m);
	while (k < n && mr->tail != mr->head) {
		memcpy(buf + k * MSG, mr->slots[mr->head % RING], MSG);
		mr->head++;
		k++;
	}
	pthread_cond_broadcast(&mr->not_full);
	pthread_mutex_unlock(&mr->m);
	return k;
}

static const struct transport transports[] = {
	{ "shoal", shoal_setup, shoal_teardown, shoal_send, shoal_recv },
	{ "pipe", pipe_setup, pipe_teardown, pipe_send, pipe_recv },
	{ "mutex_ring", mring_setup, mring_teardown, mring_send, mring_recv },
};
#define NT (sizeof(transports) / sizeof(transports[0]))

/* ---- measurements ------------------------------------------------------- */

struct sync {
	_Atomic int ready;
	_Atomic int go;
	_Atomic double sent_at;
	_Atomic double got_at;
};

static double tput(const struct transport *t, int producers, int batch, long total)
{
	struct sync *s = shm(sizeof(*s));
	unsigned char msgs[BATCH_MAX * MSG], buf[BATCH_MAX * MSG];
	long per = total / producers, got = 0;
	pid_t kids[16];
	double t0, t1;

	memset(msgs, 0x5a, sizeof(msgs));
	t->setup();
	for (int i = 0; i < producers; i++) {
		kids[i] = fork();
		if (kids[i] == 0) {
			atomic_fetch_add(&s->ready, 1);
			while (!atomic_load(&s->go))
				usleep(100);
			for (long m = 0; m < per; m += batch)
				t->send(msgs, (int)(per - m < batch ? per - m : batch));
			_exit(0);
		}
	}
	while (atomic_load(&s->ready) < producers)
		usleep(100);
	t0 = now();
	atomic_store(&s->go, 1);
	while (got < per * producers)
		got += t->recv(buf, batch);
	t1 = now();
	for (int i = 0; i < producers; i++)
		waitpid(kids[i], NULL, 0);
	t->teardown();
	munmap(s, sizeof(*s));
	return (double)got / (t1 - t0) / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double wake(const struct transport *t, int rounds)
{
	struct sync *s = shm(sizeof(*s));
	unsigned char msg[MSG] = { 1 }, buf[MSG];
	double *lat = calloc((size_t)rounds, sizeof(double)), m;
	pid_t kid;

	t->setup();
	kid = fork();
	if (kid == 0) {
		for (int i = 0; i < rounds; i++) {
			t->recv(buf, 1);
			atomic_store(&s->got_at, now());
			atomic_fetch_add(&s->ready, 1);
		}
		_exit(0);
	}
	for (int i = 0; i < rounds; i++) {
		/* Long enough for the consumer to be asleep, not spinning. */
		usleep(3000);
		atomic_store(&s->sent_at, now());
		t->send(msg, 1);
		while (atomic_load(&s->ready) <= i)
			usleep(50);
		lat[i] = (atomic_load(&s->got_at) - atomic_load(&s->sent_at)) * 1e6;
	}
	waitpid(kid, NULL, 0);
	t->teardown();
	m = median(lat, rounds);
	free(lat);
	munmap(s, sizeof(*s));
	return m;
}

int main(int argc, char **argv)
{
	double v[NT][16];
	int rounds;

	if (argc >= 5 && strcmp(argv[1], "tput") == 0) {
		int producers = atoi(argv[2]), batch = atoi(argv[3]);
		/* Same work for everyone; the slow peers get fewer messages so the
		 * run stays short, which a rate does not care about. */
		static const long total[NT] = { 4000000, 1000000, 2000000 };

		rounds = atoi(argv[4]);
		if (producers < 1 || producers > 16 || batch < 1 || batch > BATCH_MAX || rounds < 1 ||
		    rounds > 16)
			return 2;
		for (int r = 0; r < rounds; r++)
			for (size_t t = 0; t < NT; t++)
				v[t][r] = argc > 5 && strcmp(argv[5], transports[t].name) ? 0 : tput(&transports[t], producers, batch, total[t] * (batch > 1 ? 2 : 1));
	} else if (argc >= 3 && strcmp(argv[1], "wake") == 0) {
		rounds = 1;
		for (size_t t = 0; t < NT; t++)
			v[t][0] = wake(&transports[t], atoi(argv[2]));
	} else {
		fprintf(stderr, "usage: queue_bench tput PRODUCERS BATCH ROUNDS | wake ROUNDS\n");
		return 2;
	}
	printf("{");
	for (size_t t = 0; t < NT; t++)
		printf("%s\"%s\": %.3f", t ? ", " : "", transports[t].name, median(v[t], rounds));
	printf("}\n");
	return 0;
}
