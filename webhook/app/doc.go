// Package app assembles skiff-injector: Options (the flags the Helm chart
// passes) and Run, which builds a controller-runtime manager with the
// webhook server at /mutate-v1-pod, its serving certificate (self-managed
// or from cert-manager), health and readiness endpoints, and metrics.
package app
