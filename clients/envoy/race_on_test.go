//go:build race

package envoy_test

// raceEnabled: the race detector makes sync.Pool drop items, so allocation counts differ.
const raceEnabled = true
