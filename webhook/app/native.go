package app

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// minNativeSidecar is the first Kubernetes version with native sidecars
// on by default (SidecarContainers beta).
var minNativeSidecar = version.MustParseGeneric("1.29.0")

// nativeSidecar resolves --native-sidecar, asking the apiserver its version
// for auto.
func nativeSidecar(mode string, cfg *rest.Config) (bool, string, error) {
	switch mode {
	case NativeTrue:
		return true, "", nil
	case NativeFalse:
		return false, "", nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return false, "", fmt.Errorf("discovery client: %w", err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return false, "", fmt.Errorf("get apiserver version: %w", err)
	}
	native, err := supportsNativeSidecar(info.GitVersion)
	return native, info.GitVersion, err
}

// supportsNativeSidecar reports whether a Kubernetes version (v1.30.2,
// v1.29.0-eks-1234) runs native sidecars by default.
func supportsNativeSidecar(gitVersion string) (bool, error) {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return false, fmt.Errorf("apiserver version %q: %w", gitVersion, err)
	}
	return v.AtLeast(minNativeSidecar), nil
}
