//go:build race

package burst_test

// raceOn: the race detector slows the pipeline and the producer several
// times, so capacity tests scale their rates down under it.
const raceOn = true
