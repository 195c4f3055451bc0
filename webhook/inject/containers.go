package inject

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-io/skiff/sidecar/shared/contract"
	"github.com/skiff-io/skiff/sidecar/shared/exclude"
)

// Container ports the sidecar declares.
const (
	HealthPortName  = "skiff-health"
	MetricsPortName = "skiff-metrics"
)

// sidecarContainer is skiff-proxy. drain is its --drain-timeout
// (sidecarDrainTimeout), within the pod's grace period; accessLog gives
// it --access-log.
func sidecarContainer(cfg Config, res corev1.ResourceRequirements, logLevel string, drain time.Duration, accessLog bool) corev1.Container {
	env := []corev1.EnvVar{
		{Name: contract.EnvControllerAddr, Value: cfg.ControllerAddr},
		{Name: contract.EnvPodName, ValueFrom: fieldRef("metadata.name")},
		{Name: contract.EnvPodNamespace, ValueFrom: fieldRef("metadata.namespace")},
		// The node agent reads the site here to redirect only its own
		// site's pods (bpf/agent); the log level and the excluded
		// ports and CIDRs are the sidecar's flags and the node agent's
		// and skiff-init's own reading of the pod's annotations.
		{Name: contract.EnvSite, Value: cfg.Site},
	}
	args := []string{
		"sidecar",
		"--controller=$(" + contract.EnvControllerAddr + ")",
		"--credentials-dir=" + contract.CredentialsDir,
		"--log-level=" + logLevel,
		"--metrics-bind-address=:" + strconv.Itoa(contract.MetricsPort),
		"--health-probe-bind-address=:" + strconv.Itoa(contract.HealthPort),
		"--drain-timeout=" + drain.String(),
	}
	if accessLog {
		args = append(args, "--access-log")
	}
	return corev1.Container{
		Name:            contract.SidecarContainerName,
		Image:           cfg.SidecarImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: HealthPortName, ContainerPort: contract.HealthPort, Protocol: corev1.ProtocolTCP},
			{Name: MetricsPortName, ContainerPort: contract.MetricsPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  readyz(),
			PeriodSeconds: 2,
		},
		Resources: res,
		VolumeMounts: []corev1.VolumeMount{{
			Name:      contract.CredentialsVolumeName,
			MountPath: contract.CredentialsDir,
			ReadOnly:  true,
		}},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(contract.SidecarUID)),
			RunAsGroup:               ptr(int64(contract.SidecarUID)),
			RunAsNonRoot:             ptr(true),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// startupProbe holds a native sidecar's pod back: the kubelet starts the
// next init container, and the app containers, only once it succeeds. It
// allows the sidecar five minutes to reach its controller.
func startupProbe() *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     readyz(),
		PeriodSeconds:    1,
		FailureThreshold: 300,
	}
}

func readyz() corev1.ProbeHandler {
	return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/readyz",
		Port: intstr.FromInt32(contract.HealthPort),
	}}
}

// initContainer installs the redirect of outbound TCP (except the
// sidecar's own UID, loopback and the excluded ports and CIDRs) to the
// sidecar's outbound port: `skiff-router iptables-init` writes it as
// nftables rules over netlink. It runs as root with NET_ADMIN and NET_RAW only.
func initContainer(cfg Config, res corev1.ResourceRequirements, ov Overrides) corev1.Container {
	args := []string{
		"iptables-init",
		"--outbound-port=" + strconv.Itoa(contract.SidecarOutboundPort),
		"--proxy-uid=" + strconv.Itoa(contract.SidecarUID),
	}
	if len(ov.ExcludeOutboundPorts) > 0 {
		args = append(args, "--exclude-outbound-ports="+exclude.FormatPorts(ov.ExcludeOutboundPorts))
	}
	if len(ov.ExcludeOutboundCIDRs) > 0 {
		args = append(args, "--exclude-outbound-cidrs="+exclude.FormatCIDRs(ov.ExcludeOutboundCIDRs))
	}
	return corev1.Container{
		Name:            contract.InitContainerName,
		Image:           cfg.SidecarImage,
		ImagePullPolicy: cfg.ImagePullPolicy,
		Args:            args,
		Resources:       res,
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr(int64(0)),
			RunAsGroup:               ptr(int64(0)),
			RunAsNonRoot:             ptr(false),
			Privileged:               ptr(false),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// resources applies the pod's overrides to the configured resources:
// proxy-cpu sets the CPU request (and raises a lower CPU limit to it, so
// that the request never exceeds the limit); proxy-memory sets both the
// memory request and limit.
func resources(base corev1.ResourceRequirements, ov Overrides) corev1.ResourceRequirements {
	res := *base.DeepCopy()
	set := func(l *corev1.ResourceList, name corev1.ResourceName, q corev1.ResourceList) {
		if *l == nil {
			*l = corev1.ResourceList{}
		}
		(*l)[name] = q[name]
	}
	if ov.ProxyCPU != nil {
		q := corev1.ResourceList{corev1.ResourceCPU: ov.ProxyCPU.DeepCopy()}
		set(&res.Requests, corev1.ResourceCPU, q)
		if lim, ok := res.Limits[corev1.ResourceCPU]; ok && lim.Cmp(*ov.ProxyCPU) < 0 {
			set(&res.Limits, corev1.ResourceCPU, q)
		}
	}
	if ov.ProxyMemory != nil {
		q := corev1.ResourceList{corev1.ResourceMemory: ov.ProxyMemory.DeepCopy()}
		set(&res.Requests, corev1.ResourceMemory, q)
		set(&res.Limits, corev1.ResourceMemory, q)
	}
	return res
}

func fieldRef(path string) *corev1.EnvVarSource {
	return &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}
}

func ptr[T any](v T) *T { return &v }
