package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	"github.com/skiff-io/skiff/sidecar/shared/resources"
)

// redirects returns the redirect state and stream count of every node
// in st, as "state/streams" by node ID.
func redirects(st []NodeStatus) map[string]string {
	out := map[string]string{}
	for _, n := range st {
		out[n.ID] = fmt.Sprintf("%s/%d", n.Redirect, n.Streams)
	}
	return out
}

// waitRedirects waits until the nodes' redirect states and stream counts
// are want.
func waitRedirects(t *testing.T, ts *testServer, want map[string]string) {
	t.Helper()
	waitStatus(t, ts, func(st []NodeStatus) string {
		got := redirects(st)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("redirects %v, want %v", got, want)
		}
		return ""
	})
}

// A sidecar reports its redirect state in the node metadata of its
// stream's first request, over real ADS streams (delta and SotW): Status
// shows it, and a new stream of the node (the sidecar reporting a new
// state) replaces it, even before the old stream has closed. Metadata
// that is not a known state is ignored.
func TestNodeRedirect(t *testing.T) {
	ctx := t.Context()
	ts := startServer(t, Options{})
	v1, _ := testTables()
	ts.Update(v1)

	lostCtx, closeLost := context.WithCancel(ctx)
	defer closeLost()
	web := newClient(t, "sidecar~east~shop/web-1", true)
	web.metadata = resources.NodeMetadata(model.RedirectLost)
	web.connect(lostCtx, ts.addr)
	sotw := newClient(t, "sidecar~east~shop/api-1", false)
	sotw.metadata = resources.NodeMetadata(model.RedirectVerified)
	sotw.connect(ctx, ts.addr)
	gw := newClient(t, "gateway~east~gw-0", true) // no metadata
	gw.connect(ctx, ts.addr)
	odd := []*structpb.Struct{
		{Fields: map[string]*structpb.Value{resources.NodeRedirectKey: structpb.NewStringValue("LOST")}},
		{Fields: map[string]*structpb.Value{resources.NodeRedirectKey: structpb.NewStringValue(strings.Repeat("lost", 1<<14))}},
		{Fields: map[string]*structpb.Value{resources.NodeRedirectKey: structpb.NewNumberValue(1)}},
		{Fields: map[string]*structpb.Value{resources.NodeRedirectKey: structpb.NewStructValue(resources.NodeMetadata(model.RedirectLost))}},
		{Fields: map[string]*structpb.Value{"redirect": structpb.NewStringValue("lost")}},
	}
	want := map[string]string{"sidecar~east~shop/web-1": "lost/1", "sidecar~east~shop/api-1": "verified/1", "gateway~east~gw-0": "/1"}
	for i, md := range odd {
		c := newClient(t, fmt.Sprintf("sidecar~east~shop/odd-%d", i), i%2 == 0)
		c.metadata = md
		c.connect(ctx, ts.addr)
		want[c.node] = "/1"
	}
	waitRedirects(t, ts, want)

	// web's redirect is back: it opens a new stream saying so, and its
	// old one closes after.
	again := newClient(t, "sidecar~east~shop/web-1", true)
	again.metadata = resources.NodeMetadata(model.RedirectVerified)
	again.connect(ctx, ts.addr)
	want["sidecar~east~shop/web-1"] = "verified/2"
	waitRedirects(t, ts, want)
	closeLost()
	want["sidecar~east~shop/web-1"] = "verified/1"
	waitRedirects(t, ts, want)
}
