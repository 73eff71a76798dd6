#!/bin/sh
# bench/holders.sh - attach + close of an array that 1, 64, 1024 and 4096
# other processes hold, beside SharedMemory (bench/holders_bench.py, with
# the C holders of bench/holders_bench.c), and an attach into a full ledger
# of dead holders (the lock wait it imposes), one JSON object per line.
# Needs `make bench/holders_bench`; forks up to 4096 small processes for a
# moment, and some 17,000 short-lived ones (64 at a time) for the full
# ledger. Arguments: holder counts and/or "full" (default: all).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/python-env.sh"
exec "$PYTHON" "$here/holders_bench.py" "$@"
