#!/bin/sh
# bench/reap.sh - the reaper, the ledger lock and the shoal command's ls
# and gc (bench/reap_bench.c, bench/lock_bench.c), one JSON object per
# line. Not in bench/run's default
# parts (it fills /dev/shm with 10,000 objects for a moment): run it as
# `bench/run reap`, or alone after `make bench/reap_bench bench/lock_bench`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
b="$SHOAL_BUILDDIR/bench"
"$b/lock_bench" 1000000
"$b/reap_bench" attach 20000
"$b/reap_bench" reap 1000
"$b/reap_bench" reap 10000
"$b/reap_bench" unlink 1000
"$b/reap_bench" cli 1000 "$SHOAL_BUILDDIR/tools/shoal"
"$b/reap_bench" cli 10000 "$SHOAL_BUILDDIR/tools/shoal"
