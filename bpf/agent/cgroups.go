package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// errNoCgroup says that none of a pod's candidate cgroup directories
// exists: kubelet has not made it yet, or the pod has stopped.
var errNoCgroup = errors.New("no cgroup directory for the pod")

// qosOrder is the order in which QoS classes are probed when the pod's
// status does not name one yet.
var qosOrder = []corev1.PodQOSClass{corev1.PodQOSBurstable, corev1.PodQOSBestEffort, corev1.PodQOSGuaranteed}

// podCgroupCandidates returns where kubelet puts the cgroup of the pod
// with this UID, relative to the cgroup v2 root, most likely first: the
// pod's QoS class before the others, and for each class the cgroupfs
// driver's directory before the systemd driver's.
//
//	cgroupfs  kubepods/pod<UID>                       (Guaranteed)
//	          kubepods/burstable/pod<UID>
//	          kubepods/besteffort/pod<UID>
//	systemd   kubepods.slice/kubepods-pod<UID_>.slice (Guaranteed)
//	          kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<UID_>.slice
//	          kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<UID_>.slice
//
// where UID_ is the UID with '-' replaced by '_'.
func podCgroupCandidates(uid types.UID, qos corev1.PodQOSClass) []string {
	order := qosOrder
	if slices.Contains(qosOrder, qos) {
		order = append([]corev1.PodQOSClass{qos}, slices.DeleteFunc(slices.Clone(qosOrder), func(q corev1.PodQOSClass) bool { return q == qos })...)
	}
	u := string(uid)
	us := strings.ReplaceAll(u, "-", "_")
	out := make([]string, 0, 2*len(order))
	for _, q := range order {
		switch q {
		case corev1.PodQOSGuaranteed:
			out = append(out,
				filepath.Join("kubepods", "pod"+u),
				filepath.Join("kubepods.slice", "kubepods-pod"+us+".slice"))
		default:
			c := strings.ToLower(string(q))
			out = append(out,
				filepath.Join("kubepods", c, "pod"+u),
				filepath.Join("kubepods.slice", "kubepods-"+c+".slice", "kubepods-"+c+"-pod"+us+".slice"))
		}
	}
	return out
}

// cgroupBases returns the directories under which pod cgroups are looked
// for: root itself (a cgroup v2 mount, as on unified hosts), then
// root/unified when it is a directory (hybrid hosts, where the cgroup v2
// hierarchy is mounted there and root holds the v1 controllers).
func cgroupBases(root string) []string {
	bases := []string{root}
	if fi, err := os.Stat(filepath.Join(root, "unified")); err == nil && fi.IsDir() {
		bases = append(bases, filepath.Join(root, "unified"))
	}
	return bases
}

// findPodCgroup returns the pod's cgroup directory: the first candidate
// that exists under a base of root. When none does it returns errNoCgroup
// and the paths it tried.
func findPodCgroup(root string, uid types.UID, qos corev1.PodQOSClass) (string, []string, error) {
	if uid == "" || strings.ContainsAny(string(uid), "/.") {
		return "", nil, fmt.Errorf("pod UID %q: not a UID", uid)
	}
	var tried []string
	for _, base := range cgroupBases(root) {
		for _, rel := range podCgroupCandidates(uid, qos) {
			p := filepath.Join(base, rel)
			fi, err := os.Stat(p)
			switch {
			case err == nil && fi.IsDir():
				return p, nil, nil
			case err != nil && !errors.Is(err, os.ErrNotExist):
				return "", nil, fmt.Errorf("look for the pod's cgroup: %w", err)
			}
			tried = append(tried, p)
		}
	}
	return "", tried, errNoCgroup
}
