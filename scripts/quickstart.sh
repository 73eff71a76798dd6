#!/bin/sh
# quickstart.sh demo|test - the README's two commands.
#
#   demo: install what is missing, build, run the demo.
#   test: install what is missing, build, run the whole test suite: a normal
#         build and an ASan+UBSan build, C tests, Python tests, examples.
#
# Idempotent, quiet when everything is already there. Debian 12 (apt-get);
# run as root, or with sudo available.
set -eu
mode=${1:-}
case "$mode" in
demo | test) ;;
*) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
top=$(pwd)

pkgs="build-essential autoconf automake libtool pkg-config check python3 python3-numpy python3-pytest libboost-dev"
missing=
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "installing:$missing"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

log=$top/_build/log
mkdir -p "$log"
quiet() { # quiet NAME CMD...: run, show the output only on failure
	name=$1
	shift
	if ! "$@" >"$log/$name.log" 2>&1; then
		cat "$log/$name.log"
		echo "quickstart: '$*' failed (log: $log/$name.log)" >&2
		exit 1
	fi
}
[ -x configure ] || quiet autoreconf autoreconf -fi
build() { # build DIR CONFIGURE-ARGS...
	dir=$top/_build/$1
	shift
	mkdir -p "$dir"
	[ -f "$dir/Makefile" ] || (cd "$dir" && quiet "configure-${dir##*/}" "$top/configure" PYTHON=/usr/bin/python3 --enable-Werror "$@")
	quiet "make-${dir##*/}" make -C "$dir" -j"$(nproc)"
}

build release
if [ "$mode" = demo ]; then
	exec "$top/_build/release/examples/demo"
fi

echo "== test suite (release build)"
make -C _build/release -s check
echo "== test suite (ASan + UBSan build)"
build asan --enable-sanitizers
make -C _build/asan -s check
echo "quickstart: all tests passed"
