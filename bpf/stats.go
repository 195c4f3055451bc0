package bpf

import (
	"fmt"
	"time"
)

// Counters count what one program did: connects redirected (connect4/6),
// original destinations moved to the 4-tuple map (sockops) or answered
// (getsockopt); passed untouched; failed (the connect or getsockopt went
// on as if no program ran).
type Counters struct {
	Redirected uint64 `json:"redirected"`
	Passed     uint64 `json:"passed"`
	Errors     uint64 `json:"errors"`
}

// Stats are the counters of every program, summed over CPUs. They live in
// a pinned map, so they count from the first Load, across restarts.
type Stats struct {
	Connect4   Counters `json:"connect4"`
	Connect6   Counters `json:"connect6"`
	Sockops    Counters `json:"sockops"`
	Getsockopt Counters `json:"getsockopt"`
}

// Stats reads the counters.
func (r *Redirector) Stats() (Stats, error) {
	var s Stats
	for i, dst := range []*Counters{&s.Connect4, &s.Connect6, &s.Sockops, &s.Getsockopt} {
		var perCPU []redirectCounters
		if err := r.objs.Counters.Lookup(uint32(i), &perCPU); err != nil {
			return s, explain("read counters", err, r.cfg.PinDir)
		}
		for _, c := range perCPU {
			dst.Redirected += c.Redirected
			dst.Passed += c.Passed
			dst.Errors += c.Errors
		}
	}
	return s, nil
}

// RunStats is the kernel's account of one program's runs; it counts only
// while kernel.bpf_stats_enabled is 1 (or EnableRunStats holds).
type RunStats struct {
	Runs    uint64        `json:"runs"`
	Runtime time.Duration `json:"runtimeNs"`
}

// PerRun is the mean time of a run.
func (s RunStats) PerRun() time.Duration {
	if s.Runs == 0 {
		return 0
	}
	return s.Runtime / time.Duration(s.Runs)
}

// RunStats returns the kernel's run count and run time of each program
// this Redirector loaded (the ones its pinned links run), by hook name.
func (r *Redirector) RunStats() (map[string]RunStats, error) {
	out := map[string]RunStats{}
	for _, h := range r.programs() {
		st, err := h.prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("stats of %s: %w", h.name, err)
		}
		out[h.name] = RunStats{Runs: st.RunCount, Runtime: st.Runtime}
	}
	return out, nil
}
