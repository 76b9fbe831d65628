//go:build race

package authn

// raceEnabled: the race detector slows every memory access, so timing tests skip.
const raceEnabled = true
