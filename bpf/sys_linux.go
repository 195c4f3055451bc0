package bpf

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

const bpffsRoot = "/sys/fs/bpf"

// ensureBPFFS makes dir on a bpf filesystem, mounting one on /sys/fs/bpf
// first when dir is below it and nothing is mounted there.
func ensureBPFFS(dir string) error {
	onBPF := func(p string) (bool, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return false, err
		}
		return st.Type == unix.BPF_FS_MAGIC, nil
	}
	if ok, err := onBPF(dir); err == nil && ok {
		return nil
	}
	if dir == bpffsRoot || strings.HasPrefix(dir, bpffsRoot+"/") {
		if ok, err := onBPF(bpffsRoot); err != nil {
			return fmt.Errorf("bpf filesystem at %s: %w", bpffsRoot, err)
		} else if !ok {
			if err := unix.Mount("bpf", bpffsRoot, "bpf", 0, "mode=0700"); err != nil {
				return fmt.Errorf("mount bpffs on %s (needs CAP_SYS_ADMIN; or mount it beforehand: mount -t bpf bpf %s): %w", bpffsRoot, bpffsRoot, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create pin dir: %w", err)
	}
	if ok, err := onBPF(dir); err != nil {
		return fmt.Errorf("pin dir %s: %w", dir, err)
	} else if !ok {
		return fmt.Errorf("pin dir %s is not on a bpf filesystem (mount -t bpf bpf DIR)", dir)
	}
	return nil
}

// cgroupInfo is what the programs know a cgroup v2 directory by.
type cgroupInfo struct {
	path  string
	id    uint64 // the directory's inode number, as bpf_get_current_cgroup_id
	level int    // depth below the hierarchy's root, as the kernel counts it; -1 unknown
}

// CheckCgroup reports whether path is a cgroup v2 directory that Attach
// and SetExclusions accept.
func CheckCgroup(path string) error {
	_, err := statCgroup(path)
	return err
}

// statCgroup checks that path is a cgroup v2 directory and returns its id
// and level.
func statCgroup(path string) (cgroupInfo, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return cgroupInfo{}, err
	}
	path = filepath.Clean(path)
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil {
		return cgroupInfo{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return cgroupInfo{}, fmt.Errorf("cgroup %s: not on a cgroup v2 filesystem (cgroup2 is mounted at %s)", path, orNone(Cgroup2Mount()))
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return cgroupInfo{}, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return cgroupInfo{}, fmt.Errorf("cgroup %s: not a directory", path)
	}
	mnt, root, err := cgroup2MountOf(path)
	if err != nil {
		return cgroupInfo{}, err
	}
	rel, err := filepath.Rel(mnt, path)
	if err != nil {
		return cgroupInfo{}, err
	}
	level := -1
	if top := mountLevel(mnt, root); top >= 0 {
		level = top + depth(rel)
	}
	return cgroupInfo{path: path, id: st.Ino, level: level}, nil
}

// mountLevel returns the level of the cgroup shown at the top of the
// cgroup2 mount mnt, whose root mountinfo gives as root, or -1 when it
// cannot be known. Mountinfo writes root relative to this process's cgroup
// namespace: in a container with a private namespace (the default on
// cgroup v2 hosts), the host's /sys/fs/cgroup mounted in by hostPath shows
// as "/../../.." and says nothing of its level. The hierarchy's root cgroup
// is the only one without a cgroup.type file, so a mount whose top lacks
// it shows the root, at level 0, however mountinfo writes it.
func mountLevel(mnt, root string) int {
	if _, err := os.Stat(filepath.Join(mnt, "cgroup.type")); errors.Is(err, os.ErrNotExist) {
		return 0
	}
	for _, part := range strings.Split(filepath.ToSlash(root), "/") {
		if part == ".." {
			return -1 // above our namespace's root: no telling how deep
		}
	}
	return depth(root)
}

func depth(rel string) int {
	rel = strings.Trim(filepath.ToSlash(rel), "/")
	if rel == "" || rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}

func orNone(s string, err error) string {
	if err != nil || s == "" {
		return "nowhere"
	}
	return s
}

// Cgroup2Mount returns where the cgroup v2 hierarchy is mounted
// (/sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid ones).
func Cgroup2Mount() (string, error) {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return "", err
	}
	if len(mounts) == 0 {
		return "", errors.New("no cgroup2 filesystem is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")
	}
	return mounts[0][0], nil
}

// cgroup2MountOf returns the cgroup2 mount point that holds path and the
// cgroup the mount shows as its root.
func cgroup2MountOf(path string) (mnt, root string, err error) {
	mounts, err := cgroup2Mounts()
	if err != nil {
		return "", "", err
	}
	best := -1
	for i, m := range mounts {
		if (path == m[0] || strings.HasPrefix(path, strings.TrimSuffix(m[0], "/")+"/")) && (best < 0 || len(m[0]) > len(mounts[best][0])) {
			best = i
		}
	}
	if best < 0 {
		return "", "", fmt.Errorf("cgroup %s: below no cgroup2 mount", path)
	}
	return mounts[best][0], mounts[best][1], nil
}

// cgroup2Mounts lists {mount point, root} of every cgroup2 mount.
func cgroup2Mounts() ([][2]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][2]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 98:0 /root /mnt rw,noatime master:1 - cgroup2 none rw
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" {
			continue
		}
		out = append(out, [2]string{unescapeMount(fields[4]), unescapeMount(fields[3])})
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupPaths maps the id of every cgroup below the cgroup2 mount to its
// path.
func cgroupPaths() map[uint64]string {
	paths := map[uint64]string{}
	root, err := Cgroup2Mount()
	if err != nil {
		return paths
	}
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		var st unix.Stat_t
		if unix.Stat(p, &st) == nil {
			paths[st.Ino] = p
		}
		return nil
	})
	return paths
}

// missingCaps names the capabilities loading needs that this process lacks.
func missingCaps() []string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	var eff uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			eff, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	var missing []string
	if !has(unix.CAP_BPF) && !has(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(unix.CAP_NET_ADMIN) && !has(unix.CAP_SYS_ADMIN) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	return missing
}
