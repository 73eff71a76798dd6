#!/bin/sh
# bench/top.sh - what one refresh of `shoal top` costs the machine it
# watches (bench/top_bench.c), one JSON object per line: 1,000 and 10,000
# objects held by 10 and 100 processes. Not in bench/run's default parts
# (it fills the objects' directory with 10,000 arrays and starts 100
# processes for a moment): run it as `bench/run top`, or alone after
# `make bench/top_bench`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
b="$SHOAL_BUILDDIR/bench"
"$b/top_bench" 1000 10 5 "$SHOAL_BUILDDIR/tools/shoal"
"$b/top_bench" 10000 100 5 "$SHOAL_BUILDDIR/tools/shoal"
