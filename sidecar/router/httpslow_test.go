package router

import (
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
	tu "github.com/skiff-io/skiff/test/testutil"
)

// TestHTTPSlowReaderBoundedMemory: a client that stops reading a large
// answer from another site holds the gateways' memory to what their flow
// control allows, not to what the endpoint has to send; once the client
// goes, the endpoint's write fails.
func TestHTTPSlowReaderBoundedMemory(t *testing.T) {
	const offered = 256 << 20 // what the endpoint would send
	var sent atomic.Int64
	writeFailed := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := []byte(strings.Repeat("x", 64<<10))
		for sent.Load() < offered {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				close(writeFailed)
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	web := map[string]model.Protocol{"web": model.HTTP}
	port := tu.FreePort(t, "127.0.0.1")
	east := startSite(t, "east", true, nil, Services{Listeners: []Listener{{Address: "web", Host: "127.0.0.1", Port: port}}, Protocols: web})
	startSite(t, "west", false, []LinkSpec{specFor(t, east.issue(t, 1))}, Services{
		Connectors: []Connector{{Address: "web", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}}, Protocols: web})
	tu.Eventually(t, 10*time.Second, "east sees web in west", func() error {
		if remoteSites(east, "web") != 1 {
			return io.ErrUnexpectedEOF
		}
		return nil
	})

	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+strconv.Itoa(port)+"/big", nil)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1024)); err != nil {
		t.Fatal(err)
	}
	// The client stops reading; the endpoint writes until the chain's
	// buffers are full, then blocks.
	var last int64
	tu.Eventually(t, 20*time.Second, "the endpoint blocked", func() error {
		now := sent.Load()
		defer func() { last = now }()
		if now != last || now == 0 {
			time.Sleep(300 * time.Millisecond)
			return io.ErrShortWrite
		}
		return nil
	})
	grown := int64(heap()) - int64(before)
	t.Logf("the endpoint sent %d MiB of %d before it blocked; the heap (client, both gateways, endpoint) grew %d KiB", sent.Load()>>20, offered>>20, grown>>10)
	if sent.Load() >= offered {
		t.Fatalf("the endpoint sent all %d MiB to a client that read 1 KiB", offered>>20)
	}
	if grown > 64<<20 {
		t.Errorf("heap grew %d MiB while the client did not read, want at most 64", grown>>20)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-writeFailed:
	case <-time.After(20 * time.Second):
		t.Errorf("the endpoint's write did not fail within 20 s of the client going away")
	}
}
