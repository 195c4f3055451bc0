package bpf

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/skiff-io/skiff/test/testutil"
)

// BenchmarkConnect measures, in one run and on one pod, connect + first
// byte from the pod's app to a server in the root netns three ways:
//
//	direct    app -> server
//	iptables  app -> (nat REDIRECT) -> sidecar -> server
//	ebpf      app -> (connect4, sockops, getsockopt) -> sidecar -> server
//
// Each sub-benchmark runs b.N connections one after another (latency
// percentiles) and b.N more over 8 workers (connections per second), in a
// helper process inside the pod. ebpf then runs the same again with
// BPF_ENABLE_STATS on and reports the kernel's run time of the hooks per
// connection. hack/bench/ebpf.sh
// runs it and prints ratios against direct. No timing is asserted.
func BenchmarkConnect(b *testing.B) {
	e := requireEnv(b)
	iptables := testutil.RequireTool(b, "iptables")[0]
	bin := e.buildRouter(b)
	r := e.load(b)
	p := e.newPod(b, "bench", 2)
	server := oneByteServer(b, p.hostIP4+":9090")
	vip := p.hostIP4 + ":8080"
	if err := r.SetServices([]netip.AddrPort{netip.MustParseAddrPort(vip)}); err != nil {
		b.Fatal(err)
	}
	p.startSidecar(b, bin, fmt.Sprintf(`name: pod
dataDir: data
listeners:
  - {address: backend, host: %s, port: 8080}
connectors:
  - {address: backend, host: %s, port: 9090}
`, p.hostIP4, p.hostIP4))

	loop := func(b *testing.B, addr string, report bool) loopResult {
		n := max(b.N, 50)
		cmd := p.command("app", 0, e.helper, addr, fmt.Sprint(n), "8")
		cmd.Env = append(os.Environ(), helperEnv+"=loop")
		out, err := cmd.Output()
		if err != nil {
			b.Fatalf("loop to %s: %v\n%s", addr, err, out)
		}
		var res loopResult
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("loop output %q: %v", out, err)
		}
		if res.Errors > 0 {
			b.Errorf("%d of %d connections failed", res.Errors, 2*n)
		}
		b.ReportMetric(0, "ns/op") // the helper's wall time says nothing per op
		if report {
			b.ReportMetric(res.P50us, "p50-µs")
			b.ReportMetric(res.P99us, "p99-µs")
			b.ReportMetric(res.ConnPerSec, "conn/s")
		}
		return res
	}

	b.Run("direct", func(b *testing.B) { loop(b, server, true) })

	b.Run("iptables", func(b *testing.B) {
		rules := [][]string{
			{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "owner", "--uid-owner", "1337", "-j", "RETURN"},
			{"-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", p.hostIP4, "--dport", "8080", "-j", "REDIRECT", "--to-ports", "15001"},
		}
		for _, rule := range rules {
			p.nsRun(append([]string{iptables}, rule...)...)
		}
		defer p.nsRun(iptables, "-t", "nat", "-F", "OUTPUT")
		loop(b, vip, true)
	})

	b.Run("ebpf", func(b *testing.B) {
		detach, err := r.Attach(p.cgroup)
		if err != nil {
			b.Fatal(err)
		}
		defer detach.Close()
		loop(b, vip, true)
		// Then once more with the kernel's run-time accounting on, which
		// costs time of its own, for the hooks' share.
		stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			b.Logf("no BPF run-time stats: %v", err)
		} else {
			defer stats.Close()
		}
		before, err := r.RunStats()
		if err != nil {
			b.Fatal(err)
		}
		res := loop(b, vip, false)
		after, err := r.RunStats()
		if err != nil {
			b.Fatal(err)
		}
		conns := float64(2 * res.Count)
		var total float64
		names := make([]string, 0, len(after))
		for name := range after {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			d := RunStats{Runs: after[name].Runs - before[name].Runs, Runtime: after[name].Runtime - before[name].Runtime}
			total += float64(d.Runtime.Nanoseconds())
			b.ReportMetric(float64(d.PerRun().Nanoseconds()), name+"-ns/run")
			b.ReportMetric(float64(d.Runs)/conns, name+"-runs/conn")
		}
		// Per app connection: its own hooks and its sidecar's (the
		// sidecar's dial to the server runs connect4 and sockops too).
		b.ReportMetric(total/conns, "hooks-ns/conn")
	})
}

// oneByteServer accepts connections and writes one byte to each.
func oneByteServer(t testing.TB, addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte{'x'})
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}
