//go:build race

package webhook_test

// raceEnabled: the race detector makes sync.Pool drop items, so allocation guards are off.
const raceEnabled = true
