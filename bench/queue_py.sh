#!/bin/sh
# bench/queue_py.sh - the Python queue's figures, one JSON object per line
# (see bench/run): shoal.Queue against pyzmq PUSH/PULL over ipc (Debian's
# python3-zmq) and multiprocessing.Queue between two processes, and the
# cost of one get or put against the bare ctypes call it makes, each
# measured in the same run. QUEUE_ROUNDS (default 5) runs per figure; the
# median is reported (the fastest for the per-call figures).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
r=${QUEUE_ROUNDS:-5}
if ! "$PYTHON" -c "import zmq" 2>/dev/null; then
	echo "bench/queue_py.sh: $PYTHON has no zmq (apt-get install python3-zmq)" >&2
	exit 2
fi

floor=$("$PYTHON" "$here/queue_py.py" floor "$r")
py11=$("$PYTHON" "$here/queue_py.py" 1to1 "$r")
pybat=$("$PYTHON" "$here/queue_py.py" batch "$r")
pyobj=$("$PYTHON" "$here/queue_py.py" obj "$r")

"$PYTHON" - "$floor" "$py11" "$pybat" "$pyobj" <<'PY'
import json, sys
floor, py11, pybat, pyobj = (json.loads(a) for a in sys.argv[1:])
def line(name, value, unit, peers):
    print(json.dumps({"name": name, "value": value, "unit": unit, "peers": peers}))
line("queue.py.get_ns", floor["get"], "ns",
     {"floor_call": floor["floor_call"], "pop_no_copy": floor["pop_no_copy"]})
line("queue.py.put_ns", floor["put"], "ns",
     {"floor_call": floor["floor_put"], "send_with_len": floor["send_with_len"]})
for name, res, unit in (("queue.py.1to1", py11, "msgs/s"), ("queue.py.batch", pybat, "msgs/s"),
                        ("queue.py.obj", pyobj, "objs/s")):
    line(name, res["shoal"], unit, {k: v for k, v in res.items() if k != "shoal"})
PY
