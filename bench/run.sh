#!/bin/sh
# Runs the Warden bench from anywhere: bench/ is its own module (ghz's ~240 modules stay out
# of Warden's go.mod), so `go run ./bench` from the root cannot work. Flags pass through:
#   bench/run.sh                                                   # full run
#   bench/run.sh -duration 2s -warmup 1s -rounds 1 -open-loop=false   # smoke
#   bench/run.sh -out results                                      # also write results/<date>-<sha>.md
set -e
cd "$(dirname "$0")"
exec go run . "$@"
