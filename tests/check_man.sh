#!/bin/sh
# tests/check_man.sh - the C API's man pages (man/*.3) are complete and clean:
#  - every SHOAL_API function in include/shoal.h has a page of its own name,
#    a full page or a ".so man3/<page>.3" link to one that exists;
#  - every page in man/ is installed (listed in man/Makemodule.am);
#  - every page renders with `man --warnings -l` at 80 columns with nothing
#    on stderr (links are read through a man3/ directory, as installed);
#  - the pages say what the header says: man/gen-man.py, run again on
#    include/shoal.h with configure.ac's version, writes the same pages.
# Skipped (77) when man(1) is not installed (Debian: man-db, groff-base).
set -u
top=${srcdir:-$(dirname "$0")/..}
top=$(cd "$top" && pwd)
man_dir="$top/man"
fail=0

if ! command -v man >/dev/null 2>&1 || ! command -v groff >/dev/null 2>&1; then
	echo "SKIP: man or groff is not installed (man-db, groff-base)"
	exit 77
fi

# 1. a page per public function
funcs=$(sed -n 's/^SHOAL_API[^(]*[ *]\(shoal_[a-z0-9_]*\)(.*/\1/p' "$top/include/shoal.h")
n=0
for f in $funcs; do
	n=$((n + 1))
	page="$man_dir/$f.3"
	if [ ! -f "$page" ]; then
		echo "FAIL: $f has no man page (man/$f.3)"
		fail=1
		continue
	fi
	target=$(sed -n '1s/^\.so man3\/\(.*\)$/\1/p' "$page")
	if [ -n "$target" ] && [ ! -f "$man_dir/$target" ]; then
		echo "FAIL: man/$f.3 links to man3/$target, which is not in man/"
		fail=1
	fi
done
if [ "$n" -lt 50 ]; then
	echo "FAIL: found only $n SHOAL_API functions in include/shoal.h"
	fail=1
fi

# 2. every page is installed
for p in "$man_dir"/*.3; do
	b=$(basename "$p")
	if ! grep -q "man/$b\\b" "$man_dir/Makemodule.am"; then
		echo "FAIL: man/$b is not listed in man/Makemodule.am (not installed)"
		fail=1
	fi
done

# 3. every page renders without a warning
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ln -s "$man_dir" "$tmp/man3"
pages=0
for p in "$man_dir"/*.3; do
	b=$(basename "$p")
	pages=$((pages + 1))
	err=$(cd "$tmp" && MANWIDTH=80 man --warnings -l "man3/$b" 2>&1 >/dev/null)
	if [ -n "$err" ]; then
		echo "FAIL: man/$b renders with warnings:"
		echo "$err"
		fail=1
	fi
	out=$(cd "$tmp" && MANWIDTH=80 man -l "man3/$b" 2>/dev/null | wc -l)
	if [ "$out" -lt 5 ]; then
		echo "FAIL: man/$b renders to $out lines"
		fail=1
	fi
done

# 4. the pages are the header's kernel-doc as it is now
ver=$(sed -n 's/^m4_define(\[shoal_\(major\|minor\|patch\)\], \[\([0-9]*\)\])$/\2/p' "$top/configure.ac" |
	paste -sd.)
mkdir "$tmp/gen"
if ! "${PYTHON:-python3}" "$man_dir/gen-man.py" "$top/include/shoal.h" "$tmp/gen" "$ver"; then
	echo "FAIL: man/gen-man.py failed"
	fail=1
fi
for p in "$tmp"/gen/*.3; do
	b=$(basename "$p")
	if ! cmp -s "$p" "$man_dir/$b"; then
		echo "FAIL: man/$b differs from what include/shoal.h says now:" \
			"run man/gen-man.py include/shoal.h man $ver and commit"
		fail=1
	fi
done

[ "$fail" -eq 0 ] && echo "PASS: $n functions, $pages pages, no warnings"
exit "$fail"
