// queue_boost.cpp - the Boost.Interprocess message_queue peer of
// queue_bench.c, measured the same way:
//   queue_boost tput PRODUCERS ROUNDS -> median M msgs/s of 64-byte messages
//   queue_boost wake ROUNDS           -> median microseconds to wake a receiver
#include <boost/interprocess/ipc/message_queue.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace bip = boost::interprocess;

static const int MSG = 64;
static const int RING = 1024;

static double now()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

struct bsync {
	std::atomic<int> ready, go;
	std::atomic<double> sent_at, got_at;
};

static bsync *shared_sync()
{
	void *p = mmap(nullptr, sizeof(bsync), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		exit(1);
	return new (p) bsync();
}

static double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	size_t n = v.size();
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double tput(const std::string &name, int producers, long total)
{
	bip::message_queue::remove(name.c_str());
	bip::message_queue mq(bip::create_only, name.c_str(), RING, MSG);
	bsync *s = shared_sync();
	long per = total / producers, got = 0;
	std::vector<pid_t> kids;
	char msg[MSG], buf[MSG];
	std::memset(msg, 0x5a, MSG);
	for (int i = 0; i < producers; i++) {
		pid_t k = fork();
		if (k == 0) {
			bip::message_queue q(bip::open_only, name.c_str());
			s->ready++;
			while (!s->go)
				usleep(100);
			for (long m = 0; m < per; m++)
				q.send(msg, MSG, 0);
			_exit(0);
		}
		kids.push_back(k);
	}
	while (s->ready < producers)
		usleep(100);
	double t0 = now();
	s->go = 1;
	while (got < per * producers) {
		bip::message_queue::size_type n;
		unsigned prio;
		mq.receive(buf, MSG, n, prio);
		got++;
	}
	double t1 = now();
	for (pid_t k : kids)
		waitpid(k, nullptr, 0);
	bip::message_queue::remove(name.c_str());
	munmap(s, sizeof(*s));
	return got / (t1 - t0) / 1e6;
}

static double wake(const std::string &name, int rounds)
{
	bip::message_queue::remove(name.c_str());
	bip::message_queue mq(bip::create_only, name.c_str(), RING, MSG);
	bsync *s = shared_sync();
	char msg[MSG] = { 1 }, buf[MSG];
	std::vector<double> lat;
	pid_t kid = fork();
	if (kid == 0) {
		bip::message_queue q(bip::open_only, name.c_str());
		for (int i = 0; i < rounds; i++) {
			bip::message_queue::size_type n;
			unsigned prio;
			q.receive(buf, MSG, n, prio);
			s->got_at = now();
			s->ready++;
		}
		_exit(0);
	}
	for (int i = 0; i < rounds; i++) {
		usleep(3000);
		s->sent_at = now();
		mq.send(msg, MSG, 0);
		while (s->ready <= i)
			usleep(50);
		lat.push_back((s->got_at - s->sent_at) * 1e6);
	}
	waitpid(kid, nullptr, 0);
	bip::message_queue::remove(name.c_str());
	munmap(s, sizeof(*s));
	return median(lat);
}

int main(int argc, char **argv)
{
	std::string name = "shoal_bench_boost." + std::to_string(getpid());
	if (argc >= 4 && !std::strcmp(argv[1], "tput")) {
		int producers = std::atoi(argv[2]), rounds = std::atoi(argv[3]);
		std::vector<double> v;
		for (int r = 0; r < rounds; r++)
			v.push_back(tput(name, producers, 1000000));
		std::printf("%.3f\n", median(v));
		return 0;
	}
	if (argc >= 3 && !std::strcmp(argv[1], "wake")) {
		std::printf("%.3f\n", wake(name, std::atoi(argv[2])));
		return 0;
	}
	std::fprintf(stderr, "usage: queue_boost tput PRODUCERS ROUNDS | wake ROUNDS\n");
	return 2;
}
