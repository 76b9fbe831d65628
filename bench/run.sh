#!/bin/sh
# Runs the Warden bench from anywhere; the same as `go run ./bench` from the repository root.
# Flags pass through:
#   bench/run.sh                                                      # full run
#   bench/run.sh -duration 2s -warmup 1s -rounds 1 -open-loop=false   # smoke
#   bench/run.sh -out bench/results                                   # also write bench/results/<date>-<sha>.md
set -e
cd "$(dirname "$0")/.."
exec go run ./bench "$@"
