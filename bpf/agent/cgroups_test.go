package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

const testUID = types.UID("8237e096-1f2a-4b6c-9d3e-0a1b2c3d4e5f")

func TestPodCgroupCandidates(t *testing.T) {
	got := podCgroupCandidates(testUID, corev1.PodQOSBestEffort)
	want := []string{
		"kubepods/besteffort/pod8237e096-1f2a-4b6c-9d3e-0a1b2c3d4e5f",
		"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod8237e096_1f2a_4b6c_9d3e_0a1b2c3d4e5f.slice",
		"kubepods/burstable/pod8237e096-1f2a-4b6c-9d3e-0a1b2c3d4e5f",
		"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8237e096_1f2a_4b6c_9d3e_0a1b2c3d4e5f.slice",
		"kubepods/pod8237e096-1f2a-4b6c-9d3e-0a1b2c3d4e5f",
		"kubepods.slice/kubepods-pod8237e096_1f2a_4b6c_9d3e_0a1b2c3d4e5f.slice",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("candidates of a BestEffort pod (-got +want)\n%s", diff)
	}
	if got := podCgroupCandidates(testUID, ""); len(got) != 6 || got[0] != "kubepods/burstable/pod"+string(testUID) {
		t.Errorf("candidates without a QoS class: %q", got)
	}
}

func TestFindPodCgroup(t *testing.T) {
	const (
		u  = string(testUID)
		us = "8237e096_1f2a_4b6c_9d3e_0a1b2c3d4e5f"
	)
	for _, tc := range []struct {
		name string
		qos  corev1.PodQOSClass
		dirs []string // made under the root
		file string   // made under the root as a plain file
		want string   // "" for errNoCgroup
	}{
		{"cgroupfs guaranteed", corev1.PodQOSGuaranteed, []string{"kubepods/pod" + u}, "", "kubepods/pod" + u},
		{"cgroupfs burstable", corev1.PodQOSBurstable, []string{"kubepods/burstable/pod" + u}, "", "kubepods/burstable/pod" + u},
		{"cgroupfs besteffort", corev1.PodQOSBestEffort, []string{"kubepods/besteffort/pod" + u}, "", "kubepods/besteffort/pod" + u},
		{"systemd guaranteed", corev1.PodQOSGuaranteed, []string{"kubepods.slice/kubepods-pod" + us + ".slice"}, "",
			"kubepods.slice/kubepods-pod" + us + ".slice"},
		{"systemd burstable", corev1.PodQOSBurstable, []string{"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice"}, "",
			"kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice"},
		{"systemd besteffort", corev1.PodQOSBestEffort, []string{"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us + ".slice"}, "",
			"kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us + ".slice"},
		{"no QoS class in the status yet", "", []string{"kubepods/besteffort/pod" + u}, "", "kubepods/besteffort/pod" + u},
		{"QoS class other than the directory's", corev1.PodQOSGuaranteed, []string{"kubepods/burstable/pod" + u}, "", "kubepods/burstable/pod" + u},
		{"the pod's class wins", corev1.PodQOSBestEffort, []string{"kubepods/burstable/pod" + u, "kubepods/besteffort/pod" + u}, "", "kubepods/besteffort/pod" + u},
		{"hybrid host: unified/ below the root", corev1.PodQOSBurstable,
			[]string{"memory/kubepods/burstable/pod" + u, "unified/kubepods/burstable/pod" + u}, "", "unified/kubepods/burstable/pod" + u},
		{"hybrid host, systemd", corev1.PodQOSBurstable,
			[]string{"unified/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice"}, "",
			"unified/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice"},
		{"another pod only", corev1.PodQOSBestEffort, []string{"kubepods/besteffort/pod0000"}, "", ""},
		{"a file, not a directory", corev1.PodQOSBestEffort, []string{"kubepods/besteffort"}, "kubepods/besteffort/pod" + u, ""},
		{"nothing yet", corev1.PodQOSBestEffort, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range tc.dirs {
				if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.file != "" {
				if err := os.WriteFile(filepath.Join(root, tc.file), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, tried, err := findPodCgroup(root, testUID, tc.qos)
			if tc.want == "" {
				if !errors.Is(err, errNoCgroup) {
					t.Fatalf("findPodCgroup = %q, %v; want errNoCgroup", got, err)
				}
				if len(tried) < 6 {
					t.Errorf("tried %q, want every candidate", tried)
				}
				return
			}
			if err != nil {
				t.Fatalf("findPodCgroup: %v (tried %q)", err, tried)
			}
			if diff := cmp.Diff(got, filepath.Join(root, tc.want)); diff != "" {
				t.Errorf("(-got +want)\n%s", diff)
			}
		})
	}
	if _, _, err := findPodCgroup(t.TempDir(), "../../etc", ""); err == nil || errors.Is(err, errNoCgroup) {
		t.Errorf("a UID with a path in it: %v, want a refusal", err)
	}
}
