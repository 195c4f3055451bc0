//go:build !linux

package bpf

import "errors"

// errNotLinux is what everything that needs the kernel returns elsewhere;
// the package builds on every OS so that its importers do.
var errNotLinux = errors.New("skiff's eBPF redirection needs Linux")

func ensureBPFFS(string) error { return errNotLinux }

type cgroupInfo struct {
	path  string
	id    uint64
	level int
}

func statCgroup(string) (cgroupInfo, error) { return cgroupInfo{}, errNotLinux }

// CheckCgroup reports whether path is a cgroup v2 directory that Attach
// and SetExclusions accept.
func CheckCgroup(string) error { return errNotLinux }

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted.
func Cgroup2Mount() (string, error) { return "", errNotLinux }

func cgroupPaths() map[uint64]string { return nil }

func missingCaps() []string { return nil }
