package server

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/skiff-io/skiff/webhook/inject"
)

// Results labelling the admission latency histogram.
const (
	resultInjected = "injected"
	resultSkipped  = "skipped"
	resultDenied   = "denied"
	resultError    = "error"
)

var (
	injectedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "skiff_injector_injected_total",
		Help: "Pods the injector added the sidecar to.",
	})
	skippedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_injector_skipped_total",
		Help: "Pods the injector left alone, by reason.",
	}, []string{"reason"})
	deniedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "skiff_injector_denied_total",
		Help: "Pods the injector denied for a malformed or unknown config.skiff.io/ annotation.",
	})
	admissionDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "skiff_injector_admission_duration_seconds",
		Help:    "Time the injector spent on an admission request, by result (injected, skipped, denied, error).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
	}, []string{"result"})
)

func init() {
	metrics.Registry.MustRegister(injectedTotal, skippedTotal, deniedTotal, admissionDuration)
	for _, r := range inject.Reasons {
		skippedTotal.WithLabelValues(r)
	}
	for _, r := range []string{resultInjected, resultSkipped, resultDenied, resultError} {
		admissionDuration.WithLabelValues(r)
	}
}
