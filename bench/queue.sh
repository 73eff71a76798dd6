#!/bin/sh
# bench/queue.sh - the queue's figures, one JSON object per line (see
# bench/run): shoal against a pipe, a mutex+condvar ring in shared memory and
# Boost.Interprocess message_queue (C), each measured in the same run on the same work. QUEUE_ROUNDS (default 5)
# runs per figure; the median is reported.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
b="$SHOAL_BUILDDIR/bench"
r=${QUEUE_ROUNDS:-5}
for prog in queue_bench queue_boost; do
	if [ ! -x "$b/$prog" ]; then
		echo "bench/queue.sh: $b/$prog is not built (make bench)" >&2
		exit 2
	fi
done

c11=$("$b/queue_bench" tput 1 1 "$r")
c11b=$("$b/queue_boost" tput 1 "$r")
c21=$("$b/queue_bench" tput 2 1 "$r")
c21b=$("$b/queue_boost" tput 2 "$r")
cbat=$("$b/queue_bench" tput 1 32 "$r")
wake=$("$b/queue_bench" wake 301)
wakeb=$("$b/queue_boost" wake 301)

"$PYTHON" - "$c11" "$c11b" "$c21" "$c21b" "$cbat" "$wake" "$wakeb" <<'PY'
import json, sys
c11, c11b, c21, c21b, cbat, wake, wakeb = sys.argv[1:]
def line(name, res, unit, boost=None):
    res = json.loads(res)
    peers = {k: v for k, v in res.items() if k != "shoal"}
    if boost is not None:
        peers["boost_mq"] = float(boost)
    print(json.dumps({"name": name, "value": res["shoal"], "unit": unit, "peers": peers}))
line("queue.c.1to1", c11, "M msgs/s", c11b)
line("queue.c.2to1", c21, "M msgs/s", c21b)
line("queue.c.batch", cbat, "M msgs/s")
line("queue.c.wake_us", wake, "us", wakeb)
PY
