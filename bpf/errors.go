package bpf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// explain wraps an error from the kernel with what is missing: a
// capability, a kernel feature, a compatible pinned map, or the verifier's
// log when it refused a program.
func explain(what string, err error, pinDir string) error {
	if err == nil {
		return nil
	}
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		// %+v prints the whole log, not only its last lines.
		return fmt.Errorf("%s: the kernel's verifier refused a program; its log:\n%+v\n%w", what, ve, err)
	case errors.Is(err, ebpf.ErrMapIncompatible):
		return fmt.Errorf("%s: a map pinned under %s was made by another version of skiff or with other sizes; `skiff-node-agent uninstall --pin-dir %s` removes it and every attachment there: %w", what, pinDir, pinDir, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%s: this kernel lacks a feature skiff needs (Linux 5.15 or newer with CONFIG_BPF_SYSCALL and CONFIG_CGROUP_BPF): %w", what, err)
	case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
		if missing := missingCaps(); len(missing) > 0 {
			return fmt.Errorf("%s: missing %s (running as uid %d; the node agent needs CAP_BPF and CAP_NET_ADMIN, or root): %w", what, strings.Join(missing, " and "), os.Geteuid(), err)
		}
		return fmt.Errorf("%s: permission denied although CAP_BPF and CAP_NET_ADMIN are held (an LSM, or kernel.unprivileged_bpf_disabled with a user namespace?): %w", what, err)
	case errors.Is(err, unix.EINVAL) && strings.Contains(what, "attach"):
		return fmt.Errorf("%s: the kernel refused the attach type (cgroup/getsockopt needs Linux 5.3, bpf_link for cgroups 5.7): %w", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
