#!/bin/sh
# bench/pool_scale.sh - the pool oversubscribed, one JSON object per line:
#   pool.scale_c_<n>w        tasks/s of tiny tasks through the C pool (forked
#                            C workers) at n = 2, 8, 32, 128 workers, beside
#                            multiprocessing.Pool at n; of_best: the rate over
#                            the C pool's best count's
#   pool.scale_python_<n>w   the same for the Python pool (shoal.Pool.map)
#   pool.scale_c_worst, pool.scale_python_worst
#                            the worst count's rate over the best count's,
#                            beside multiprocessing.Pool's own
#   with each: CPU time and context switches per task (bench/README.md)
# Run by bench/run (which sets SHOAL_BUILDDIR, PYTHON, PYTHONPATH;
# POOL_SCALE_ROUNDS, default 5, rounds in which the counts take turns).
# Needs about 512 MiB of /dev/shm: one Python pool of each count lives
# for the whole part, 370 MB of boards (273 MB of them the 128 workers',
# 258 seats of 128 cells of 8 KiB).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
if [ ! -x "$SHOAL_BUILDDIR/bench/pool_scale" ]; then
	make -C "$SHOAL_BUILDDIR" bench/pool_scale >/dev/null
fi
"$PYTHON" "$here/pool_scale.py" "$SHOAL_BUILDDIR" "${POOL_SCALE_ROUNDS:-5}"
