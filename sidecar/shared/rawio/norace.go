//go:build !race

package rawio

// acquire and release order a write before a later read for the race
// detector (race.go); without it, nothing.
func acquire() {}
func release() {}
