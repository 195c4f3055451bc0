package inject

import (
	"fmt"
	"net"

	corev1 "k8s.io/api/core/v1"
)

// RedirectMode is how a pod's outbound connections reach the sidecar.
type RedirectMode string

const (
	// RedirectEBPF relies on the node agent's eBPF programs: the pod needs
	// no privileges and no init container.
	RedirectEBPF RedirectMode = "ebpf"
	// RedirectIPTables adds the skiff-init container that installs an
	// iptables REDIRECT (it needs NET_ADMIN and NET_RAW).
	RedirectIPTables RedirectMode = "iptables"
)

// Defaults applied by Inject to a zero Config field.
const (
	DefaultCredentialsSecret = "skiff-sidecar"
	DefaultLogLevel          = "info"
)

// Config is the site-wide injection configuration (from the injector's
// flags, which the Helm chart sets).
type Config struct {
	// SidecarImage is the skiff-router image for skiff-proxy and skiff-init.
	SidecarImage string
	// ImagePullPolicy of both containers; empty leaves the API default.
	ImagePullPolicy corev1.PullPolicy
	// ControllerAddr is the host:port of the site controller's xDS server.
	ControllerAddr string
	// Site is the site's name.
	Site string
	// Namespace is the site's namespace: the only namespace whose pods can
	// mount the credentials Secret, hence the only one injected.
	Namespace string
	// CredentialsSecret names the Secret mounted at contract.CredentialsDir
	// (default DefaultCredentialsSecret).
	CredentialsSecret string
	// Resources of the sidecar; config.skiff.io/proxy-cpu and proxy-memory
	// override them per pod.
	Resources corev1.ResourceRequirements
	// LogLevel of the sidecar (default DefaultLogLevel); one of LogLevels.
	LogLevel string
	// NativeSidecar puts skiff-proxy in initContainers with restartPolicy
	// Always (Kubernetes >= 1.29); otherwise it is the first container.
	NativeSidecar bool
	// RedirectMode is RedirectEBPF (default) or RedirectIPTables.
	RedirectMode RedirectMode
}

// LogLevels are the sidecar log levels the injector accepts.
var LogLevels = []string{"debug", "info", "error"}

func validLogLevel(l string) bool {
	for _, v := range LogLevels {
		if l == v {
			return true
		}
	}
	return false
}

// withDefaults returns cfg with its zero fields defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.CredentialsSecret == "" {
		cfg.CredentialsSecret = DefaultCredentialsSecret
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = DefaultLogLevel
	}
	if cfg.RedirectMode == "" {
		cfg.RedirectMode = RedirectEBPF
	}
	return cfg
}

// Validate reports a configuration Inject cannot work with.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	if cfg.SidecarImage == "" {
		return fmt.Errorf("sidecar image is empty")
	}
	if _, _, err := net.SplitHostPort(cfg.ControllerAddr); err != nil {
		return fmt.Errorf("controller address %q: %w", cfg.ControllerAddr, err)
	}
	if cfg.Site == "" {
		return fmt.Errorf("site is empty")
	}
	if cfg.Namespace == "" {
		return fmt.Errorf("namespace is empty")
	}
	if !validLogLevel(cfg.LogLevel) {
		return fmt.Errorf("log level %q: want one of %v", cfg.LogLevel, LogLevels)
	}
	switch cfg.RedirectMode {
	case RedirectEBPF, RedirectIPTables:
	default:
		return fmt.Errorf("redirect mode %q: want %s or %s", cfg.RedirectMode, RedirectEBPF, RedirectIPTables)
	}
	return nil
}
