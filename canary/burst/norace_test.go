//go:build !race

package burst_test

const raceOn = false
