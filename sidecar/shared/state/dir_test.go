package state

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// storeContract runs what every Store must do against s.
func storeContract(t *testing.T, s Store) {
	t.Helper()
	if v, err := s.Get(Tokens, "abc.yaml"); err != nil || v != nil {
		t.Fatalf("Get of nothing = %q, %v; want nil, nil", v, err)
	}
	set := func(v string) func([]byte) ([]byte, error) {
		return func([]byte) ([]byte, error) { return []byte(v), nil }
	}
	if err := s.Update(Tokens, "abc.yaml", set("one")); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(Links, "abc.crt", set("cert")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(Tokens, "abc.yaml"); err != nil || string(v) != "one" {
		t.Fatalf("Get = %q, %v; want one", v, err)
	}
	all, err := s.List(Tokens)
	if err != nil || len(all) != 1 || string(all["abc.yaml"]) != "one" {
		t.Fatalf("List(tokens) = %q, %v; want only abc.yaml (buckets apart)", all, err)
	}
	// fn sees the current value; an error from fn changes nothing.
	refused := errors.New("refused")
	err = s.Update(Tokens, "abc.yaml", func(cur []byte) ([]byte, error) {
		if string(cur) != "one" {
			t.Errorf("fn saw %q, want one", cur)
		}
		return nil, refused
	})
	if !errors.Is(err, refused) {
		t.Fatalf("Update with failing fn = %v, want fn's error", err)
	}
	if v, _ := s.Get(Tokens, "abc.yaml"); string(v) != "one" {
		t.Fatalf("after a refused update: %q", v)
	}
	// nil deletes.
	if err := s.Update(Tokens, "abc.yaml", func([]byte) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(Tokens, "abc.yaml"); err != nil || v != nil {
		t.Fatalf("after delete: %q, %v", v, err)
	}
	if v, _ := s.Get(Links, "abc.crt"); string(v) != "cert" {
		t.Fatalf("other bucket lost its value: %q", v)
	}
	// Names that could leave the bucket, or are not Secret keys, are refused.
	for _, bad := range []string{"", "../x", "a/b", ".hidden", "a..b", "A", "x.", strconvRepeat("a", 201)} {
		if _, err := s.Get(Tokens, bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Get(%q) = %v, want ErrInvalidName", bad, err)
		}
		if err := s.Update(Tokens, bad, set("x")); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Update(%q) = %v, want ErrInvalidName", bad, err)
		}
	}
	if _, err := s.List("../tokens"); !errors.Is(err, ErrInvalidName) {
		t.Errorf("List(../tokens) = %v, want ErrInvalidName", err)
	}
	// Concurrent read-modify-writes lose nothing.
	const n = 8
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := s.Update(Tokens, "count.yaml", func(cur []byte) ([]byte, error) {
				c, _ := strconv.Atoi(string(cur))
				return []byte(strconv.Itoa(c + 1)), nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if v, _ := s.Get(Tokens, "count.yaml"); string(v) != strconv.Itoa(n) {
		t.Errorf("%d concurrent increments left %q", n, v)
	}
}

func strconvRepeat(s string, n int) string {
	b := make([]byte, 0, n*len(s))
	for range n {
		b = append(b, s...)
	}
	return string(b)
}

func TestDir(t *testing.T) {
	root := t.TempDir()
	d := NewDir(root)
	storeContract(t, d)
	// The layout Linux sites have always had, private.
	fi, err := os.Stat(filepath.Join(root, Links, "abc.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Join(root, Links)); di.Mode().Perm() != 0o700 {
		t.Errorf("bucket mode %v, want 0700", di.Mode().Perm())
	}
	// Temporary files and strays are not values.
	for _, f := range []string{".tmp-1", "UPPER"} {
		if err := os.WriteFile(filepath.Join(root, Tokens, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	all, err := d.List(Tokens)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := all["count.yaml"]; !ok || len(all) != 1 {
		t.Errorf("List = %v keys, want only count.yaml", keys(all))
	}
	entries, _ := os.ReadDir(filepath.Join(root, Links))
	if len(entries) != 1 {
		t.Errorf("links dir holds %d files, want 1 (no temporary files left)", len(entries))
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
