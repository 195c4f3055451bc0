package inject

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
)

// Reasons a pod is not injected. They are few and fixed, so they can label a
// metric.
const (
	ReasonNotAnnotated    = "not annotated"
	ReasonOptedOut        = "opted out"
	ReasonInvalidInject   = "invalid inject annotation"
	ReasonSystemNamespace = "system namespace"
	ReasonOtherNamespace  = "not in site namespace"
	ReasonHostNetwork     = "host network"
	ReasonSkiffComponent  = "skiff component"
	ReasonOtherMesh       = "other mesh sidecar"
	ReasonAlreadyInjected = "already injected"
)

// Reasons lists every Reason constant.
var Reasons = []string{
	ReasonNotAnnotated, ReasonOptedOut, ReasonInvalidInject, ReasonSystemNamespace,
	ReasonOtherNamespace, ReasonHostNetwork, ReasonSkiffComponent, ReasonOtherMesh,
	ReasonAlreadyInjected,
}

// Labels the injector reads.
const (
	// PartOfLabel with value PartOfValue marks skiff's own pods.
	PartOfLabel = "app.kubernetes.io/part-of"
	PartOfValue = "skiff"
	// DefaultContainerAnnotation tells kubectl which container to pick by
	// default; set to the first app container when skiff-proxy comes first.
	DefaultContainerAnnotation = "kubectl.kubernetes.io/default-container"
)

// otherMeshContainers are sidecars of meshes that skiff does not share a pod
// with: both would claim the pod's outbound traffic.
var otherMeshContainers = []string{"istio-proxy", "linkerd-proxy"}

// Report says what Inject did.
type Report struct {
	// Injected is true when the returned pod has the sidecar.
	Injected bool `json:"injected"`
	// Reason is why the pod was skipped (one of the Reason constants);
	// empty when injected.
	Reason string `json:"reason,omitempty"`
	// Status is the skiff.io/status annotation value set on the pod.
	Status string `json:"status,omitempty"`
}

// Inject returns a copy of pod with skiff's sidecar, or, when the pod is
// skipped, the pod itself unchanged and a Report naming the reason. It
// never modifies pod. pod.Namespace must be set (the admission server takes
// it from the request when the pod has none). The error, if any, joins
// *AnnotationError values.
func Inject(pod *corev1.Pod, cfg Config) (*corev1.Pod, Report, error) {
	cfg = cfg.withDefaults()
	if reason := skipReason(pod, cfg); reason != "" {
		return pod, Report{Reason: reason}, nil
	}
	ov, err := ParseAnnotations(pod.Annotations)
	if err != nil {
		return pod, Report{}, err
	}

	out := pod.DeepCopy()
	res := resources(cfg.Resources, ov)
	logLevel := cfg.LogLevel
	if ov.LogLevel != "" {
		logLevel = ov.LogLevel
	}
	st := Status{Version: StatusVersion, Volumes: []string{contract.CredentialsVolumeName}}

	var inits []corev1.Container
	if cfg.RedirectMode == RedirectIPTables {
		inits = append(inits, initContainer(cfg, res, ov))
		st.InitContainers = append(st.InitContainers, contract.InitContainerName)
	}
	proxy := sidecarContainer(cfg, res, logLevel, sidecarDrainTimeout(pod), ov.AccessLog != nil && *ov.AccessLog)
	if cfg.NativeSidecar {
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		proxy.StartupProbe = startupProbe()
		inits = append(inits, proxy)
		st.InitContainers = append(st.InitContainers, contract.SidecarContainerName)
	} else {
		if len(out.Spec.Containers) > 0 && out.Annotations[DefaultContainerAnnotation] == "" {
			setAnnotation(out, DefaultContainerAnnotation, out.Spec.Containers[0].Name)
		}
		out.Spec.Containers = append([]corev1.Container{proxy}, out.Spec.Containers...)
		st.Containers = append(st.Containers, contract.SidecarContainerName)
	}
	if len(inits) > 0 {
		out.Spec.InitContainers = append(inits, out.Spec.InitContainers...)
	}
	out.Spec.Volumes = append(out.Spec.Volumes, credentialsVolume(cfg))

	status := st.String()
	setAnnotation(out, contract.StatusAnnotation, status)
	return out, Report{Injected: true, Status: status}, nil
}

// skipReason returns why pod is not injected, or "".
func skipReason(pod *corev1.Pod, cfg Config) string {
	switch v, ok := pod.Annotations[contract.InjectAnnotation]; {
	case !ok:
		return ReasonNotAnnotated
	case v == "false":
		return ReasonOptedOut
	case v != "true":
		return ReasonInvalidInject
	}
	switch {
	case isSystemNamespace(pod.Namespace):
		return ReasonSystemNamespace
	case pod.Namespace != cfg.Namespace:
		return ReasonOtherNamespace
	case pod.Spec.HostNetwork:
		return ReasonHostNetwork
	case pod.Labels[PartOfLabel] == PartOfValue:
		return ReasonSkiffComponent
	}
	if _, ok := pod.Annotations[contract.StatusAnnotation]; ok {
		return ReasonAlreadyInjected
	}
	if hasContainer(pod, contract.SidecarContainerName) {
		return ReasonAlreadyInjected
	}
	for _, other := range otherMeshContainers {
		if hasContainer(pod, other) {
			return ReasonOtherMesh
		}
	}
	return ""
}

// hasContainer reports an init or regular container named name.
func hasContainer(pod *corev1.Pod, name string) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// isSystemNamespace reports Kubernetes' own namespaces (kube-system,
// kube-public, kube-node-lease and any other kube-*).
func isSystemNamespace(ns string) bool {
	return strings.HasPrefix(ns, "kube-")
}

func setAnnotation(pod *corev1.Pod, k, v string) {
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[k] = v
}

func credentialsVolume(cfg Config) corev1.Volume {
	optional := false
	return corev1.Volume{
		Name: contract.CredentialsVolumeName,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: cfg.CredentialsSecret,
			Optional:   &optional,
		}},
	}
}
