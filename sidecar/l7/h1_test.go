package l7

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// h1Server is a real net/http server that counts the connections it
// accepted.
type h1Server struct {
	addr  string
	srv   *http.Server
	conns atomic.Int64
	idle  chan net.Conn // the server's end of each connection that went idle
}

func startH1Server(t *testing.T, h http.HandlerFunc) *h1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h1Server{addr: ln.Addr().String(), idle: make(chan net.Conn, 100)}
	s.srv = &http.Server{Handler: h, ConnState: func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.conns.Add(1)
		case http.StateIdle:
			select {
			case s.idle <- c:
			default:
			}
		}
	}}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func newTestPool() *h1Pool {
	return newH1Pool(func(ctx context.Context, addr string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	})
}

func h1Get(t *testing.T, p *h1Pool, ctx context.Context, method, url string) (*http.Response, string, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), err
}

// Requests one after another reuse one connection; answers with a
// length, chunked ones with trailers, informational answers before the
// answer and HEAD answers all leave it usable.
func TestH1PoolReuse(t *testing.T) {
	s := startH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "Sum")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "part one,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part two")
			w.Header().Set("Sum", "42")
		case "/hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.WriteString(w, "after hints")
		default:
			_, _ = io.WriteString(w, "hello "+r.Method)
		}
	})
	p := newTestPool()
	for i := range 30 {
		path := []string{"/", "/chunked", "/hints"}[i%3]
		method := http.MethodGet
		if i%5 == 4 {
			method = http.MethodHead
		}
		resp, body, err := h1Get(t, p, t.Context(), method, "http://"+s.addr+path)
		if err != nil {
			t.Fatalf("request %d %s %s: %v", i, method, path, err)
		}
		want := map[string]string{"/": "hello " + method, "/chunked": "part one,part two", "/hints": "after hints"}[path]
		if method == http.MethodHead {
			want = ""
		}
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("request %d %s %s: %d %q, want 200 %q", i, method, path, resp.StatusCode, body, want)
		}
		if path == "/chunked" && method == http.MethodGet && resp.Trailer.Get("Sum") != "42" {
			t.Fatalf("request %d: trailer %v", i, resp.Trailer)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("30 requests made %d connections, want 1", n)
	}
}

// A kept-alive connection the server closed while it was idle: a GET is
// sent again on a new connection and answered; a POST (which may not be
// sent twice) fails.
func TestH1PoolStaleConnection(t *testing.T) {
	s := startH1Server(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	p := newTestPool()
	for _, tc := range []struct {
		method  string
		wantErr bool
	}{{http.MethodGet, false}, {http.MethodPost, true}} {
		if _, _, err := h1Get(t, p, t.Context(), http.MethodGet, "http://"+s.addr+"/"); err != nil {
			t.Fatal(err)
		}
		// The server drops the connection once idle (as on its
		// keep-alive timeout); the pool still holds its end.
		select {
		case c := <-s.idle:
			c.Close()
		case <-time.After(10 * time.Second):
			t.Fatal("the server's connection did not go idle")
		}
		time.Sleep(50 * time.Millisecond) // the FIN reaches the pool's end
		_, body, err := h1Get(t, p, t.Context(), tc.method, "http://"+s.addr+"/")
		if tc.wantErr != (err != nil) || (err == nil && body != "ok") {
			t.Errorf("%s after the server closed the idle connection: %q, %v; want an error %v", tc.method, body, err, tc.wantErr)
		}
	}
}

// An answer whose body is closed before its end closes its connection;
// so does one that says Connection: close, and a request cancelled while
// its answer's body is read.
func TestH1PoolConnectionNotReused(t *testing.T) {
	s := startH1Server(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/slow" {
			_, _ = io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 64<<10))
	})
	p := newTestPool()
	req, _ := http.NewRequest(http.MethodGet, "http://"+s.addr+"/big", nil)
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadFull(resp.Body, make([]byte, 10))
	resp.Body.Close()
	if _, _, err := h1Get(t, p, t.Context(), http.MethodGet, "http://"+s.addr+"/close"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/slow", nil)
	resp, err = p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("reading a cancelled request's answer ended without an error")
	}
	resp.Body.Close()
	if _, _, err := h1Get(t, p, t.Context(), http.MethodGet, "http://"+s.addr+"/"); err != nil {
		t.Fatal(err)
	}
	if n := s.conns.Load(); n != 4 {
		t.Errorf("4 requests made %d connections, want 4: none of the first three could be reused", n)
	}
}

// A dial that fails is the dial's error (the engine marks it
// undelivered); a request with a body is not the pool's.
func TestH1PoolErrors(t *testing.T) {
	refused := errors.New("refused")
	p := newH1Pool(func(context.Context, string) (net.Conn, error) { return nil, refused })
	if _, _, err := h1Get(t, p, t.Context(), http.MethodGet, "http://127.0.0.1:1/"); !errors.Is(err, refused) {
		t.Errorf("dial failure: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/", strings.NewReader("body"))
	if _, err := p.RoundTrip(req); err == nil {
		t.Error("a request with a body was taken")
	}
}
