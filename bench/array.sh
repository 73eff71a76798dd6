#!/bin/sh
# bench/array.sh - the array benchmarks (bench/array_bench.py), one JSON
# object per line. Called by bench/run, which sets SHOAL_LIBRARY, PYTHONPATH
# and PYTHON; runnable alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
exec "$PYTHON" "$here/array_bench.py" "$@"
