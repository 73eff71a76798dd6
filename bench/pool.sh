#!/bin/sh
# bench/pool.sh - the pool's benchmarks, one JSON object per line.
#   pool.tiny_tasks            tasks/s for a task that returns its argument,
#                              beside multiprocessing.Pool and
#                              ProcessPoolExecutor, same chunksize
#   pool.recycle_ms            decision to replacement ready, median (C fork
#                              workers), beside the Python fork pool and the
#                              per-task time of Pool(maxtasksperchild=1)
#   pool.memory_after_recycle  total worker private memory after a
#                              bloat-then-recycle cycle / at rest
# Run by bench/run (which sets SHOAL_BUILDDIR, PYTHON, PYTHONPATH).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
bin="$SHOAL_BUILDDIR/bench/pool_bench"
if [ ! -x "$bin" ]; then
	make -C "$SHOAL_BUILDDIR" bench/pool_bench >/dev/null
fi

for cs in 1 10; do
	"$PYTHON" "$here/pool_bench.py" tiny 100000 "$cs"
done
set -- $("$bin" 2000)
c_med=$1 c_task=$2
set -- $("$PYTHON" "$here/pool_bench.py" recycle 300)
py_med=$1 py_task=$2 mp_task=$3
printf '{"name": "pool.recycle_ms", "value": %s, "unit": "ms", "peers": {"c_task_ms_max_tasks_1": %s, "python_fork_recycle_ms": %s, "python_task_ms_max_tasks_1": %s, "mp_pool_task_ms_maxtasksperchild_1": %s}}\n' \
	"$c_med" "$c_task" "$py_med" "$py_task" "$mp_task"
"$PYTHON" "$here/pool_bench.py" memory
