// Package chart tests the Helm chart in charts/skiff: it renders the chart
// with the Helm library and compares the manifests with golden files in
// testdata/ (go test ./test/chart -update rewrites them), checks that
// values.schema.json rejects bad values with a message that names the
// field, runs `helm lint` with bin/helm (built by hack/helm.sh), and, in the
// envtest tier, installs two sites into a real kube-apiserver with that
// binary and uninstalls them again.
//
// The package holds no code besides its tests.
package chart
