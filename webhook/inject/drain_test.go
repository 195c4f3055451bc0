package inject

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func TestSidecarDrainTimeout(t *testing.T) {
	for _, tc := range []struct {
		grace *int64
		want  time.Duration
	}{
		{nil, 25 * time.Second},
		{ptr(int64(30)), 25 * time.Second},
		{ptr(int64(60)), 55 * time.Second},
		{ptr(int64(10)), 5 * time.Second},
		{ptr(int64(6)), 3 * time.Second},
		{ptr(int64(1)), 500 * time.Millisecond},
		{ptr(int64(0)), 0},
		{ptr(int64(-1)), 0},
	} {
		pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: tc.grace}}
		if got := sidecarDrainTimeout(pod); got != tc.want {
			g := "unset"
			if tc.grace != nil {
				g = time.Duration(*tc.grace * int64(time.Second)).String()
			}
			t.Errorf("grace period %s: drain timeout %s, want %s", g, got, tc.want)
		}
	}
}
