#!/bin/sh
# make soak: the queue's crash test (kill, respawn, check nothing is lost,
# duplicated or torn) for SHOAL_QUEUE_SOAK seconds instead of two.
# Run from the build directory.
: "${SHOAL_QUEUE_SOAK:=300}"
export SHOAL_QUEUE_SOAK
CK_RUN_CASE=crash CK_DEFAULT_TIMEOUT=$((SHOAL_QUEUE_SOAK + 300)) exec tests/check_queue
