//go:build race

package rawio

import "sync/atomic"

// ioSync stands for the kernel between a write and a later read: package
// syscall tells the race detector that a read happens after the writes
// before it, so that tests which hand data through a socket see the
// writer's memory as the reader's. Atomic operations are what the race
// detector sees as such an order from outside package runtime.
var ioSync atomic.Int64

func acquire() { ioSync.Load() }
func release() { ioSync.Add(1) }
