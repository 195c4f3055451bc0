package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// A dir that cannot be tightened, because another user owns it, is refused
// with what to do about it, and left as it was.
func TestSecureDirRefusesForeignDir(t *testing.T) {
	var dir string
	var err error
	if os.Geteuid() == 0 {
		// root may chmod anything: check as user nobody instead, by
		// dropping the file-system UID (and with it CAP_FOWNER) on one
		// thread for the call.
		dir = filepath.Join(t.TempDir(), "data")
		mkdirMode(0o755)(t, dir)
		for _, p := range []string{filepath.Dir(dir), filepath.Dir(filepath.Dir(dir))} {
			if err := os.Chmod(p, 0o755); err != nil { // nobody must reach dir
				t.Fatal(err)
			}
		}
		err = asNobody(t, func() error { _, err := SecureDir(dir); return err })
	} else {
		dir = "/"
		fi, serr := os.Stat(dir)
		if serr != nil {
			t.Fatal(serr)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) == os.Geteuid() || fi.Mode().Perm()&0o077 == 0 {
			t.Skipf("/ is ours or private (mode %#o): no dir of another user to refuse", fi.Mode().Perm())
		}
		_, err = SecureDir(dir)
	}
	if !errors.Is(err, ErrOpenDir) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("SecureDir(another user's 0755 dir) error = %v, want ErrOpenDir wrapping the chmod's permission error", err)
	}
	for _, want := range []string{dir + " is mode 0755 and cannot be tightened to 0700", "chmod 700 " + dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	wantMode(t, dir, 0o755)
}

// asNobody runs f on a thread of its own whose file-system UID is nobody's
// (65534). The thread is never unlocked, so it ends with f.
func asNobody(t *testing.T, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setfsuid(65534); err != nil {
			errc <- fmt.Errorf("setfsuid: %w", err)
			return
		}
		if uid, _ := unix.SetfsuidRetUid(-1); uid != 65534 {
			errc <- fmt.Errorf("setfsuid(65534) left the fsuid at %d", uid)
			return
		}
		errc <- f()
	}()
	return <-errc
}
