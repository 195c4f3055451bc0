package resources

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// NodeRedirectKey is the field of a client's node metadata
// (corev3.Node.metadata, sent in the first request of each stream) in
// which a sidecar reports its redirect self-check, a string
// (model.Redirect: "verified" or "lost"); absent when the router checks
// no redirection.
const NodeRedirectKey = "skiff.io/redirect"

// NodeMetadata returns the node metadata a router reports: its redirect
// state, or nil when it has none.
func NodeMetadata(redirect model.Redirect) *structpb.Struct {
	if redirect == "" {
		return nil
	}
	return &structpb.Struct{Fields: map[string]*structpb.Value{NodeRedirectKey: structpb.NewStringValue(string(redirect))}}
}

// NodeRedirect reads the redirect state a node reports in its metadata:
// a state model.ParseRedirect knows, or "" (no metadata, no such field,
// not a string, a value it does not know). The node is a network peer's
// word; nothing else of its metadata is read.
func NodeRedirect(n *corev3.Node) model.Redirect {
	v, ok := n.GetMetadata().GetFields()[NodeRedirectKey]
	if !ok {
		return ""
	}
	return model.ParseRedirect(v.GetStringValue())
}
