/* seg_reader NAME TEXT: exit 0 if segment NAME begins with TEXT. Exec'd by
 * check_segment, so the reader shares nothing with the writer but the name. */
#include <shoal.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct shoal_segment *s;
	int same;

	if (argc != 3 || shoal_segment_open(argv[1], SHOAL_RDONLY, &s) != 0)
		return 2;
	same = shoal_segment_size(s) >= strlen(argv[2]) &&
	       memcmp(shoal_segment_data(s), argv[2], strlen(argv[2])) == 0;
	shoal_segment_close(s);
	return same ? 0 : 1;
}
