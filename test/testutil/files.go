package testutil

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MaterializeSecret keeps the Secret ns/name's files in dir, as the
// kubelet keeps a Secret volume, until ctx ends: each key a file, written
// whole (rename) whenever the Secret changes.
func MaterializeSecret(ctx context.Context, c client.Client, ns, name, dir string) {
	_ = os.MkdirAll(dir, 0o700)
	var last string
	for ctx.Err() == nil {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s); err == nil && s.ResourceVersion != last {
			for k, v := range s.Data {
				tmp := filepath.Join(dir, "."+k)
				if os.WriteFile(tmp, v, 0o600) == nil {
					_ = os.Rename(tmp, filepath.Join(dir, k))
				}
			}
			last = s.ResourceVersion
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Untar reads a tar.gz file into name -> content.
func Untar(t testing.TB, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = string(b)
	}
}
