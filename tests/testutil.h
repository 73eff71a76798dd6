/*
 * testutil.h - what the Check programs share: unique object names, forking
 * children that report through their exit status, and a way to plant raw
 * files in /dev/shm for the hostile-input tests.
 */
#ifndef SHOAL_TESTUTIL_H
#define SHOAL_TESTUTIL_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shoal.h"

/* A name no other test (or run) uses: "t.<pid>.<n>.<tag>". */
static inline const char *t_name(const char *tag)
{
	static char buf[8][96];
	static unsigned n;
	char *b = buf[n % 8];

	snprintf(b, sizeof(buf[0]), "t.%d.%u.%s", (int)getpid(), n, tag);
	n++;
	return b;
}

/* The /dev/shm path of a shoal name. */
static inline const char *t_path(const char *name)
{
	static char buf[4][320];
	static unsigned n;
	char *b = buf[n++ % 4];

	snprintf(b, sizeof(buf[0]), "/dev/shm/" SHOAL_PREFIX "%s", name);
	return b;
}

/* Write @len bytes as the whole content of the object file for @name. */
static inline void t_plant(const char *name, const void *data, size_t len, mode_t mode)
{
	int fd = open(t_path(name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	if (len)
		ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

/* Wait for @pid; return its exit code, or 128 + signal. */
static inline int t_wait(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		ck_assert_int_eq(errno, EINTR);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

/*
 * In a forked child: cap this process's address space at what it maps now
 * plus @room bytes, so a mapping larger than that is ENOMEM. Relative, not
 * absolute: under ASan the process already maps terabytes of shadow. 0, or
 * -1.
 */
static inline int t_cap_address_space(size_t room)
{
	struct rlimit cap;
	unsigned long pages = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (!f || fscanf(f, "%lu", &pages) != 1) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	getrlimit(RLIMIT_AS, &cap);
	cap.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + room;
	return setrlimit(RLIMIT_AS, &cap);
}

/* In a forked child: no file descriptor beyond 0, 1 and 2 may be opened
 * (those above stay open). 0, or -1. */
static inline int t_no_more_fds(void)
{
	struct rlimit few = { 3, 3 };

	return setrlimit(RLIMIT_NOFILE, &few);
}

/*
 * In a forked child: give this process a /proc of its own, an empty tmpfs,
 * so shoal cannot tell who anyone is. 0, or -1 if that needs root we lack.
 */
static inline int t_private_proc(void)
{
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", "/proc", "tmpfs", 0, NULL) != 0)
		return -1;
	return 0;
}

/*
 * Run out of file descriptors on purpose: lower the soft limit to @limit and
 * take every descriptor still free but @spare. t_fds_back() gives them back
 * and restores the limit. No assertions inside: a pool's spawn hook calls it
 * from another thread.
 */
struct t_fds {
	struct rlimit saved;
	int fd[4096];
	int n;
};

static inline void t_fds_take(struct t_fds *h, rlim_t limit, int spare)
{
	struct rlimit few;
	int fd;

	h->n = 0;
	getrlimit(RLIMIT_NOFILE, &h->saved);
	few = h->saved;
	few.rlim_cur = limit;
	setrlimit(RLIMIT_NOFILE, &few);
	while (h->n < 4096 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		h->fd[h->n++] = fd;
	while (spare-- > 0 && h->n > 0)
		close(h->fd[--h->n]);
}

static inline void t_fds_back(struct t_fds *h)
{
	while (h->n > 0)
		close(h->fd[--h->n]);
	setrlimit(RLIMIT_NOFILE, &h->saved);
}

/* Run the Check suite in fork mode and exit with its verdict. */
static inline int t_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

#endif /* SHOAL_TESTUTIL_H */
