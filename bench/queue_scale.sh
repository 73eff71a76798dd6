#!/bin/sh
# bench/queue_scale.sh - the queue at scale, one JSON object per line (see
# bench/run): the 1to1 rate with 1024 and 4096 handles on the queue against
# the same queue with 2, and 64 producers x 64 consumers on one queue of 64
# slots (throughput, and the p99 and longest time inside one blocking pop)
# against a pipe and a POSIX message queue of 64 messages. SCALE_ROUNDS
# (default 3) runs per figure, peers interleaved; the median is reported.
set -eu
b="$SHOAL_BUILDDIR/bench"
r=${SCALE_ROUNDS:-3}
if [ ! -x "$b/queue_scale" ]; then
	echo "bench/queue_scale.sh: $b/queue_scale is not built (make bench)" >&2
	exit 2
fi
h1k=$("$b/queue_scale" handles 1022 "$r")
h4k=$("$b/queue_scale" handles 4094 "$r")
fair=""
i=0
while [ "$i" -lt "$r" ]; do
	for t in shoal pipe mqueue; do
		fair="$fair $t=$("$b/queue_scale" fair 64 64 64 150000 "$t" | tr -d ' ')"
	done
	i=$((i + 1))
done

"$PYTHON" - "$h1k" "$h4k" $fair <<'PY'
import json, statistics, sys
h1k, h4k = (json.loads(a) for a in sys.argv[1:3])
runs = {}
for arg in sys.argv[3:]:
    t, res = arg.split("=", 1)
    runs.setdefault(t, []).append(json.loads(res))
def med(t, k):
    return statistics.median(r[k] for r in runs[t])
for name, h in (("queue.c.1to1_1k_handles", h1k), ("queue.c.1to1_4k_handles", h4k)):
    print(json.dumps({"name": name, "value": h["shoal"], "unit": "M msgs/s",
                      "peers": {"two_handles": h["two_handles"], "handles": h["handles"]}}))
ctx = {"mqueue_capacity": runs["mqueue"][0]["capacity"]}
print(json.dumps({"name": "queue.c.64x64", "value": med("shoal", "tput"), "unit": "msgs/s",
                  "peers": {"pipe": med("pipe", "tput"), "mqueue": med("mqueue", "tput"), **ctx}}))
for k in ("p99", "max"):
    print(json.dumps({"name": "queue.c.64x64_pop_" + k, "value": med("shoal", k), "unit": "us",
                      "peers": {"pipe": med("pipe", k), "mqueue": med("mqueue", k),
                                "p50": med("shoal", "p50"), **ctx}}))
PY
