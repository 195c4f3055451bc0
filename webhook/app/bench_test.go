package app

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/test/testutil"
)

// BenchmarkAdmissionLatency measures pod creation latency through the real
// apiserver at a fixed rate, for pods the webhook is never asked about
// (baseline), pods it skips, and pods it injects; it reports p50 and p99
// of each and the injected/baseline ratios. It needs envtest and
// SKIFF_BENCH=1 (it takes about 30 s and stores 3000 pods):
//
//	SKIFF_BENCH=1 KUBEBUILDER_ASSETS=$PWD/bin/envtest go test -run '^$' -bench AdmissionLatency -benchtime 1x ./webhook/app
func BenchmarkAdmissionLatency(b *testing.B) {
	if os.Getenv("SKIFF_BENCH") != "1" {
		b.Skip("set SKIFF_BENCH=1 to run (about 30 s against envtest)")
	}
	e := startEnv(b)
	createNamespace(b, e, "bench-plain", false)
	const rate, seconds = 100, 10
	series := []struct {
		name, ns    string
		annotations map[string]string
	}{
		{"baseline (no webhook call)", "bench-plain", optIn},
		{"skipped (not annotated)", siteNS, nil},
		{"injected", siteNS, optIn},
	}
	p50s := map[string]time.Duration{}
	p99s := map[string]time.Duration{}
	load(b, e, siteNS, optIn, rate, 2) // warm up apiserver, etcd and connections
	for range b.N {
		for _, s := range series {
			sum0, n0 := handlerTime(b, e)
			lat, failed := load(b, e, s.ns, s.annotations, rate, seconds)
			sum1, n1 := handlerTime(b, e)
			slices.Sort(lat)
			p50, p99 := testutil.Percentile(lat, 0.50), testutil.Percentile(lat, 0.99)
			p50s[s.name], p99s[s.name] = p50, p99
			mean := 0.0
			if n1 > n0 {
				mean = (sum1 - sum0) / (n1 - n0) * 1000
			}
			fmt.Printf("%-28s %4d pods at %d/s: p50 %6.2f ms  p99 %6.2f ms  failed %d  (in the injector: mean %.3f ms over %d calls)\n",
				s.name, len(lat), rate, ms(p50), ms(p99), failed, mean, int(n1-n0))
		}
	}
	base, inj := series[0].name, series[2].name
	fmt.Printf("injected/baseline: p50 x%.2f, p99 x%.2f\n", ms(p50s[inj])/ms(p50s[base]), ms(p99s[inj])/ms(p99s[base]))
	b.ReportMetric(ms(p50s[inj]), "p50-ms")
	b.ReportMetric(ms(p99s[inj]), "p99-ms")
	b.ReportMetric(ms(p50s[base]), "baseline-p50-ms")
	b.ReportMetric(ms(p99s[base]), "baseline-p99-ms")
}

// load creates rate pods per second for seconds seconds, each in its own
// goroutine, and returns the latencies of the successful creations.
func load(b *testing.B, e *testEnv, ns string, annotations map[string]string, rate, seconds int) ([]time.Duration, int) {
	b.Helper()
	var (
		mu     sync.Mutex
		lat    []time.Duration
		failed int
		wg     sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for range rate * seconds {
		<-tick.C
		wg.Add(1)
		go func() {
			defer wg.Done()
			pod := testPod(ns, annotations, nil)
			start := time.Now()
			err := e.c.Create(b.Context(), pod)
			d := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil || (annotations != nil && ns == siteNS && sidecar(pod) == nil) {
				failed++
				return
			}
			lat = append(lat, d)
		}()
	}
	wg.Wait()
	return lat, failed
}

// handlerTime reads the injector's admission histogram: total seconds
// and calls, all results together.
func handlerTime(b *testing.B, e *testEnv) (sum, count float64) {
	b.Helper()
	resp, err := http.Get("http://" + e.metrics + "/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(value, 64)
		switch {
		case strings.HasPrefix(name, "skiff_injector_admission_duration_seconds_sum{"):
			sum += v
		case strings.HasPrefix(name, "skiff_injector_admission_duration_seconds_count{"):
			count += v
		}
	}
	return sum, count
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
