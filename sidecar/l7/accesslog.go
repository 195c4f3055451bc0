package l7

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// The access log's bounds and formats.
const (
	// MaxLoggedPath bounds the path of an access-log line, in bytes.
	MaxLoggedPath = 256
	// maxLoggedMethod bounds the method (a token of any length to
	// net/http, within the header's limit).
	maxLoggedMethod = 64
	// accessTimeFormat is RFC 3339 with milliseconds; times are UTC.
	accessTimeFormat = "2006-01-02T15:04:05.000Z07:00"
)

// AccessLine is one line of the access log: a JSON object, one per
// request of a logged connection, written once its answer ended.
type AccessLine struct {
	// TS is when the request arrived: RFC 3339 with milliseconds, UTC.
	TS string `json:"ts"`
	// Address is the network address the request was for.
	Address string `json:"address"`
	// Method is the request's method, clipped to 64 bytes.
	Method string `json:"method"`
	// Path is the URL's path (no query string), clipped to
	// MaxLoggedPath bytes.
	Path string `json:"path"`
	// Proto is the client's protocol: HTTP/1.1, HTTP/2.0.
	Proto string `json:"proto"`
	// Status is the answer's status: 101 for a request that upgraded
	// its connection, 499 when the client went away before any answer.
	Status int `json:"status"`
	// Site is the site that answered; "none" when skiff answered.
	Site string `json:"site"`
	// DurationMS is the time from the request to its answer's end (an
	// upgraded connection's end), in milliseconds.
	DurationMS float64 `json:"duration_ms"`
	// BytesIn and BytesOut are the request body bytes read from the
	// client and the response body bytes written to it; for an upgraded
	// connection, the bytes each way after the request's header.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// Retries counts the candidates the request went to after the first.
	Retries int `json:"retries"`
	// Client is the client's address (host:port).
	Client string `json:"client"`
}

// accessLog writes the lines, one Write per line, serialised.
type accessLog struct {
	errs prometheus.Counter
	mu   sync.Mutex
	w    io.Writer
	buf  bytes.Buffer
	enc  *json.Encoder
}

func newAccessLog(w io.Writer, errs prometheus.Counter) *accessLog {
	a := &accessLog{w: w, errs: errs}
	a.enc = json.NewEncoder(&a.buf)
	a.enc.SetEscapeHTML(false) // paths keep their < > &
	return a
}

// write writes one line; a failure is counted, never returned: the
// request it logs is answered already.
func (a *accessLog) write(l *AccessLine) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Reset()
	if err := a.enc.Encode(l); err != nil { // ends the line with \n
		a.errs.Inc()
		return
	}
	if _, err := a.w.Write(a.buf.Bytes()); err != nil {
		a.errs.Inc()
	}
	if a.buf.Cap() > 64<<10 {
		a.buf = bytes.Buffer{} // not kept after an odd line
		a.enc = json.NewEncoder(&a.buf)
		a.enc.SetEscapeHTML(false)
	}
}

// record is what the access log learns of one request as it is served:
// the answer's status and body bytes (the response writer it wraps),
// the request body's bytes, and for an upgrade the bytes it carried.
type record struct {
	http.ResponseWriter
	status  int  // the first final status written; 0 if none
	pinned  bool // the connection was upgraded and spliced
	bytesIn atomic.Int64
	out     int64
}

// track wraps w and req's body to count what passes; the request
// returned is a copy with the counting body.
func track(w http.ResponseWriter, req *http.Request) (*record, *http.Request) {
	rec := &record{ResponseWriter: w}
	if req.Body != nil && req.Body != http.NoBody {
		req = req.WithContext(req.Context())
		req.Body = &countingBody{ReadCloser: req.Body, n: &rec.bytesIn}
	}
	return rec, req
}

// WriteHeader records a final status; an informational one (100, 103),
// which the proxy may write from the transport's goroutine, passes
// untouched.
func (r *record) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		r.ResponseWriter.WriteHeader(code)
		return
	}
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *record) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.out += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the server's writer (flush,
// hijack, full duplex).
func (r *record) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// countingBody counts the bytes read from a request body; the proxy's
// transport may read it on another goroutine.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// logRequest writes the access-log line of a request of plan p, served
// through rec, once its answer ended.
func (e *Engine) logRequest(p *plan, rec *record, req *http.Request) {
	status := rec.status
	switch {
	case rec.pinned:
		status = http.StatusSwitchingProtocols
	case status == 0 && req.Context().Err() != nil:
		status = 499 // the client went away; nothing was answered
	case status == 0:
		status = http.StatusOK // net/http's, for an answer never written
	}
	site := p.site
	if site == "" {
		site = "none"
	}
	e.alog.write(&AccessLine{
		TS:         p.start.UTC().Format(accessTimeFormat),
		Address:    p.address,
		Method:     clip(req.Method, maxLoggedMethod),
		Path:       clip(req.URL.Path, MaxLoggedPath),
		Proto:      req.Proto,
		Status:     status,
		Site:       site,
		DurationMS: float64(time.Since(p.start).Microseconds()) / 1000,
		BytesIn:    rec.bytesIn.Load(),
		BytesOut:   rec.out,
		Retries:    p.retries,
		Client:     req.RemoteAddr,
	})
}

// clip cuts s to at most n bytes, not in the middle of a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for i := 0; i < utf8.UTFMax-1 && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut--
	}
	if !utf8.RuneStart(s[cut]) {
		cut = n // not UTF-8 anyway: the encoder replaces the bytes
	}
	return s[:cut]
}
