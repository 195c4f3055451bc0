package routing

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

func TestOrder(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		cands   []Candidate
		want    []int
		wantErr error
	}{
		{
			name:    "one candidate",
			pattern: "balanced",
			cands:   []Candidate{{Key: "a", Weight: 1}},
			want:    []int{0},
		},
		{
			name:    "unusable candidates are skipped",
			pattern: "balanced",
			cands:   []Candidate{{Key: "a", Weight: 0}, {Key: "b", Weight: 2}, {Key: "c", Weight: -1}},
			want:    []int{1},
		},
		{
			name:    "closest: tiers by cost, whatever their weight or load",
			pattern: "closest",
			cands: []Candidate{
				{Key: "far", Cost: 9, Weight: 100},
				{Key: "mid", Cost: 2, Weight: 50},
				{Key: "local", Cost: 0, Weight: 1, Outstanding: 1000},
				{Key: "gone", Cost: 0, Weight: 0},
			},
			want: []int{2, 1, 0},
		},
		{
			name:    "no candidates",
			pattern: "balanced",
			wantErr: ErrNoEndpoint,
		},
		{
			name:    "all unusable",
			pattern: "closest",
			cands:   []Candidate{{Key: "a"}, {Key: "b", Weight: -3}},
			wantErr: ErrNoEndpoint,
		},
		{
			name:    "multicast",
			pattern: "multicast",
			cands:   []Candidate{{Key: "a", Weight: 1}},
			wantErr: model.ErrMulticast,
		},
		{
			name:    "multicast is refused even without candidates",
			pattern: "multicast",
			wantErr: model.ErrMulticast,
		},
		{
			name:    "unknown pattern",
			pattern: "roundrobin",
			cands:   []Candidate{{Key: "a", Weight: 1}},
			wantErr: model.ErrUnknownPattern,
		},
		{
			name:    "names as written are not parsed",
			pattern: "Closest",
			cands:   []Candidate{{Key: "a", Weight: 1}},
			wantErr: model.ErrUnknownPattern,
		},
		{
			name:    "empty pattern is balanced",
			pattern: "",
			cands:   []Candidate{{Key: "a", Weight: 1}},
			want:    []int{0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewPicker(1).Order(tt.pattern, tt.cands)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Order() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Order() (-got +want):\n%s", diff)
			}
		})
	}
}

// TestErrorMessages checks that Order refuses with the validator's words,
// the ones the site file and the Kubernetes source use.
func TestErrorMessages(t *testing.T) {
	p := NewPicker(1)
	for _, pattern := range []string{"roundrobin", "multicast"} {
		_, err := p.Order(pattern, nil)
		want := model.CheckRouting(model.TCP, model.Pattern(pattern))
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("Order(%q) error = %v, want %v", pattern, err, want)
		}
	}
}

// TestOrderIsPermutation checks that every usable candidate appears exactly
// once, and that a seed replays the same orders.
func TestOrderIsPermutation(t *testing.T) {
	cands := []Candidate{
		{Key: "a", Cost: 0, Weight: 1},
		{Key: "b", Cost: 1, Weight: 3, Outstanding: 4},
		{Key: "c", Cost: 1, Weight: 0},
		{Key: "d", Cost: 2, Weight: 2},
		{Key: "e", Cost: 1, Weight: 1, Outstanding: 1},
	}
	for _, pattern := range []string{"balanced", "closest"} {
		t.Run(pattern, func(t *testing.T) {
			p1, p2 := NewPicker(42), NewPicker(42)
			for range 100 {
				got, err := p1.Order(pattern, cands)
				if err != nil {
					t.Fatal(err)
				}
				again, _ := p2.Order(pattern, cands)
				if diff := cmp.Diff(got, again); diff != "" {
					t.Fatalf("same seed, different order (-got +want):\n%s", diff)
				}
				sorted := slices.Sorted(slices.Values(got))
				if diff := cmp.Diff(sorted, []int{0, 1, 3, 4}); diff != "" {
					t.Fatalf("Order() = %v is not a permutation of the usable candidates (-got +want):\n%s", got, diff)
				}
			}
		})
	}
}

// shares runs n orders and returns, for each candidate, the fraction of
// orders that put it at position pos.
func shares(t *testing.T, pattern string, cands []Candidate, pos, n int) []float64 {
	t.Helper()
	p := NewPicker(2024)
	count := make([]int, len(cands))
	for range n {
		order, err := p.Order(pattern, cands)
		if err != nil {
			t.Fatal(err)
		}
		count[order[pos]]++
	}
	out := make([]float64, len(cands))
	for i, c := range count {
		out[i] = float64(c) / float64(n)
	}
	return out
}

func TestBalancedProportions(t *testing.T) {
	const n, tolerance = 3000, 0.03 // one standard deviation is under 0.01
	tests := []struct {
		name  string
		cands []Candidate
		pos   int
		want  []float64
	}{
		{
			name:  "2:1 endpoints at equal cost",
			cands: []Candidate{{Key: "two", Cost: 1, Weight: 2}, {Key: "one", Cost: 1, Weight: 1}},
			want:  []float64{2.0 / 3, 1.0 / 3},
		},
		{
			name:  "cost 0 against cost 1, equal weight",
			cands: []Candidate{{Key: "local", Cost: 0, Weight: 1}, {Key: "remote", Cost: 1, Weight: 1}},
			want:  []float64{2.0 / 3, 1.0 / 3},
		},
		{
			name: "outstanding streams lower a share",
			// weights 1/(1+3) = 0.25 and 1: 0.2 and 0.8.
			cands: []Candidate{{Key: "busy", Weight: 1, Outstanding: 3}, {Key: "idle", Weight: 1}},
			want:  []float64{0.2, 0.8},
		},
		{
			name: "outstanding counts per endpoint",
			// 4/(1+4/4) = 2 against 1/(1+0) = 1.
			cands: []Candidate{{Key: "big", Weight: 4, Outstanding: 4}, {Key: "small", Weight: 1}},
			want:  []float64{2.0 / 3, 1.0 / 3},
		},
		{
			name:  "equal candidates share equally",
			cands: []Candidate{{Key: "a", Cost: 2, Weight: 3}, {Key: "b", Cost: 2, Weight: 3}, {Key: "c", Cost: 2, Weight: 3}},
			want:  []float64{1.0 / 3, 1.0 / 3, 1.0 / 3},
		},
		{
			name: "failover: second place is a draw without replacement",
			// Weights 2,1,1. P(second = a) = P(b first)*2/3 + P(c first)*2/3
			// = 1/4*2/3*2 = 1/3; b and c: 1/2*1/2 + 1/4*1/3 = 1/3 each.
			cands: []Candidate{{Key: "a", Weight: 2}, {Key: "b", Weight: 1}, {Key: "c", Weight: 1}},
			pos:   1,
			want:  []float64{1.0 / 3, 1.0 / 3, 1.0 / 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := shares(t, "balanced", tt.cands, tt.pos, n)
			for i := range got {
				if math.Abs(got[i]-tt.want[i]) > tolerance {
					t.Errorf("share of %s at position %d = %.3f, want %.3f±%.2f", tt.cands[i].Key, tt.pos, got[i], tt.want[i], tolerance)
				}
			}
		})
	}
}

func TestClosest(t *testing.T) {
	cands := []Candidate{
		{Key: "far", Cost: 5, Weight: 1},
		{Key: "near-1", Cost: 1, Weight: 1},
		{Key: "far-busy", Cost: 5, Weight: 1, Outstanding: 100},
		{Key: "near-2", Cost: 1, Weight: 2},
		{Key: "mid", Cost: 3, Weight: 10},
	}
	p := NewPicker(7)
	const n = 3000
	first := map[string]int{}
	for range n {
		order, err := p.Order("closest", cands)
		if err != nil {
			t.Fatal(err)
		}
		var costs []int
		for _, i := range order {
			costs = append(costs, cands[i].Cost)
		}
		if diff := cmp.Diff(costs, []int{1, 1, 3, 5, 5}); diff != "" {
			t.Fatalf("failover tiers not in cost order (-got +want):\n%s", diff)
		}
		first[cands[order[0]].Key]++
	}
	// Within the lowest tier, balanced: 2:1 endpoints.
	if got := float64(first["near-2"]) / n; math.Abs(got-2.0/3) > 0.03 {
		t.Errorf("near-2 first in %.3f of orders, want about 0.667", got)
	}
}

func TestConcurrent(t *testing.T) {
	p := NewPicker(1)
	cands := []Candidate{{Key: "a", Weight: 1}, {Key: "b", Weight: 2, Cost: 1}}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 500 {
				if _, err := p.Order([]string{"balanced", "closest"}[g%2], cands); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestExtremeValues(t *testing.T) {
	cands := []Candidate{
		{Key: "huge-cost", Cost: math.MaxInt, Weight: 1},
		{Key: "huge-load", Weight: 1, Outstanding: math.MaxInt},
		{Key: "huge-weight", Weight: math.MaxInt},
		{Key: "negative", Cost: -5, Weight: 1, Outstanding: -5},
	}
	p := NewPicker(3)
	for _, pattern := range []string{"balanced", "closest"} {
		order, err := p.Order(pattern, cands)
		if err != nil {
			t.Fatal(err)
		}
		if len(order) != len(cands) {
			t.Errorf("%s: Order() = %v, want all %d candidates", pattern, order, len(cands))
		}
	}
}

func BenchmarkOrder(b *testing.B) {
	cands := make([]Candidate, 10)
	for i := range cands {
		cands[i] = Candidate{Key: fmt.Sprintf("site-%d", i), Cost: i % 3, Weight: 1 + i%4, Outstanding: i * 2}
	}
	for _, pattern := range []string{"balanced", "closest"} {
		b.Run(pattern, func(b *testing.B) {
			p := NewPicker(1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Order(pattern, cands); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
