// Package inject is skiff's sidecar injection as a pure function:
// Inject(pod, cfg) returns a mutated copy of the pod with the skiff-proxy
// sidecar (and, in the iptables redirect mode, the skiff-init container), or
// a Report that says why the pod was left alone. It does no I/O; the
// admission server in webhook/server wraps it.
//
// A pod is injected when it carries the annotation skiff.io/inject: "true"
// and none of the skip rules apply (see the Reason constants). Per-pod
// settings come from config.skiff.io/ annotations (ParseAnnotations); an
// unknown key or a malformed value is an error, which the admission server
// turns into a denial. docs/injection.md describes the result for users.
package inject
