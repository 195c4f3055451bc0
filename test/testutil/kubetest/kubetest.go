// Package kubetest holds the test helpers that need Kubernetes: a real
// kube-apiserver (envtest) and a Secret kept as files. They are apart
// from package testutil so that the tests of skiff's own concurrent code
// (the mux, the router, the HTTP engine, the network view, the xDS
// server, the eBPF loader), which use testutil and not Kubernetes, link
// no Kubernetes client and run under the race detector
// (hack/test-packages.sh; test/lint's TestRaceGroupHoldsTheConcurrentCore
// checks it).
package kubetest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/skiff-io/skiff/test/testutil"
)

// StartEnvtest starts a real kube-apiserver and etcd (envtest) for the
// test, which skips loudly without them (RequireEnvtest), and stops them
// when the test ends.
func StartEnvtest(t testing.TB) *rest.Config {
	t.Helper()
	testutil.RequireEnvtest(t)
	env := &envtest.Environment{}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return cfg
}

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
