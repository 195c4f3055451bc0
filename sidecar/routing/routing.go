package routing

import (
	"cmp"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// ErrNoEndpoint reports that no candidate is usable.
var ErrNoEndpoint = errors.New("no usable endpoint")

// Candidate is one place a connection can go.
type Candidate struct {
	// Key is opaque to routing: a site name or a local endpoint host:port.
	Key string
	// Cost is the path cost; 0 for local endpoints. Negative counts as 0.
	Cost int
	// Weight is the number of endpoints behind the candidate: 1 for one
	// local endpoint, N for a remote site with N. Candidates with
	// Weight <= 0 are not used.
	Weight int
	// Outstanding is the number of streams currently open to it. Negative
	// counts as 0.
	Outstanding int
}

// share is the candidate's weight in the balanced draw:
// Weight / ((1+Cost) * (1+Outstanding/Weight)).
func (c Candidate) share() float64 {
	w := float64(c.Weight)
	return w / ((1 + float64(max(c.Cost, 0))) * (1 + float64(max(c.Outstanding, 0))/w))
}

// Picker orders candidates. It is safe for concurrent use.
type Picker struct {
	mu  sync.Mutex
	rng *rand.Rand
}

// NewPicker returns a Picker whose random source is seeded with seed, so
// that tests can replay its choices.
func NewPicker(seed uint64) *Picker {
	return &Picker{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// pick is one usable candidate and its draw.
type pick struct {
	tier int     // 0 for balanced; the cost for closest
	draw float64 // exponential clock: smaller goes first
	i    int     // index into the caller's candidates
}

// Order returns indexes into cands in the order to try them: the first is
// the chosen one, the rest the failover order. Candidates with Weight <= 0
// are left out; if none is left, Order returns [ErrNoEndpoint]. pattern is
// "balanced" ("" too) or "closest"; for any other, Order returns what
// [model.CheckRouting] says of it for a connection: multicast wraps
// [model.ErrMulticast], an unknown pattern [model.ErrUnknownPattern].
//
// The balanced order is a weighted random draw without replacement: each
// candidate i is drawn first with probability w_i/Σw, where w_i is
// Weight/((1+Cost)*(1+Outstanding/Weight)), the next among the rest by the
// same rule, and so on. The closest order sorts by Cost and draws within
// each cost tier the same way.
func (p *Picker) Order(pattern string, cands []Candidate) ([]int, error) {
	// A connection is routed as TCP whatever the address's protocol.
	if err := model.CheckRouting(model.TCP, model.Pattern(pattern)); err != nil {
		return nil, err
	}
	tiered := model.Pattern(pattern) == model.Closest

	// Each usable candidate gets an exponential clock with rate w_i;
	// sorting by the clocks is a weighted draw without replacement (the
	// first to ring has probability w_i/Σw, and, the clocks being
	// memoryless, so on for the rest).
	var buf [16]pick
	picks := buf[:0]
	p.mu.Lock()
	for i, c := range cands {
		if c.Weight <= 0 {
			continue
		}
		pk := pick{draw: p.rng.ExpFloat64() / c.share(), i: i}
		if tiered {
			pk.tier = max(c.Cost, 0)
		}
		picks = append(picks, pk)
	}
	p.mu.Unlock()
	if len(picks) == 0 {
		return nil, ErrNoEndpoint
	}
	slices.SortFunc(picks, func(a, b pick) int {
		return cmp.Or(cmp.Compare(a.tier, b.tier), cmp.Compare(a.draw, b.draw), cmp.Compare(a.i, b.i))
	})
	order := make([]int, len(picks))
	for k, pk := range picks {
		order[k] = pk.i
	}
	return order, nil
}
