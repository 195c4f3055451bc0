package router

import (
	"math"
	"time"
)

// Where a new stream goes among a link's pool connections. The streams of
// one connection share its TCP byte stream, its TLS records, its writer
// and, at the far end, the one goroutine that reads it: a small request's
// frame waits behind every byte of a bulk stream queued ahead of it on
// the same connection. So a new stream goes on the quietest connection,
// not merely the one with the fewest streams: each connection costs one
// per open stream plus one per loadQuantum of stream data it carried
// lately (mux.Session.DataBytes, both directions, decayed with time
// constant loadTau). A bulk stream at 2 Gbit/s costs about 3,800, so
// small requests opened beside it go on another connection while one has
// none; among quiet connections the count of streams decides, as before.
// (docs/benchmarks.md, "A reader that never parks, and new streams on the
// quietest connection".)
const (
	loadTau     = time.Second
	loadQuantum = 64 << 10
)

// poolLoad is what one pool connection carried lately.
type poolLoad struct {
	total uint64    // the session's DataBytes at the last look
	at    time.Time // when that was; zero before the first look
	bytes float64   // bytes carried, each decayed by e^(-age/loadTau)
}

// observe folds in what the session carried since the last look (total
// is its DataBytes now) and returns the decayed bytes. The bytes since
// the last look count as spread evenly over the time since, so that a
// look after a long pause does not count old traffic as new.
func (p *poolLoad) observe(total uint64, now time.Time) float64 {
	if p.at.IsZero() || total < p.total {
		p.total, p.at = total, now
		return p.bytes
	}
	delta := float64(total - p.total)
	if dt := now.Sub(p.at); dt > 0 {
		x := float64(dt) / float64(loadTau)
		e := math.Exp(-x)
		// ∫ over the interval of (delta/dt)·e^(-age/τ): delta·(1-e^-x)/x.
		p.bytes = p.bytes*e + delta*(-math.Expm1(-x))/x
	} else {
		p.bytes += delta
	}
	p.total, p.at = total, now
	return p.bytes
}

// cost is what placing a new stream on a connection with streams open
// and load decayed bytes costs.
func poolCost(streams int, load float64) float64 {
	return float64(streams) + load/loadQuantum
}
