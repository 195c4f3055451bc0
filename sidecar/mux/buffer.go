package mux

import (
	"math/bits"
	"sync"
)

// Receive buffers come in power-of-two size classes from 4 KiB to 16 MiB,
// each with its own pool.
const (
	minBufShift = 12
	maxBufShift = 24
)

// buffer holds received bytes; b[off:] is unread.
type buffer struct {
	b   []byte
	off int
}

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// getBuffer returns an empty buffer with room for at least n bytes
// (n ≤ 16 MiB).
func getBuffer(n int) *buffer {
	c := bufClass(n)
	if v := bufPools[c].Get(); v != nil {
		return v.(*buffer)
	}
	return &buffer{b: make([]byte, 0, 1<<(c+minBufShift))}
}

func putBuffer(b *buffer) {
	b.b, b.off = b.b[:0], 0
	bufPools[bufClass(cap(b.b))].Put(b)
}
