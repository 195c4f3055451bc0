package linux_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// startWebSocketEcho is a WebSocket endpoint (github.com/coder/websocket)
// that sends back every message it gets, prefixed with its name.
func startWebSocketEcho(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A WebSocket client we did not write (github.com/coder/websocket) opens
// a connection through east's listener of an http address to an endpoint
// in west: the upgrade is carried as a connection pinned to that
// endpoint; text and binary messages of every size up to 1 MiB come back
// intact, in order, from the one endpoint; the close handshake completes.
func TestWebSocketAcrossSites(t *testing.T) {
	proto := map[string]string{"ws": "http"}
	n := newNetwork(t,
		&siteSpec{name: "east", host: "127.0.0.1", accept: true, listeners: []string{"ws"}, protocols: proto},
		&siteSpec{name: "west", host: "127.0.0.2", links: []linkTo{{site: "east", cost: 1}}, connectors: []string{"ws=" + startWebSocketEcho(t, "west")}, protocols: proto},
	)
	n.waitEndpoints("east", "ws", "west")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+n.addr("east", "ws")+"/chat", nil)
	if err != nil {
		t.Fatalf("dial through east: %v", err)
	}
	defer c.CloseNow()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %s, want 101", resp.Status)
	}
	c.SetReadLimit(4 << 20)
	for i, size := range []int{0, 1, 125, 126, 65535, 65536, 1 << 20} {
		typ := websocket.MessageText
		msg := []byte(strings.Repeat("x", size))
		if i%2 == 1 {
			typ = websocket.MessageBinary
			for j := range msg {
				msg[j] = byte(j * 7)
			}
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			t.Fatalf("message %d (%d bytes): write: %v", i, size, err)
		}
		gotTyp, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d (%d bytes): read: %v", i, size, err)
		}
		if gotTyp != typ || !bytes.Equal(got, append([]byte("west:"), msg...)) {
			t.Fatalf("message %d (%d bytes): got %v of %d bytes, want %v from west, intact", i, size, gotTyp, len(got), typ)
		}
	}
	for i := range 100 {
		want := fmt.Sprintf("west:ping %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf("ping %d", i))); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.Read(ctx); err != nil || string(got) != want {
			t.Fatalf("ping %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
}
