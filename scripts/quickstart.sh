#!/bin/sh
# quickstart.sh demo|test - the README's two commands.
#
#   demo: install what is missing, build, run the demo (examples/demo.py: a
#         pool recycling leaky workers over a 1 GiB shared array).
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

pkgs="build-essential autoconf automake libtool pkg-config check python3 python3-numpy python3-pytest python3-pytest-timeout libboost-dev python3-zmq man-db groff-base"
pkgs="$pkgs python3-joblib python3-sklearn python3-distributed python3-matplotlib tmux iproute2"
# CPython's own test suites (test_concurrent_futures, _test_multiprocessing),
# which tests/stdlib-suites.py runs against shoal.Pool.
pkgs="$pkgs libpython3.11-testsuite"
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
	SHOAL_LIBRARY="$top/_build/release/lib/.libs/libshoal.so"
	PYTHONPATH="$top/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
	export SHOAL_LIBRARY PYTHONPATH
	exec /usr/bin/python3 "$top/examples/demo.py"
fi

# Signals blocked or ignored here reach every test process (the Python
# tests reset them, see tests/python/conftest.py): say so, for the record.
for f in SigBlk SigIgn; do
	v=$(sed -n "s/^$f:[[:space:]]*//p" /proc/$$/status)
	case $v in *[1-9a-f]*) echo "quickstart: started with $f $v" ;; esac
done

# Check and pytest write their counts into the test logs; add them up so the
# run ends on one line that says how many test cases ran.
passed=0
failed=0
count() { # count LOG...: add up the test cases the logs report
	for f in "$@"; do
		[ -f "$f" ] || continue
		# Check: "100%: Checks: 19, Failures: 0, Errors: 0"
		c=$(sed -n 's/.*Checks: \([0-9]*\), Failures: \([0-9]*\), Errors: \([0-9]*\).*/\1 \2 \3/p' "$f" | tail -n 1)
		if [ -n "$c" ]; then
			set -- $c
			passed=$((passed + $1 - $2 - $3))
			failed=$((failed + $2 + $3))
		fi
		# pytest: "15 passed, 1 failed in 3.2s"
		p=$(grep -E '^[0-9]+ (passed|failed)|^=+ [0-9]+ (passed|failed)' "$f" | tail -n 1)
		if [ -n "$p" ]; then
			n=$(echo "$p" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
			m=$(echo "$p" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
			passed=$((passed + ${n:-0}))
			failed=$((failed + ${m:-0}))
		fi
	done
}
suite() { # suite NAME BUILD-DIR
	echo "== test suite ($1)"
	rc=0
	# VERBOSE: a failed test's log is printed, not only named.
	make -C "$2" -s check VERBOSE=yes || rc=$?
	count "$2"/tests/*.log "$2"/tests/python/*.log
	return $rc
}
status=0
suite "release build" _build/release || status=1
build asan --enable-sanitizers
suite "ASan + UBSan build" _build/asan || status=1
# The threaded queue stress, where ThreadSanitizer sees every access.
echo "== ThreadSanitizer: threaded queue stress"
build tsan --enable-tsan
if make -C _build/tsan -s tests/check_queue_threads >"$log/tsan.log" 2>&1 &&
	_build/tsan/tests/check_queue_threads >>"$log/tsan.log" 2>&1; then
	echo "PASS: tests/check_queue_threads under ThreadSanitizer"
else
	cat "$log/tsan.log"
	echo "FAIL: tests/check_queue_threads under ThreadSanitizer"
	status=1
fi
count "$log/tsan.log"
echo "tests: $passed passed, $failed failed"
exit $status
