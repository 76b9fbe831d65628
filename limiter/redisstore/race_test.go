//go:build race

package redisstore_test

// raceEnabled: the race detector slows every memory access, so timing tests skip.
const raceEnabled = true
