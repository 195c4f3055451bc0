package l7

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-io/skiff/sidecar/shared/model"
)

// guardRun feeds data to a new guard in the pieces split cuts (split
// returns the length of the next piece, given what is left), as Reads
// would return them, and returns the guard and where requests ended.
func guardRun(data []byte, split func(left int) int) (*framing, []int64) {
	g := &framing{}
	var ends []int64
	g.onEnd = func(off int64) { ends = append(ends, off) }
	for len(data) > 0 {
		n := min(max(split(len(data)), 1), len(data))
		g.scan(data[:n])
		data = data[n:]
	}
	return g, ends
}

// splits are the ways the tests cut a stream into Reads.
func splits(seed uint64) map[string]func(int) int {
	r := rand.New(rand.NewPCG(seed, 7))
	return map[string]func(int) int{
		"whole":  func(left int) int { return left },
		"bytes":  func(int) int { return 1 },
		"random": func(left int) int { return 1 + r.IntN(min(left, 40)) },
		"4KiB":   func(int) int { return 4096 },
	}
}

// badOf decodes a guard's bad record: the index and reason, or -1.
func badOf(g *framing) (index int, reason uint8) {
	b := g.bad.Load()
	if b == 0 {
		return -1, badNone
	}
	return int(b>>8) - 1, uint8(b & 0xff)
}

const (
	getX     = "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	postX    = "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chunkedX = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
)

// Well-framed requests, pipelined and cut anyhow, end where they end,
// and none is recorded.
func TestFramingGood(t *testing.T) {
	big := strings.Repeat("z", 70000)
	for _, tc := range []struct {
		name    string
		reqs    []string
		counted int // requests net/http hands the handler
	}{
		{"no body", []string{getX, getX, "HEAD / HTTP/1.0\r\n\r\n"}, 3},
		{"content-length", []string{postX, "PUT /big HTTP/1.1\r\nhost: x\r\ncontent-LENGTH: 70000\r\n\r\n" + big, getX}, 3},
		{"zero and repeated content-length", []string{
			"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
			"POST / HTTP/1.1\r\nContent-Length: 03\r\nX: y\r\nContent-Length:   03  \r\n\r\nabc"}, 2},
		{"chunked", []string{chunkedX, getX, chunkedX}, 3},
		{"chunk extensions, sizes and trailers", []string{
			"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked \r\n\r\n" +
				"A;name=\"v;1\"\r\n0123456789\r\n" + "1 \t\r\nx\r\n" + "00f;a;b=c\r\n" + strings.Repeat("y", 15) + "\r\n" +
				"0;last\r\nExpires: never\r\nX-Sum: a b\tc\r\n\r\n",
			getX}, 2},
		{"a large chunk", []string{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n" + big + "\r\n0\r\n\r\n"}, 1},
		{"bare LF in the header", []string{"GET / HTTP/1.1\nHost: x\nContent-Length: 2\n\nok", "GET / HTTP/1.1\r\nA: b\n\r\n"}, 2},
		{"folded fields that are not framing", []string{"GET / HTTP/1.1\r\nX: a\r\n  b\r\n\tc\r\n \r\nContent-Length: 1\r\n\r\n!"}, 1},
		{"CRLF after a POST", []string{postX, "\r\n" + postX, "\r\n\r\n" + getX}, 3},
		{"OPTIONS * is net/http's", []string{"OPTIONS * HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi", getX, "OPTIONS /* HTTP/1.1\r\n\r\n"}, 2},
		{"PRI * HTTP/2.0 that is not the preface", []string{"PRI * HTTP/2.0\r\nHost: x\r\nContent-Length: 1\r\n\r\n!", getX}, 2},
		{"other fields that look alike", []string{"GET / HTTP/1.1\r\nContent-Lengths: x\r\nTransfer-Encodin: y\r\nContent-Type: a\r\n\r\n", getX}, 2},
		{"HTTP/1.9 and odd targets", []string{"GET http://x/ HTTP/1.9\r\n\r\n", "M-SEARCH ** HTTP/1.1\r\n\r\n"}, 2},
	} {
		stream := strings.Join(tc.reqs, "")
		var want []int64
		var off int64
		for _, r := range tc.reqs {
			off += int64(len(r))
			want = append(want, off)
		}
		for how, split := range splits(uint64(len(stream))) {
			g, ends := guardRun([]byte(stream), split)
			if i, reason := badOf(g); i >= 0 {
				t.Errorf("%s, %s: request %d recorded: %s", tc.name, how, i, badReasons[reason])
			}
			if !slices.Equal(ends, want) || g.n != tc.counted {
				t.Errorf("%s, %s: ends %v and %d counted, want %v and %d", tc.name, how, ends, g.n, want, tc.counted)
			}
		}
	}
}

// An ambiguous request is recorded at its index among the handler's
// requests, whatever the Reads, and the guard stops there.
func TestFramingBad(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    string
		reason uint8
	}{
		{"CL then TE", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", badBoth},
		{"TE then CL", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", badBoth},
		{"TE and a CL of 0", "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 0\r\n\r\n0\r\n\r\n", badBoth},
		{"two CLs", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", badCLs},
		{"two CL strings", "POST / HTTP/1.1\r\nContent-Length: 05\r\nContent-Length: 5\r\n\r\nhello", badCLs},
		{"a CL list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", badCL},
		{"a signed CL", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", badCL},
		{"an empty CL", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", badCL},
		{"a CL too large", "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n", badCL},
		{"a CR in a CL", "POST / HTTP/1.1\r\nContent-Length: 5\r \r\n\r\nhello", badCL},
		{"two TEs", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", badTEs},
		{"TE gzip", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", badTE},
		{"TE list", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", badTE},
		{"TE chunked twice over", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", badTE},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", badTE10},
		{"space before the colon", "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello", badSpace},
		{"tab before the colon", "POST / HTTP/1.1\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n", badSpace},
		{"space in another name", "GET / HTTP/1.1\r\nX Y: 1\r\n\r\n", badSpace},
		{"folded TE", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n \r\n\r\n0\r\n\r\n", badFold},
		{"an empty TE, folded", "POST / HTTP/1.1\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", badTE},
		{"folded CL", "POST / HTTP/1.1\r\nContent-Length: 5\r\n \r\n\r\nhello", badFold},
		{"a field without a colon", "GET / HTTP/1.1\r\nHostx\r\n\r\n", badHeader},
		{"a first field line folded", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", badHeader},
		{"a CR line", "GET / HTTP/1.1\r\n\rHost: x\r\n\r\n", badHeader},
		{"a request line of one space", "GET /\r\n\r\n", badHeader},
		{"HTTP/2.0 not PRI *", "GET / HTTP/2.0\r\n\r\n", badHeader},
		{"HTTP/1.1 with a tail", "GET / HTTP/1.10\r\n\r\n", badHeader},
		{"a bad method", "G(T / HTTP/1.1\r\n\r\n", badHeader},
		{"a chunk size not hex", chunkedHead + "5x\r\nhello\r\n0\r\n\r\n", badChunk},
		{"a chunk size with a space before ;", chunkedHead + "5 ;a\r\nhello\r\n0\r\n\r\n", badChunk},
		{"a chunk size after a space", chunkedHead + " 5\r\nhello\r\n0\r\n\r\n", badChunk},
		{"an empty chunk size", chunkedHead + ";a\r\nhello\r\n0\r\n\r\n", badChunk},
		{"17 hex digits", chunkedHead + "00000000000000005\r\nhello\r\n0\r\n\r\n", badChunk},
		{"a bare LF after the size", chunkedHead + "5\nhello\r\n0\r\n\r\n", badChunk},
		{"a CR in an extension", chunkedHead + "5;a\rb\r\nhello\r\n0\r\n\r\n", badChunk},
		{"chunk data too long", chunkedHead + "5\r\nhello!\r\n0\r\n\r\n", badChunk},
		{"no CRLF after the data", chunkedHead + "5\r\nhello0\r\n\r\n", badChunk},
		{"a chunk-size line too long", chunkedHead + "5;" + strings.Repeat("e", 4093) + "\r\nhello\r\n0\r\n\r\n", badChunk},
		{"too much overhead", chunkedHead + strings.Repeat("1;"+strings.Repeat("e", 200)+"\r\nx\r\n", 100) + "0\r\n\r\n", badChunk},
		{"a trailer with a bare LF", chunkedHead + "0\r\nA: b\n\r\n", badTrailer},
		{"a trailer ending in a bare LF", chunkedHead + "0\r\n\n", badTrailer},
		{"a folded trailer", chunkedHead + "0\r\nA: b\r\n c\r\n\r\n", badTrailer},
		{"a trailer without a colon", chunkedHead + "0\r\nA b\r\n\r\n", badTrailer},
		{"a trailer too long", chunkedHead + "0\r\nA: " + strings.Repeat("b", 4096) + "\r\n\r\n", badTrailer},
	} {
		stream := postX + getX + tc.req + getX
		for how, split := range splits(uint64(len(stream))) {
			g, ends := guardRun([]byte(stream), split)
			if i, reason := badOf(g); i != 2 || reason != tc.reason {
				t.Errorf("%s, %s: recorded request %d (%s), want 2 (%s)", tc.name, how, i, badReasons[reason], badReasons[tc.reason])
			}
			if want := []int64{int64(len(postX)), int64(len(postX + getX))}; !slices.Equal(ends, want) {
				t.Errorf("%s, %s: ends %v, want %v", tc.name, how, ends, want)
			}
		}
	}
}

const chunkedHead = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"

// The index is the handler's: OPTIONS *, which net/http answers itself,
// is not counted; PRI * HTTP/2.0, which it hands the handler, is.
func TestFramingIndex(t *testing.T) {
	smuggle := "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	for _, tc := range []struct {
		stream string
		want   int
	}{
		{smuggle, 0},
		{"OPTIONS * HTTP/1.1\r\n\r\n" + smuggle, 0},
		{getX + "OPTIONS * HTTP/1.1\r\nContent-Length: 1\r\n\r\n!" + getX + smuggle, 2},
		{"OPTIONS * HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + getX, 0},
		{"PRI * HTTP/2.0\r\nHost: x\r\n\r\n" + smuggle, 1},
		{getX + chunkedHead + "zz\r\n" + getX, 1}, // the next request is refused
	} {
		g, _ := guardRun([]byte(tc.stream), func(int) int { return 3 })
		if i, _ := badOf(g); i != tc.want {
			t.Errorf("%q: recorded request %d, want %d", tc.stream, i, tc.want)
		}
	}
}

// A connection that begins with HTTP/2's preface is not followed; one
// that begins with part of it is HTTP/1.
func TestFramingPreface(t *testing.T) {
	h2 := string(h2Preface) + "\x00\x00\x12\x04\x00\x00\x00\x00\x00" + "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
	for how, split := range splits(1) {
		g, ends := guardRun([]byte(h2), split)
		if !g.h2.Load() || g.st != stOff || len(ends) != 0 || g.bad.Load() != 0 {
			t.Errorf("%s: h2 %v, state %d, ends %v, bad %x", how, g.h2.Load(), g.st, ends, g.bad.Load())
		}
		g, ends = guardRun([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\nX"+getX), split)
		if g.h2.Load() || !slices.Equal(ends, []int64{18}) {
			t.Errorf("%s: a broken preface: h2 %v, ends %v", how, g.h2.Load(), ends)
		}
		if i, reason := badOf(g); i != 1 || reason != badHeader {
			t.Errorf("%s: a broken preface: recorded request %d (%s), want 1", how, i, badReasons[reason])
		}
		g, ends = guardRun([]byte("PRI * HTTP/1.1\r\n\r\n"+getX), split)
		if g.h2.Load() || !slices.Equal(ends, []int64{18, 18 + int64(len(getX))}) || g.bad.Load() != 0 {
			t.Errorf("%s: PRI * HTTP/1.1: h2 %v, ends %v, bad %x", how, g.h2.Load(), ends, g.bad.Load())
		}
	}
}

// The handler's side: requests before the recorded one are served, it
// and those after it are refused, and h2c's requests are not counted.
func TestFramingRefusal(t *testing.T) {
	g, _ := guardRun([]byte(getX+"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), func(l int) int { return l })
	var got []string
	for range 3 {
		got = append(got, g.refusal())
	}
	want := []string{"", "skiff: request names both Content-Length and Transfer-Encoding; refused as a request smuggling attempt",
		"skiff: an earlier request on this connection names both Content-Length and Transfer-Encoding, so where this one begins cannot be trusted; refused as a request smuggling attempt"}
	if !slices.Equal(got, want) {
		t.Errorf("refusals %q, want %q", got, want)
	}
	h2, _ := guardRun(h2Preface, func(l int) int { return l })
	h2.bad.Store(1<<8 | badBoth) // cannot happen; shows nothing is counted
	if msg := h2.refusal(); msg != "" || h2.served != 0 {
		t.Errorf("h2c: refusal %q, %d served", msg, h2.served)
	}
	var none *framing
	if msg := none.refusal(); msg != "" {
		t.Errorf("no guard: refusal %q", msg)
	}
}

// Following a Read costs no allocation, and a Content-Length body is
// skipped by count.
func TestFramingAllocs(t *testing.T) {
	head := []byte("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
	body := make([]byte, 32<<10)
	g := &framing{}
	g.scan(head)
	if n := testing.AllocsPerRun(100, func() { g.scan(body) }); n != 0 {
		t.Errorf("%v allocations per Read of a body", n)
	}
	if g.st != stBody {
		t.Errorf("state %d, want the body's", g.st)
	}
	reqs := []byte(strings.Repeat(getX+chunkedX, 10))
	if n := testing.AllocsPerRun(100, func() { *g = framing{}; g.scan(reqs) }); n != 0 {
		t.Errorf("%v allocations per Read of requests", n)
	}
	if g.st != stStart || g.n != 20 {
		t.Errorf("state %d, %d requests", g.st, g.n)
	}
}

// BenchmarkFraming follows pipelined requests with small bodies, and a
// large Content-Length body, in 4 KiB Reads.
func BenchmarkFraming(b *testing.B) {
	small := []byte(strings.Repeat("GET /items/7 HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"+postX+chunkedX, 20))
	large := append([]byte("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"), make([]byte, 1<<20)...)
	for _, s := range []struct {
		name string
		data []byte
	}{{"requests", small}, {"body", large}} {
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(s.data)))
			b.ReportAllocs()
			for b.Loop() {
				g := framing{}
				for p := s.data; len(p) > 0; {
					n := min(len(p), 4096)
					g.scan(p[:n])
					p = p[n:]
				}
				if g.bad.Load() != 0 || g.st != stStart {
					b.Fatalf("bad %x, state %d", g.bad.Load(), g.st)
				}
			}
		})
	}
}

// netHTTPEnds reads data as net/http's server does, with ReadRequest
// (and the server's tolerance of CRLF after a POST), reading each body
// whole, and returns where each request ended, and the error that ended
// reading a body, if one did.
func netHTTPEnds(data []byte) (ends []int64, bodyErr error) {
	src := bytes.NewReader(data)
	br := bufio.NewReader(src)
	last := ""
	for {
		if last == "POST" {
			peek, _ := br.Peek(4)
			n := 0
			for n < len(peek) && (peek[n] == '\r' || peek[n] == '\n') {
				n++
			}
			_, _ = br.Discard(n)
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return ends, nil
		}
		last = req.Method
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return ends, err
		}
		ends = append(ends, int64(len(data))-int64(src.Len())-int64(br.Buffered()))
	}
}

// truncation reports a body error that only says the bytes ran out.
func truncation(err error) bool {
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "unexpected EOF") || strings.Contains(err.Error(), "suspiciously long trailer")
}

// FuzzFraming checks the guard against net/http: the same requests end
// at the same offsets, however the bytes are cut into Reads; a body that
// net/http cannot read does not end for the guard; and one that net/http
// finds malformed is recorded.
func FuzzFraming(f *testing.F) {
	for _, s := range []string{
		getX + postX + chunkedX,
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		postX + "\r\n" + getX,
		"GET / HTTP/1.1\nA: b\n c\n\nGET / HTTP/1.0\r\n\r\n",
		chunkedHead + "a;x=y \r\n0123456789\r\n0\r\nT: 1\r\n\r\n" + getX,
		chunkedHead + "5\r\nhello\r\n0\r\n\nGET / HTTP/1.1\r\n\r\n",
		chunkedHead + "zz\r\n" + getX,
		"OPTIONS * HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi" + getX,
		string(h2Preface),
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r",
		"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n!",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\nX: a\r\n b\r\n\r\n1 \r\nx\r\n0\r\n\r\n",
		chunkedHead + "0\r\nA: b\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
		chunkedHead + "ffffffffffffffff\r\n" + getX,
		chunkedHead + strings.Repeat("1;"+strings.Repeat("e", 100)+"\r\nx\r\n", 170) + "0\r\n\r\n",
		"GET / HTTP/1.1\r\nContent-Length: 0000000000000000000000000000000000002\r\n\r\nab" + getX,
		"GET  / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nA\tB: c\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g, ends := guardRun(data, func(l int) int { return l })
		g1, ends1 := guardRun(data, func(int) int { return 1 })
		g7, ends7 := guardRun(data, func(int) int { return 7 })
		if !slices.Equal(ends, ends1) || !slices.Equal(ends, ends7) || g.bad.Load() != g1.bad.Load() ||
			g.bad.Load() != g7.bad.Load() || g.h2.Load() != g1.h2.Load() || g.n != g1.n {
			t.Fatalf("Reads change the result: ends %v, %v, %v; bad %x, %x, %x", ends, ends1, ends7, g.bad.Load(), g1.bad.Load(), g7.bad.Load())
		}
		if g.h2.Load() || g.st == stPreface {
			return // h2c, or not yet known
		}
		want, bodyErr := netHTTPEnds(data)
		bad := g.bad.Load() != 0
		if !bad && len(ends) < len(want) {
			t.Fatalf("the guard found %d requests (%v), net/http %d (%v)", len(ends), ends, len(want), want)
		}
		if n := min(len(ends), len(want)); !slices.Equal(ends[:n], want[:n]) {
			t.Fatalf("requests end at %v for the guard, at %v for net/http", ends, want)
		}
		if bodyErr != nil && len(ends) > len(want) {
			t.Fatalf("net/http failed the body of request %d (%v); the guard ended it at %d", len(want), bodyErr, ends[len(want)])
		}
		if bodyErr != nil && !bad && !truncation(bodyErr) {
			t.Fatalf("net/http failed the body of request %d (%v); the guard recorded nothing", len(want), bodyErr)
		}
	})
}

// recorder is an endpoint that answers "ok" and the length of the body
// it read, and keeps the paths it was sent.
type recorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *recorder) start(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.paths = append(r.paths, req.URL.Path)
		r.mu.Unlock()
		n, _ := io.Copy(io.Discard, req.Body)
		fmt.Fprintf(w, "ok %d", n)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.paths)
}

// answer is one answer read off a raw connection.
type answer struct {
	status int
	body   string
	close  bool // Connection: close
}

// rawExchange writes raw on a new connection to addr and reads n
// answers; with checkClose, it then reports whether the connection
// closed (rather than staying open a second).
func rawExchange(t *testing.T, addr, raw string, n int, checkClose bool) (answers []answer, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(addr, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for len(answers) < n {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Errorf("answer %d: %v", len(answers), err)
			return answers, false
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("answer %d: %v", len(answers), err)
		}
		answers = append(answers, answer{resp.StatusCode, string(b), resp.Close})
	}
	if !checkClose {
		return answers, false
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = br.ReadByte()
	var ne net.Error
	return answers, err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// Through an engine: a request that names both Content-Length and
// Transfer-Encoding is answered 400 and its connection closed, and the
// endpoint never sees it; a request before it on the connection, one
// with only chunked, and h2c are served.
func TestFramingEngine(t *testing.T) {
	ep := &recorder{}
	addr := ep.start(t)
	a := newAccessEngine(t, nil, map[string][]Target{"web": {{Key: addr, Endpoint: addr, Protocol: model.HTTP}}})
	url := a.listen(t, "web", false, false)
	smuggle := "POST /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
	const refused = "skiff: request names both Content-Length and Transfer-Encoding; refused as a request smuggling attempt\n"

	got, closed := rawExchange(t, url, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n"+smuggle+"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", 2, true)
	want := []answer{{200, "ok 0", false}, {400, refused, true}}
	if !slices.Equal(got, want) || !closed {
		t.Errorf("pipelined: answers %+v (closed %v), want %+v and the connection closed", got, closed, want)
	}
	got, closed = rawExchange(t, url, "GET /upgrade HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"+smuggle, 2, true)
	if want := []answer{{200, "ok 0", false}, {400, refused, true}}; !slices.Equal(got, want) || !closed {
		t.Errorf("after an upgrade offer: answers %+v (closed %v), want %+v and the connection closed", got, closed, want)
	}
	got, _ = rawExchange(t, url, "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n"+
		"POST /length HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 2, false)
	if want := []answer{{200, "ok 5", false}, {200, "ok 4", false}}; !slices.Equal(got, want) {
		t.Errorf("chunked, then Content-Length: answers %+v, want %+v", got, want)
	}
	if status, body := do(t, client(true), "POST", url+"/h2c", "abc"); status != 200 || body != "ok 3" {
		t.Errorf("h2c: %d %q", status, body)
	}
	if status, body := do(t, client(false), "POST", url+"/h1", "abcd"); status != 200 || body != "ok 4" {
		t.Errorf("HTTP/1.1: %d %q", status, body)
	}
	for _, p := range ep.seen() {
		if p == "/smuggled" || p == "/after" {
			t.Errorf("the endpoint was sent %s", p)
		}
	}
	if want := []string{"/first", "/upgrade", "/chunked", "/length", "/h2c", "/h1"}; !slices.Equal(ep.seen(), want) {
		t.Errorf("the endpoint was sent %v, want %v", ep.seen(), want)
	}
	if n := value(a.m.Requests.WithLabelValues("web", "none", "4xx", "")); n != 2 {
		t.Errorf("skiff_http_requests_total{site=none,class=4xx} = %v, want 2", n)
	}
}

// Through an engine: net/http reads the request after a chunked body it
// found malformed (the engine serves full duplex); it is refused.
func TestFramingEngineMalformedChunk(t *testing.T) {
	ep := &recorder{}
	addr := ep.start(t)
	a := newAccessEngine(t, nil, map[string][]Target{"web": {{Key: addr, Endpoint: addr, Protocol: model.HTTP}}})
	url := a.listen(t, "web", false, false)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(ep.seen()) == 0 { // the request is under way
		if ctx.Err() != nil {
			t.Fatal("the endpoint never got the request")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fmt.Fprint(c, "zz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	var last *http.Response
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, _ := io.ReadAll(resp.Body)
		t.Logf("answer %d %q", resp.StatusCode, b)
		last = resp
		if resp.StatusCode == http.StatusBadRequest && !strings.Contains(string(b), "an earlier request on this connection has malformed chunked framing") {
			t.Errorf("refused with %q", b)
		}
	}
	if last == nil || last.StatusCode != http.StatusBadRequest || !last.Close {
		t.Errorf("last answer %+v, want 400 and the connection closed", last)
	}
	if slices.Contains(ep.seen(), "/smuggled") {
		t.Error("the endpoint was sent /smuggled")
	}
}
