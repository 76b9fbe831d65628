//go:build race

package main

// raceEnabled: the race detector slows every memory access, so timing tests skip.
const raceEnabled = true
