#!/bin/sh
# bench/array.sh - the array benchmarks (bench/array_bench.py), one JSON
# object per line. Called by bench/run, which sets SHOAL_LIBRARY, PYTHONPATH
# and PYTHON; runnable alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${SHOAL_BUILDDIR:=$here/../_build/release}"
: "${PYTHON:=/usr/bin/python3}"
: "${SHOAL_LIBRARY:=$SHOAL_BUILDDIR/lib/.libs/libshoal.so}"
PYTHONPATH="$here/../bindings/python${PYTHONPATH:+:$PYTHONPATH}"
export SHOAL_LIBRARY PYTHONPATH
exec "$PYTHON" "$here/array_bench.py" "$@"
