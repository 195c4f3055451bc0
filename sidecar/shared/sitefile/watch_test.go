package sitefile

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// Watch applies a changed file, keeps quiet about an unchanged one, skips
// one that does not load, and reloads on SIGHUP when asked to.
func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.yaml")
	write := func(body string, at time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	write("name: east\ndataDir: ./data\n", t0)
	got := make(chan string, 10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, WatchOptions{Every: 10 * time.Millisecond, Since: t0, SIGHUP: true}, logr.Discard(), func(s *Site, _ time.Time) { got <- s.Name })
	}()
	defer func() { cancel(); <-done }()
	expect := func(want string) {
		t.Helper()
		select {
		case name := <-got:
			if name != want {
				t.Fatalf("applied site %q, want %q", name, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("site %q never applied", want)
		}
	}
	none := func(what string) {
		t.Helper()
		select {
		case name := <-got:
			t.Fatalf("%s: applied site %q", what, name)
		case <-time.After(100 * time.Millisecond):
		}
	}
	none("file unchanged since the caller loaded it")
	write("name: west\ndataDir: ./data\n", t0.Add(time.Second))
	expect("west")
	write("name: [broken\n", t0.Add(2*time.Second))
	none("a file that does not load")
	write("name: north\ndataDir: ./data\n", t0.Add(3*time.Second))
	expect("north")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expect("north")
}

// A change made after Load and before the watcher starts (skiff link
// create while a gateway starts) is applied: the watcher compares with
// the time Load found, not with the file as it is when it starts.
func TestWatchSinceLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "site.yaml")
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i, body := range []string{"name: east\n", "name: west\n"} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		at := t0.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			break
		}
		loaded, err := Load(path)
		if err != nil || !loaded.Modified.Equal(t0) {
			t.Fatalf("Load() = %+v, %v; want Modified %v", loaded, err, t0)
		}
	}
	got := make(chan string, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go Watch(ctx, path, WatchOptions{Every: 10 * time.Millisecond, Since: t0}, logr.Discard(), func(s *Site, _ time.Time) {
		select {
		case got <- s.Name:
		default:
		}
	})
	select {
	case name := <-got:
		if name != "west" {
			t.Errorf("applied %q, want west", name)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change made after Load was never applied")
	}
}
