package l7

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// fakeUpstreams gives the engine the local endpoints of targets, by
// address; DialSite always fails.
type fakeUpstreams struct{ targets map[string][]Target }

func (f fakeUpstreams) Targets(address string) ([]Target, model.Pattern, error) {
	ts, err := f.LocalTargets(address)
	return ts, model.Closest, err
}

func (f fakeUpstreams) LocalTargets(address string) ([]Target, error) {
	if len(f.targets[address]) == 0 {
		return nil, errors.New("no endpoint")
	}
	return f.targets[address], nil
}

func (fakeUpstreams) Track(string) func() { return func() {} }

func (fakeUpstreams) Multicast(string) model.MulticastSpec { return model.MulticastSpec{} }

func (fakeUpstreams) DialEndpoint(ctx context.Context, hostport string) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", hostport)
}

func (fakeUpstreams) DialSite(context.Context, string, string, bool) (net.Conn, error) {
	return nil, errors.New("no sites here")
}

func (fakeUpstreams) DialPinned(ctx context.Context, _ string, t Target) (net.Conn, error) {
	return (&net.Dialer{}).DialContext(ctx, "tcp", t.Endpoint)
}

// lineWriter keeps every Write as one entry; fail makes Write fail.
type lineWriter struct {
	mu     sync.Mutex
	writes []string
	fail   bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail {
		return 0, errors.New("disk full")
	}
	w.writes = append(w.writes, string(p))
	return len(p), nil
}

// lines decodes the writes, each of which must be one line of one JSON
// object with exactly the documented keys.
func (w *lineWriter) lines(t *testing.T) []AccessLine {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []AccessLine
	for _, s := range w.writes {
		if !strings.HasSuffix(s, "\n") || strings.Count(s, "\n") != 1 {
			t.Fatalf("write %q is not one line", s)
		}
		var keys map[string]any
		if err := json.Unmarshal([]byte(s), &keys); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		if len(keys) != 12 {
			t.Errorf("line %q has %d keys, want 12", s, len(keys))
		}
		var l AccessLine
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		out = append(out, l)
	}
	return out
}

// endpoint answers "ok" plus the body's length, and echoes the bytes of
// a request that upgrades to "echo".
func endpoint(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Header.Get("Upgrade") == "echo" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
			_, _ = io.Copy(c, brw)
			return
		}
		n, _ := io.Copy(io.Discard, req.Body)
		fmt.Fprintf(w, "ok %d", n)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// accessEngine runs an engine of site east whose access log is w, and
// serves it on a listener per address: its connections are handed to
// ServeConn (logged as asked), or to ServeSite with fromSite.
type accessEngine struct {
	e   *Engine
	m   *Metrics
	ctx context.Context
}

func newAccessEngine(t *testing.T, w io.Writer, targets map[string][]Target) *accessEngine {
	t.Helper()
	m := NewMetrics(nil)
	e := New(Options{Upstreams: fakeUpstreams{targets}, Self: "east", Metrics: m, Log: testr.New(t), AccessLog: w})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return &accessEngine{e: e, m: m, ctx: ctx}
}

func (a *accessEngine) listen(t *testing.T, address string, logged, fromSite bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if fromSite {
				go a.e.ServeSite(a.ctx, c, address, "east")
			} else {
				go a.e.ServeConn(a.ctx, c, address, logged)
			}
		}
	}()
	return "http://" + ln.Addr().String()
}

func client(h2 bool) *http.Client {
	var p http.Protocols
	p.SetHTTP1(!h2)
	p.SetUnencryptedHTTP2(h2)
	return &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 10 * time.Second}
}

func do(t *testing.T, c *http.Client, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(got)
}

// The access log has one line per request of a logged connection, with
// every field; paths lose their query and are clipped; a connection not
// logged, and requests another site sent, have none.
func TestAccessLogLines(t *testing.T) {
	ep := endpoint(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // its dials are refused
	w := &lineWriter{}
	a := newAccessEngine(t, w, map[string][]Target{
		"web":   {{Key: ep, Endpoint: ep, Protocol: model.HTTP}},
		"flaky": {{Key: deadAddr, Endpoint: deadAddr, Protocol: model.HTTP}, {Key: ep, Endpoint: ep, Protocol: model.HTTP}},
	})
	web, quiet, none := a.listen(t, "web", true, false), a.listen(t, "web", false, false), a.listen(t, "gone", true, false)
	flaky, site := a.listen(t, "flaky", true, false), a.listen(t, "web", true, true)

	start := time.Now().UTC().Truncate(time.Millisecond)
	long := "/" + strings.Repeat("é", 200) // 401 bytes
	h1, h2 := client(false), client(true)
	requests := []struct {
		c            *http.Client
		method, url  string
		body         string
		wantStatus   int
		wantBody     string
		wantInLog    bool
		want         AccessLine // the fields that do not vary
		wantBytesOut int64
	}{
		{h1, "GET", web + "/items/7?secret=1", "", 200, "ok 0", true,
			AccessLine{Address: "web", Method: "GET", Path: "/items/7", Proto: "HTTP/1.1", Status: 200, Site: "east"}, 4},
		{h2, "POST", web + "/upload", strings.Repeat("x", 1000), 200, "ok 1000", true,
			AccessLine{Address: "web", Method: "POST", Path: "/upload", Proto: "HTTP/2.0", Status: 200, Site: "east", BytesIn: 1000}, 7},
		{h1, "GET", web + long, "", 200, "ok 0", true,
			AccessLine{Address: "web", Method: "GET", Path: long[:255], Proto: "HTTP/1.1", Status: 200, Site: "east"}, 4},
		{h1, "GET", quiet + "/not-logged", "", 200, "ok 0", false, AccessLine{}, 0},
		{h2, "POST", site + "/from-another-site", "abc", 200, "ok 3", false, AccessLine{}, 0},
		{h1, "DELETE", none + "/x", "", 503, "", true,
			AccessLine{Address: "gone", Method: "DELETE", Path: "/x", Proto: "HTTP/1.1", Status: 503, Site: "none"}, -1},
		{h1, "PUT", flaky + "/y", "12345", 200, "ok 5", true,
			AccessLine{Address: "flaky", Method: "PUT", Path: "/y", Proto: "HTTP/1.1", Status: 200, Site: "east", BytesIn: 5, Retries: 1}, 4},
	}
	var want []AccessLine
	for _, r := range requests {
		status, body := do(t, r.c, r.method, r.url, r.body)
		if status != r.wantStatus || (r.wantBody != "" && body != r.wantBody) {
			t.Fatalf("%s %s: %d %q, want %d %q", r.method, r.url, status, body, r.wantStatus, r.wantBody)
		}
		if r.wantInLog {
			l := r.want
			l.BytesOut = r.wantBytesOut
			if l.BytesOut < 0 {
				l.BytesOut = int64(len(body)) // skiff's own answer
			}
			want = append(want, l)
			// A line is written once its answer ended, which may be
			// just after the client read it: wait, to keep the order.
			waitLines(t, w, len(want))
		}
	}
	got := w.lines(t)
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i, l := range got {
		ts, err := time.Parse(accessTimeFormat, l.TS)
		if err != nil || !strings.HasSuffix(l.TS, "Z") || len(l.TS) != len("2006-01-02T15:04:05.000Z") {
			t.Errorf("line %d: ts %q is not RFC 3339 in UTC with milliseconds (%v)", i, l.TS, err)
		}
		if ts.Before(start) || ts.After(time.Now()) {
			t.Errorf("line %d: ts %s not during the test (from %s)", i, l.TS, start.Format(accessTimeFormat))
		}
		if l.DurationMS <= 0 || l.DurationMS > 10000 {
			t.Errorf("line %d: duration_ms %v", i, l.DurationMS)
		}
		if host, _, err := net.SplitHostPort(l.Client); err != nil || host != "127.0.0.1" {
			t.Errorf("line %d: client %q", i, l.Client)
		}
		l.TS, l.DurationMS, l.Client = "", 0, ""
		if l != want[i] {
			t.Errorf("line %d:\n got %+v\nwant %+v", i, l, want[i])
		}
	}
	if n := value(a.m.AccessLogErrors); n != 0 {
		t.Errorf("skiff_http_access_log_errors_total = %v", n)
	}
}

// A request that upgrades its connection gets its line when the
// connection ends: status 101 and the bytes carried each way.
func TestAccessLogUpgrade(t *testing.T) {
	ep := endpoint(t)
	w := &lineWriter{}
	a := newAccessEngine(t, w, map[string][]Target{"web": {{Key: ep, Endpoint: ep, Protocol: model.HTTP}}})
	url := a.listen(t, "web", true, false)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /chat?room=1 HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "hello" {
		t.Fatalf("echo: %q, %v", got, err)
	}
	if len(w.lines(t)) != 0 {
		t.Fatal("a line before the upgraded connection ended")
	}
	c.Close()
	var l AccessLine
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ls := w.lines(t); len(ls) == 1 {
			l = ls[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no line after the upgraded connection ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	header := int64(len("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"))
	if l.Status != 101 || l.Path != "/chat" || l.Site != "east" || l.BytesIn != 5 || l.BytesOut != header+5 {
		t.Errorf("line %+v; want status 101, path /chat, site east, 5 bytes in, %d out", l, header+5)
	}
}

// A line that cannot be written is counted, and the request answered.
func TestAccessLogWriteError(t *testing.T) {
	ep := endpoint(t)
	w := &lineWriter{fail: true}
	a := newAccessEngine(t, w, map[string][]Target{"web": {{Key: ep, Endpoint: ep, Protocol: model.HTTP}}})
	url := a.listen(t, "web", true, false)
	c := client(false)
	for range 3 {
		if status, body := do(t, c, "GET", url+"/", ""); status != 200 || body != "ok 0" {
			t.Fatalf("answer %d %q", status, body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for value(a.m.AccessLogErrors) != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("skiff_http_access_log_errors_total = %v, want 3", value(a.m.AccessLogErrors))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An engine without an access log logs nothing, whatever ServeConn is
// told.
func TestAccessLogOff(t *testing.T) {
	ep := endpoint(t)
	a := newAccessEngine(t, nil, map[string][]Target{"web": {{Key: ep, Endpoint: ep, Protocol: model.HTTP}}})
	if a.e.alog != nil {
		t.Fatal("an access log without a writer")
	}
	url := a.listen(t, "web", true, false)
	if status, _ := do(t, client(false), "GET", url+"/", ""); status != 200 {
		t.Fatalf("status %d", status)
	}
}

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"/short", 256, "/short"},
		{"/abcdef", 4, "/abc"},
		{"/éé", 4, "/é"}, // 5 bytes; the second é would be cut in two
		{"/€", 3, "/"},
		{"\xff\xff\xff\xff\xff", 2, "\xff\xff"},
		{strings.Repeat("\x80", 10), 4, strings.Repeat("\x80", 4)},
	} {
		if got := clip(tc.in, tc.n); got != tc.want || len(got) > tc.n {
			t.Errorf("clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	var buf bytes.Buffer
	for _, r := range clip("/"+strings.Repeat("é", 200), MaxLoggedPath) {
		buf.WriteRune(r)
	}
	if buf.Len() != 255 {
		t.Errorf("a path of é clipped to %d bytes, want 255", buf.Len())
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
