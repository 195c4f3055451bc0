package inject

import (
	"time"

	corev1 "k8s.io/api/core/v1"
)

// defaultGracePeriod is Kubernetes' terminationGracePeriodSeconds when a
// pod does not set it.
const defaultGracePeriod = 30 * time.Second

// drainMargin is what the sidecar's drain leaves of the pod's grace
// period, at most: time for the sidecar to exit once the drain is over,
// before the kubelet's SIGKILL.
const drainMargin = 5 * time.Second

// sidecarDrainTimeout is the injected sidecar's --drain-timeout: the
// pod's terminationGracePeriodSeconds (default 30 s) less drainMargin, or
// less half of it when the grace period is shorter than twice the margin,
// so the drain always ends before the kubelet kills the container: 25 s
// for the default, 55 s for 60, 3 s for 6, 0 (stop at once) for 0.
func sidecarDrainTimeout(pod *corev1.Pod) time.Duration {
	grace := defaultGracePeriod
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(max(*s, 0)) * time.Second
	}
	return grace - min(drainMargin, grace/2)
}
