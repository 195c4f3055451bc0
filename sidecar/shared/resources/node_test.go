package resources

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// A node's redirect state reads back as written, and anything else in
// its place (a peer's word) reads as none.
func TestNodeRedirect(t *testing.T) {
	field := func(v *structpb.Value) *corev3.Node {
		return &corev3.Node{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{NodeRedirectKey: v}}}
	}
	for _, tc := range []struct {
		name string
		node *corev3.Node
		want model.Redirect
	}{
		{"verified", &corev3.Node{Metadata: NodeMetadata(model.RedirectVerified)}, model.RedirectVerified},
		{"lost", &corev3.Node{Metadata: NodeMetadata(model.RedirectLost)}, model.RedirectLost},
		{"none", &corev3.Node{Metadata: NodeMetadata("")}, ""},
		{"no node", nil, ""},
		{"other keys", &corev3.Node{Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"redirect": structpb.NewStringValue("lost")}}}, ""},
		{"unknown value", field(structpb.NewStringValue("Lost")), ""},
		{"long value", field(structpb.NewStringValue(strings.Repeat("lost", 1000))), ""},
		{"a number", field(structpb.NewNumberValue(1)), ""},
		{"a struct", field(structpb.NewStructValue(NodeMetadata(model.RedirectLost))), ""},
		{"null", field(structpb.NewNullValue()), ""},
		{"nil value", field(nil), ""},
	} {
		if got := NodeRedirect(tc.node); got != tc.want {
			t.Errorf("%s: NodeRedirect = %q, want %q", tc.name, got, tc.want)
		}
	}
	if md := NodeMetadata(""); md != nil {
		t.Errorf("NodeMetadata(\"\") = %v, want nil (no metadata)", md)
	}
}
