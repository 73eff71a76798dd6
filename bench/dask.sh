#!/bin/sh
# bench/dask.sh - Dask with shoal.dask against plain Dask in the same run
# (bench/dask_bench.py): 4 workers shuffle 1 GiB of 64 MiB blocks; one JSON
# object per line. Peak memory near 5 GiB (plain Dask's copies) and 1 GiB
# in /dev/shm. Called by bench/run, which sets SHOAL_LIBRARY, PYTHONPATH
# and PYTHON; runnable alone after a build too.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
exec "$PYTHON" "$here/dask_bench.py" "$@"
