/* hello.c - the README's C example: a child reads what its parent wrote. */
#include <shoal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	struct shoal_segment *seg, *view;
	int rc = shoal_segment_create("hello", 1 << 20, NULL, &seg);

	if (rc) {
		fprintf(stderr, "create: %s\n", shoal_strerror(rc));
		return 1;
	}
	strcpy(shoal_segment_data(seg), "hello from the parent");
	if (fork() == 0) { /* any process may open it by name */
		if (shoal_segment_open("hello", SHOAL_RDONLY, &view) == 0)
			printf("child read: %s\n", (char *)shoal_segment_data(view));
		fflush(stdout);
		_exit(0);
	}
	wait(NULL);
	shoal_segment_close(seg);
	return shoal_unlink("hello") ? 1 : 0;
}
