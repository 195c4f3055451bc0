package certs

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	rotations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skiff_injector_cert_rotations_total",
		Help: "Certificates this replica issued into the certificate Secret, by kind (ca, leaf).",
	}, []string{"kind"})
	servingNotAfter = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "skiff_injector_serving_cert_expiry_timestamp_seconds",
		Help: "NotAfter of the serving certificate, in Unix seconds.",
	})
)

func init() {
	metrics.Registry.MustRegister(rotations, servingNotAfter)
}
