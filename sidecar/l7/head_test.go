package l7

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/http/httpguts"
)

// headTakeCase is a request head the fast path takes (head), the bytes
// after it (rest), and what parseRequestHead reads from it.
type headTakeCase struct {
	name, head, rest string
	method, target   string
	length           int64
	close, multicast bool
	fields           []string // every field as "name: value", in order
}

var headTakes = []headTakeCase{
	{name: "simple GET", head: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		method: "GET", target: "/", fields: []string{"Host: x"}},
	{name: "POST with Content-Length, body not in the head",
		head: "POST /p?q=1 HTTP/1.1\r\nHost: example.com:8080\r\nContent-Length: 5\r\n\r\n", rest: "hello",
		method: "POST", target: "/p?q=1", length: 5, fields: []string{"Host: example.com:8080", "Content-Length: 5"}},
	{name: "OWS around values", head: "GET /a HTTP/1.1\r\nHost:x\r\nX-A: \t v w \t\r\nX-B:\r\n\r\n",
		method: "GET", target: "/a", fields: []string{"Host: x", "X-A: v w", "X-B: "}},
	{name: "Connection: close", head: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		method: "GET", target: "/", close: true, fields: []string{"Host: x", "Connection: close"}},
	{name: "Connection: Keep-Alive, CLOSE", head: "GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
		method: "GET", target: "/", close: true, fields: []string{"Host: x", "Connection: Keep-Alive, CLOSE"}},
	{name: "Connection: keep-alive", head: "GET / HTTP/1.1\r\nConnection: keep-alive\r\nHost: x\r\n\r\n",
		method: "GET", target: "/", fields: []string{"Connection: keep-alive", "Host: x"}},
	{name: "multicast field", head: "PUT /m HTTP/1.1\r\nHost: x\r\nskiff-multicast: aggregate\r\nContent-Length: 0\r\n\r\n",
		method: "PUT", target: "/m", multicast: true, fields: []string{"Host: x", "skiff-multicast: aggregate", "Content-Length: 0"}},
	{name: "field order and case kept", head: "GET / HTTP/1.1\r\nz: 1\r\nHOST: h\r\na: 2\r\nZ: 3\r\n\r\n",
		method: "GET", target: "/", fields: []string{"z: 1", "HOST: h", "a: 2", "Z: 3"}},
	{name: "pipelined request after the head", head: "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n", rest: "GET /2 HTTP/1.1\r\nHost: x\r\n\r\n",
		method: "GET", target: "/1", fields: []string{"Host: x"}},
	{name: "lowercase token method", head: "get /x HTTP/1.1\r\nHost: x\r\n\r\n",
		method: "get", target: "/x", fields: []string{"Host: x"}},
	{name: "leading zeros and 18 digits", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n",
		method: "POST", target: "/", length: 999999999999999999, fields: []string{"Host: x", "Content-Length: 999999999999999999"}},
	{name: "Content-Length 007", head: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 007\r\n\r\n", rest: "1234567",
		method: "POST", target: "/", length: 7, fields: []string{"Host: x", "Content-Length: 007"}},
	{name: "escapes, ';' in the path", head: "GET /a%20b;p=1?c=%2F&d HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
		method: "GET", target: "/a%20b;p=1?c=%2F&d", fields: []string{"Host: [::1]:80"}},
	{name: "obs-text in a value", head: "GET / HTTP/1.1\r\nHost: x\r\nX: caf\xc3\xa9\r\n\r\n",
		method: "GET", target: "/", fields: []string{"Host: x", "X: caf\xc3\xa9"}},
}

// TestParseRequestHeadTake checks the heads the fast path takes: what is
// read from them, the fields in order, and the head's size (its last
// CRLF included, nothing after it). One reqHead serves every case, as a
// connection reuses it.
func TestParseRequestHeadTake(t *testing.T) {
	var h reqHead
	for _, tc := range headTakes {
		if got := parseRequestHead([]byte(tc.head+tc.rest), &h); got != headTake {
			t.Errorf("%s: verdict %d, want headTake", tc.name, got)
			continue
		}
		if string(h.method) != tc.method || string(h.target) != tc.target || h.length != tc.length ||
			h.close != tc.close || h.multicast != tc.multicast || h.size != len(tc.head) {
			t.Errorf("%s: method %q target %q length %d close %v multicast %v size %d; want %q %q %d %v %v %d",
				tc.name, h.method, h.target, h.length, h.close, h.multicast, h.size,
				tc.method, tc.target, tc.length, tc.close, tc.multicast, len(tc.head))
		}
		if got := fieldList(h.fields); !slices.Equal(got, tc.fields) {
			t.Errorf("%s: fields %q, want %q", tc.name, got, tc.fields)
		}
		var lines []byte
		for _, f := range h.fields {
			lines = append(lines, f.line...)
		}
		if want := tc.head[strings.Index(tc.head, "\r\n")+2 : len(tc.head)-2]; string(lines) != want {
			t.Errorf("%s: field lines %q, want %q", tc.name, lines, want)
		}
	}
}

// fieldList lists fields as "name: value".
func fieldList(fs []headField) []string {
	var l []string
	for _, f := range fs {
		l = append(l, string(f.name)+": "+string(f.value))
	}
	return l
}

const hostX = "Host: x\r\n"

// headVerdicts are heads the fast path does not take: hand-offs, and
// heads not ended yet.
var headVerdicts = []struct {
	name, in string
	want     int
}{
	{"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", headHandOff},
	{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nhost: x\r\n\r\n", headHandOff},
	{"invalid Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", headHandOff},
	{"Host with a slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", headHandOff},
	{"two equal Content-Lengths", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", headHandOff},
	{"two Content-Lengths", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxy", headHandOff},
	{"Content-Length +1", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: +1\r\n\r\nx", headHandOff},
	{"Content-Length -1", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: -1\r\n\r\n", headHandOff},
	{"Content-Length 1 2", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 1 2\r\n\r\nx", headHandOff},
	{"Content-Length 1,1", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 1,1\r\n\r\nx", headHandOff},
	{"Content-Length empty", "POST / HTTP/1.1\r\n" + hostX + "Content-Length:\r\n\r\n", headHandOff},
	{"Content-Length 0x5", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 0x5\r\n\r\n", headHandOff},
	{"Content-Length 19 digits", "POST / HTTP/1.1\r\n" + hostX + "Content-Length: 1000000000000000000\r\n\r\n", headHandOff},
	{"Transfer-Encoding", "POST / HTTP/1.1\r\n" + hostX + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", headHandOff},
	{"transfer-encoding identity", "POST / HTTP/1.1\r\n" + hostX + "transfer-encoding: identity\r\n\r\n", headHandOff},
	{"Upgrade", "GET / HTTP/1.1\r\n" + hostX + "Upgrade: websocket\r\n\r\n", headHandOff},
	{"Expect", "PUT / HTTP/1.1\r\n" + hostX + "Expect: 100-continue\r\nContent-Length: 1\r\n\r\n", headHandOff},
	{"TE", "GET / HTTP/1.1\r\n" + hostX + "TE: trailers\r\n\r\n", headHandOff},
	{"Connection: upgrade", "GET / HTTP/1.1\r\n" + hostX + "Connection: keep-alive, Upgrade\r\n\r\n", headHandOff},
	{"HTTP/1.0", "GET / HTTP/1.0\r\n" + hostX + "\r\n", headHandOff},
	{"HTTP/1.2", "GET / HTTP/1.2\r\n" + hostX + "\r\n", headHandOff},
	{"lowercase version", "GET / http/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", headHandOff},
	{"CONNECT", "CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n", headHandOff},
	{"CONNECT origin-form", "CONNECT /x HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"absolute-form", "GET http://x/ HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"asterisk", "OPTIONS * HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"empty target", "GET  HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"two spaces", "GET  / HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"space after version", "GET / HTTP/1.1 \r\n" + hostX + "\r\n", headHandOff},
	{"space in target", "GET /a b HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"tab in target", "GET /a\tb HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"control in target", "GET /a\x01 HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"DEL in target", "GET /a\x7f HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"fragment", "GET /a#b HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"bad escape in path", "GET /%zz HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"short escape at the end", "GET /a%4 HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"bad escape in query", "GET /?q=%g0 HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"';' in query", "GET /?a=1;b=2 HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"bare LF after request line", "GET / HTTP/1.1\n" + hostX + "\r\n", headHandOff},
	{"bare LF after a field", "GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", headHandOff},
	{"bare CR in a field", "GET / HTTP/1.1\r\n" + hostX + "X: a\rb\r\n\r\n", headHandOff},
	{"bare CR in request line", "GET /\r HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"obs-fold with space", "GET / HTTP/1.1\r\n" + hostX + "X: a\r\n b\r\n\r\n", headHandOff},
	{"obs-fold with tab", "GET / HTTP/1.1\r\n" + hostX + "X: a\r\n\tb: c\r\n\r\n", headHandOff},
	{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", headHandOff},
	{"empty field name", "GET / HTTP/1.1\r\n" + hostX + ": y\r\n\r\n", headHandOff},
	{"no colon", "GET / HTTP/1.1\r\n" + hostX + "Xy\r\n\r\n", headHandOff},
	{"non-token name", "GET / HTTP/1.1\r\n" + hostX + "X(y): z\r\n\r\n", headHandOff},
	{"NUL in a value", "GET / HTTP/1.1\r\n" + hostX + "X: a\x00b\r\n\r\n", headHandOff},
	{"DEL in a value", "GET / HTTP/1.1\r\n" + hostX + "X: a\x7fb\r\n\r\n", headHandOff},
	{"non-token method", "G(T / HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"no method", " / HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"leading empty line", "\r\nGET / HTTP/1.1\r\n" + hostX + "\r\n", headHandOff},
	{"empty head", "\r\n\r\n", headHandOff},
	// net/http reads a head with bare LF line ends whole: waiting for a
	// CRLFCRLF that never comes would hang the client.
	{"bare LF line ends, whole head", "GET / HTTP/1.1\nHost: x\n\n", headHandOff},
	{"bare LF empty line", "GET / HTTP/1.1\r\n" + hostX + "\n", headHandOff},
	{"bare LF, head not ended", "GET / HTTP/1.1\nHost: x", headHandOff},
	{"nothing", "", headMore},
	{"request line only", "GET / HTTP/1.1\r\n", headMore},
	{"no empty line yet", "GET / HTTP/1.1\r\n" + hostX, headMore},
	{"last LF missing", "GET / HTTP/1.1\r\n" + hostX + "\r", headMore},
	{"a bad request line, head not ended", "GET /a b HTTP/1.1\r\n", headHandOff},
	{"a bad field, head not ended", "GET / HTTP/1.1\r\nHost x\r\n", headHandOff},
	{"a line not ended yet", "GET / HTTP/1.1\r\nHo", headMore},
}

// TestParseRequestHeadVerdict checks the heads handed off to net/http,
// and those not ended yet.
func TestParseRequestHeadVerdict(t *testing.T) {
	for _, tc := range headVerdicts {
		var h reqHead
		if got := parseRequestHead([]byte(tc.in), &h); got != tc.want {
			t.Errorf("%s: %q: verdict %d, want %d", tc.name, tc.in, got, tc.want)
		}
	}
}

// headDrops are heads with the fields a proxy does not pass on.
var headDrops = []struct {
	name     string
	request  bool
	in       string
	dropped  []string // the names of the fields marked drop, in order
	undelivd string   // respHead.undelivered
}{
	{"request hop-by-hop", true, "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\n" +
		"Proxy-Connection: x\r\nProxy-Authorization: b\r\nProxy-Authenticate: c\r\nTrailer: T\r\nA: 1\r\n\r\n",
		[]string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Proxy-Authenticate", "Trailer"}, ""},
	{"request fields Connection names", true, "GET / HTTP/1.1\r\nHost: x\r\nX-Foo: 1\r\nConnection: close, X-Foo\r\n" +
		"x-foo: 2\r\nX-Bar: 3\r\nconnection: x-bar\r\nX-Foobar: 4\r\n\r\n",
		[]string{"X-Foo", "Connection", "x-foo", "X-Bar", "connection"}, ""},
	{"request forwarding fields", true, "GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-host: h\r\n" +
		"X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Forwarded-Port: 1\r\nX-Real-Ip: 1.2.3.4\r\n\r\n",
		[]string{"X-Forwarded-For", "x-forwarded-host", "X-Forwarded-Proto", "Forwarded"}, ""},
	{"request skiff's fields", true, "GET / HTTP/1.1\r\nHost: x\r\nSkiff-Multicast: events\r\nSkiff-Multicast-Deadline: 10\r\n" +
		"Skiff-Multicast-Result: 1\r\nSkiff-Undelivered: x\r\nSkiff-Multicast-Delivered: 1\r\n\r\n",
		[]string{"Skiff-Multicast", "Skiff-Multicast-Deadline", "Skiff-Multicast-Result", "Skiff-Undelivered"}, ""},
	{"request nothing to drop", true, "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\r\n", nil, ""},
	{"answer keeps Transfer-Encoding and Trailer", false, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n" +
		"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n\r\n",
		[]string{"Connection", "Keep-Alive", "Proxy-Connection"}, ""},
	{"answer keeps what Connection names of them", false, "HTTP/1.1 200 OK\r\nConnection: Transfer-Encoding, Trailer, X-A\r\n" +
		"Transfer-Encoding: chunked\r\nTrailer: X-T\r\nX-A: 1\r\n\r\n", []string{"Connection", "X-A"}, ""},
	{"answer Skiff-Undelivered", false, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nskiff-undelivered: no endpoint\r\n" +
		"X-Forwarded-For: 1.2.3.4\r\nSkiff-Multicast-Result: 1\r\n\r\n",
		[]string{"skiff-undelivered", "Skiff-Multicast-Result"}, "no endpoint"},
}

// TestHeadDropped checks which fields are marked drop, that dropped
// counts them, and that an answer's Skiff-Undelivered is captured.
func TestHeadDropped(t *testing.T) {
	for _, tc := range headDrops {
		var fields []headField
		var dropped int
		if tc.request {
			var h reqHead
			if v := parseRequestHead([]byte(tc.in), &h); v != headTake {
				t.Errorf("%s: verdict %d", tc.name, v)
				continue
			}
			fields, dropped = h.fields, h.dropped
		} else {
			var h respHead
			if !parseResponseHead([]byte(tc.in), &h) {
				t.Errorf("%s: refused", tc.name)
				continue
			}
			fields, dropped = h.fields, h.dropped
			if string(h.undelivered) != tc.undelivd {
				t.Errorf("%s: undelivered %q, want %q", tc.name, h.undelivered, tc.undelivd)
			}
		}
		if got := droppedNames(fields); !slices.Equal(got, tc.dropped) || dropped != len(tc.dropped) {
			t.Errorf("%s: dropped %q (counted %d), want %q", tc.name, got, dropped, tc.dropped)
		}
	}
}

// droppedNames lists the names of the fields marked drop.
func droppedNames(fs []headField) []string {
	var l []string
	for _, f := range fs {
		if f.drop {
			l = append(l, string(f.name))
		}
	}
	return l
}

// TestHeadDropKeepsFraming checks that a Connection field cannot make
// the fast path drop a field its framing or routing depends on: a
// request's Host and Content-Length, an answer's Content-Length. Either
// the head is not taken, or the field is passed on (net/http's
// ReverseProxy frames the message from ContentLength and Host, not from
// the header it filters).
func TestHeadDropKeepsFraming(t *testing.T) {
	for _, in := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: host\r\n\r\n",
	} {
		var h reqHead
		if parseRequestHead([]byte(in), &h) != headTake {
			continue
		}
		for _, f := range h.fields {
			if f.drop && (fieldIs(f.name, "Host") || fieldIs(f.name, "Content-Length")) {
				t.Errorf("%q: taken, and its %s field is dropped", in, f.name)
			}
		}
	}
	in := "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello"
	var h respHead
	if parseResponseHead([]byte(in), &h) {
		for _, f := range h.fields {
			if f.drop && fieldIs(f.name, "Content-Length") {
				t.Errorf("%q: passed on, and its Content-Length field is dropped", in)
			}
		}
	}
}

// respCase is an answer head parseResponseHead takes.
type respCase struct {
	name, in        string
	status          int
	length          int64
	chunked, http10 bool
	close           bool
}

var respTakes = []respCase{
	{"200 with Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, 5, false, false, false},
	{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, -1, true, false, false},
	{"chunked, any case and OWS", "HTTP/1.1 201 Created\r\ntransfer-encoding:  Chunked \r\n\r\n", 201, -1, true, false, false},
	{"no length", "HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil close", 200, -1, false, false, false},
	{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 200, 0, false, true, false},
	{"no reason", "HTTP/1.1 204\r\n\r\n", 204, -1, false, false, false},
	{"empty reason", "HTTP/1.1 404 \r\n\r\n", 404, -1, false, false, false},
	{"reason with obs-text and tab", "HTTP/1.1 200 D\xc3\xa9j\xc3\xa0\tvu\r\n\r\n", 200, -1, false, false, false},
	{"two equal Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc", 200, 3, false, false, false},
	{"Connection: close", "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 500, 0, false, false, true},
	{"304 with Content-Length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", 304, 99, false, false, false},
	{"status 999", "HTTP/1.1 999 What\r\n\r\n", 999, -1, false, false, false},
}

// TestParseResponseHead checks the answer heads passed on, and what is
// read from them.
func TestParseResponseHead(t *testing.T) {
	var h respHead
	for _, tc := range respTakes {
		if !parseResponseHead([]byte(tc.in), &h) {
			t.Errorf("%s: refused", tc.name)
			continue
		}
		size := strings.Index(tc.in, "\r\n\r\n") + 4
		if h.status != tc.status || h.length != tc.length || h.chunked != tc.chunked || h.http10 != tc.http10 ||
			h.close != tc.close || h.size != size {
			t.Errorf("%s: status %d length %d chunked %v http10 %v close %v size %d; want %d %d %v %v %v %d", tc.name,
				h.status, h.length, h.chunked, h.http10, h.close, h.size, tc.status, tc.length, tc.chunked, tc.http10, tc.close, size)
		}
	}
}

// respRefusals are answer heads that cannot be passed on unambiguously.
var respRefusals = []struct{ name, in string }{
	{"Content-Length and Transfer-Encoding", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"Transfer-Encoding and Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"},
	{"two Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"},
	{"Content-Length +3", "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n"},
	{"Content-Length 3,3", "HTTP/1.1 200 OK\r\nContent-Length: 3,3\r\n\r\n"},
	{"Content-Length empty", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n"},
	{"Transfer-Encoding gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"},
	{"Transfer-Encoding identity", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n"},
	{"Transfer-Encoding chunked, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"},
	{"two Transfer-Encodings", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"HTTP/2", "HTTP/2 200 OK\r\n\r\n"},
	{"HTTP/2.0", "HTTP/2.0 200 OK\r\n\r\n"},
	{"lowercase version", "http/1.1 200 OK\r\n\r\n"},
	{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n"},
	{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n"},
	{"status 099", "HTTP/1.1 099 x\r\n\r\n"},
	{"status with a letter", "HTTP/1.1 20a OK\r\n\r\n"},
	{"no space before reason", "HTTP/1.1 200OK\r\n\r\n"},
	{"two spaces before status", "HTTP/1.1  200 OK\r\n\r\n"},
	{"control in reason", "HTTP/1.1 200 O\x01K\r\n\r\n"},
	{"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
	{"bare CR", "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n"},
	{"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"},
	{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n"},
	{"not ended", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"},
	// RFC 9112, 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing;
	// net/http ignores it and reads the body to the connection's end.
	{"HTTP/1.0 chunked", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
	// net/http refuses a trailer that would frame the message.
	{"chunked, Trailer: Content-Length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n"},
	{"chunked, Trailer: x, transfer-encoding", "HTTP/1.1 200 OK\r\nTrailer: x, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n"},
	{"chunked, Trailer: trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Trailer\r\n\r\n"},
	// net/http compares repeated Content-Lengths as strings, and refuses
	// these (as does the framing guard).
	{"Content-Lengths 5 and 05", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\nhello"},
}

// TestParseResponseHeadRefused checks the answer heads that are not
// passed on.
func TestParseResponseHeadRefused(t *testing.T) {
	for _, tc := range respRefusals {
		var h respHead
		if parseResponseHead([]byte(tc.in), &h) {
			t.Errorf("%s: %q passed on", tc.name, tc.in)
		}
	}
}

// TestRespHeadBodyless checks the answers with no body whatever their
// header says: to HEAD, 1xx, 204, 304.
func TestRespHeadBodyless(t *testing.T) {
	for _, tc := range []struct {
		method string
		status int
		want   bool
	}{
		{"HEAD", 200, true}, {"GET", 100, true}, {"GET", 101, true}, {"POST", 199, true},
		{"GET", 204, true}, {"GET", 304, true}, {"GET", 200, false}, {"GET", 205, false},
		{"POST", 404, false}, {"head", 200, false},
	} {
		h := respHead{status: tc.status}
		if got := h.bodyless([]byte(tc.method)); got != tc.want {
			t.Errorf("%s %d: bodyless %v, want %v", tc.method, tc.status, got, tc.want)
		}
	}
}

// chunkCase is a chunked body: where it ends (end bytes in), or it needs
// more (end -1), or it is bad.
type chunkCase struct {
	name, in string
	end      int
	bad      bool
}

var (
	longExt      = "1;" + strings.Repeat("e", maxChunkLine-4) + "\r\n"      // 4096 bytes, CRLF included
	longTrailer  = "X: " + strings.Repeat("v", maxChunkLine-7) + "\r\n\r\n" // 4096 bytes, both CRLFs included
	trailerLines = "A: " + strings.Repeat("a", 2100) + "\r\nB: " + strings.Repeat("b", 2100) + "\r\n\r\n"
)

var chunkCases = []chunkCase{
	{"last chunk only", "0\r\n\r\n", 5, false},
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", 15, false},
	{"bytes after the end", "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n", 15, false},
	{"trailer", "0\r\nX: y\r\n\r\n", 11, false},
	{"two trailer fields", "1\r\na\r\n0\r\nX: y\r\nZ: w\r\n\r\nmore", 23, false},
	{"extensions", "3;a=b\r\nabc\r\n0;x=\"q\"\r\n\r\n", 23, false},
	{"upper and lower hex", "A\r\n0123456789\r\nb\r\nabcdefghijk\r\n0\r\n\r\n", 36, false},
	{"whitespace after size", "1 \t\r\nx\r\n0\r\n\r\n", 13, false},
	{"size line of 4096 bytes", longExt + "x\r\n0\r\n\r\n", len(longExt) + 8, false},
	{"16 digits of size", "0000000000000001\r\nx\r\n0\r\n\r\n", 26, false},
	{"trailer of 4096 bytes", "0\r\n" + longTrailer + "GET", 3 + len(longTrailer), false},
	{"data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 14, false},
	{"not ended: in data", "5\r\nhel", -1, false},
	{"not ended: in size", "5", -1, false},
	{"not ended: in trailer", "0\r\nX: y\r\n", -1, false},
	{"not ended: final CR", "0\r\n\r", -1, false},
	{"no digits", "\r\n", 0, true},
	{"extension without size", ";a\r\n", 0, true},
	{"no size after a chunk", "1\r\nx\r\n\r\n\r\n", 0, true},
	{"extension without size after a chunk", "1\r\nx\r\n;a\r\n\r\n", 0, true},
	{"not hex", "x\r\n", 0, true},
	{"non-hex after digits", "1x\r\nx\r\n0\r\n\r\n", 0, true},
	{"leading space", " 1\r\nx\r\n0\r\n\r\n", 0, true},
	{"no CRLF after data", "1\r\nab\r\n0\r\n\r\n", 0, true},
	{"bare LF after size", "1\nx\r\n0\r\n\r\n", 0, true},
	{"bare LF after data", "1\r\nx\n0\r\n\r\n", 0, true},
	{"LF without CR after data", "1\r\nax\n0\r\n\r\n", 0, true},
	{"bare LF at the end", "0\r\n\n", 0, true},
	{"bare LF in trailer", "0\r\nX: y\n\r\n", 0, true},
	{"bare CR in trailer", "0\r\nX: y\rZZ: w\r\n\r\n", 0, true},
	{"final CR without LF", "0\r\n\rX", 0, true},
	{"CR CR after size", "0\r\r\n\r\n", 0, true},
	{"CR without LF after size", "1\rXx\r\n0\r\n\r\n", 0, true},
	{"size line over 4096 bytes", "1;" + strings.Repeat("e", maxChunkLine-3) + "\r\nx\r\n0\r\n\r\n", 0, true},
	{"trailer line over 4096 bytes", "0\r\nX: " + strings.Repeat("v", maxChunkLine) + "\r\n\r\n", 0, true},
	{"trailer over 4096 bytes", "0\r\nX" + longTrailer, 0, true},
	{"trailer lines over 4096 bytes", "0\r\n" + trailerLines, 0, true},
	{"trailer line without colon", "0\r\nfoo\r\n\r\n", 0, true},
	{"folded trailer line", "0\r\nX: y\r\n z\r\n\r\n", 0, true},
	{"space before trailer colon", "0\r\nX : y\r\n\r\n", 0, true},
	{"17 digits of size", "00000000000000001\r\nx\r\n0\r\n\r\n", 0, true},
	{"whitespace before extension", "1 ;a\r\nx\r\n0\r\n\r\n", 0, true},
	{"text after whitespace", "1 x\r\nx\r\n0\r\n\r\n", 0, true},
	{"size overflow", "100000000000000000000\r\n", 0, true},
	{"size over 2^62", "ffffffffffffffff\r\nx", 0, true},
	{"size under 2^62", "3fffffffffffffff\r\nx", -1, false},
	{"control in extension", "1;a\x01\r\nx\r\n0\r\n\r\n", 0, true},
	{"DEL in extension", "1;a\x7f\r\nx\r\n0\r\n\r\n", 0, true},
	{"NUL in trailer", "0\r\nX: \x00\r\n\r\n", 0, true},
}

// TestChunkScanner checks where a chunked body ends, or that it is bad,
// the same whether it comes whole, byte by byte or in random pieces.
func TestChunkScanner(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range chunkCases {
		n, done, bad := scanChunks([]byte(tc.in), func(left int) int { return left })
		switch {
		case tc.bad && !bad:
			t.Errorf("%s: not bad (n %d, done %v)", tc.name, n, done)
		case tc.bad:
		case bad || done != (tc.end >= 0) || (done && n != tc.end) || (!done && n != len(tc.in)):
			t.Errorf("%s: n %d done %v bad %v; want end %d", tc.name, n, done, bad, tc.end)
		}
		for name, split := range map[string]func(int) int{
			"bytes":  func(int) int { return 1 },
			"random": func(left int) int { return 1 + r.IntN(min(left, 9)) },
		} {
			n1, done1, bad1 := scanChunks([]byte(tc.in), split)
			if n1 != n || done1 != done || bad1 != bad {
				t.Errorf("%s: %s: n %d done %v bad %v; whole: %d %v %v", tc.name, name, n1, done1, bad1, n, done, bad)
			}
		}
	}
}

// scanChunks feeds in to a new chunkScanner in the pieces split cuts,
// and returns how many bytes it took in all, and how it ended.
func scanChunks(in []byte, split func(left int) int) (n int, done, bad bool) {
	var s chunkScanner
	for len(in) > 0 {
		k := min(max(split(len(in)), 1), len(in))
		m, d, b := s.scan(in[:k])
		n += m
		if d || b || m != k {
			return n, d, b
		}
		in = in[k:]
	}
	return n, false, false
}

// FuzzParseRequestHead checks a head the fast path takes against
// net/http: it reads it as a request of the same method, target, Host,
// length and close, ending where h.size says, with every field passed
// on; and the framing guard does not refuse it. A head it waits on is
// not one net/http reads whole.
func FuzzParseRequestHead(f *testing.F) {
	for _, tc := range headTakes {
		f.Add([]byte(tc.head + tc.rest))
	}
	for _, tc := range headVerdicts {
		f.Add([]byte(tc.in))
	}
	for _, tc := range headDrops {
		if tc.request {
			f.Add([]byte(tc.in))
		}
	}
	f.Fuzz(checkRequestHead)
}

// checkRequestHead is FuzzParseRequestHead's check of one input.
func checkRequestHead(t *testing.T, data []byte) {
	var h reqHead
	v := parseRequestHead(data, &h)
	end := bytes.Index(data, crlf2)
	switch {
	case end >= 0 && v == headMore, end < 0 && v == headTake:
		t.Fatalf("verdict %d, CRLFCRLF at %d", v, end)
	case v == headMore:
		// Waiting for more must not leave a request net/http reads whole
		// (with bare LFs, say) unanswered.
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data))); err == nil {
			t.Fatalf("more bytes awaited, but net/http reads %s %q", req.Method, req.RequestURI)
		}
		return
	case v != headTake:
		return
	}
	if h.size != end+4 || h.dropped != len(droppedNames(h.fields)) {
		t.Fatalf("size %d (CRLFCRLF at %d), dropped %d of %q", h.size, end, h.dropped, droppedNames(h.fields))
	}
	src := bytes.NewReader(data)
	br := bufio.NewReader(src)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("taken, but net/http: %v", err)
	}
	if read := len(data) - src.Len() - br.Buffered(); read != h.size {
		t.Fatalf("net/http read a head of %d bytes, size %d", read, h.size)
	}
	var host string
	for _, f := range h.fields {
		if fieldIs(f.name, "Host") {
			host = string(f.value)
		}
	}
	if req.Method != string(h.method) || req.RequestURI != string(h.target) || req.Host != host ||
		req.ContentLength != h.length || req.Close != h.close {
		t.Fatalf("net/http: %q %q host %q length %d close %v; fast path: %q %q %q %d %v", req.Method, req.RequestURI,
			req.Host, req.ContentLength, req.Close, h.method, h.target, host, h.length, h.close)
	}
	for _, f := range h.fields { // net/http moves Host to req.Host
		if !f.drop && !fieldIs(f.name, "Host") && !slices.Contains(req.Header.Values(string(f.name)), string(f.value)) {
			t.Fatalf("field %q: %q passed on, net/http has %q", f.name, f.value, req.Header.Values(string(f.name)))
		}
	}
	g := &framing{}
	var ends []int64
	g.onEnd = func(off int64) { ends = append(ends, off) }
	g.scan(data[:h.size])
	if msg := g.refusal(); msg != "" {
		t.Fatalf("the framing guard refuses it: %s", msg)
	}
	if h.length == 0 && !slices.Equal(ends, []int64{int64(h.size)}) {
		t.Fatalf("the guard ends the request at %v, size %d", ends, h.size)
	}
}

// FuzzParseResponseHead checks an answer head parseResponseHead passes
// on against net/http, reading it as an answer to GET and to HEAD: the
// same status, head size, framing and close.
func FuzzParseResponseHead(f *testing.F) {
	for _, tc := range respTakes {
		f.Add([]byte(tc.in))
	}
	for _, tc := range respRefusals {
		f.Add([]byte(tc.in))
	}
	for _, tc := range headDrops {
		if !tc.request {
			f.Add([]byte(tc.in))
		}
	}
	f.Fuzz(checkResponseHead)
}

// checkResponseHead is FuzzParseResponseHead's check of one input.
func checkResponseHead(t *testing.T, data []byte) {
	var h respHead
	if !parseResponseHead(data, &h) {
		return
	}
	if end := bytes.Index(data, crlf2); h.size != end+4 || h.dropped != len(droppedNames(h.fields)) {
		t.Fatalf("size %d (CRLFCRLF at %d), dropped %d of %q", h.size, end, h.dropped, droppedNames(h.fields))
	}
	for _, method := range []string{"GET", "HEAD"} {
		src := bytes.NewReader(data)
		br := bufio.NewReader(src)
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("passed on, but net/http (%s): %v", method, err)
		}
		if read := len(data) - src.Len() - br.Buffered(); read != h.size {
			t.Fatalf("%s: net/http read a head of %d bytes, size %d", method, read, h.size)
		}
		if resp.StatusCode != h.status {
			t.Fatalf("%s: status %d, net/http %d", method, h.status, resp.StatusCode)
		}
		if h.chunked && !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
			t.Fatalf("%s: chunked, net/http: Transfer-Encoding %q", method, resp.TransferEncoding)
		}
		if !h.bodyless([]byte(method)) && h.length != resp.ContentLength {
			t.Fatalf("%s: length %d, net/http %d", method, h.length, resp.ContentLength)
		}
		if h.close && !resp.Close {
			t.Fatalf("%s: close, but not for net/http", method)
		}
		for _, f := range h.fields {
			if !f.drop && !fieldIs(f.name, "Transfer-Encoding") && !fieldIs(f.name, "Trailer") &&
				!slices.Contains(resp.Header.Values(string(f.name)), string(f.value)) {
				t.Fatalf("field %q: %q passed on, net/http has %q", f.name, f.value, resp.Header.Values(string(f.name)))
			}
		}
	}
}

// chunkedAnswerHead is the head of an answer with a chunked body.
const chunkedAnswerHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

// netHTTPChunked reads body as an answer's chunked body with net/http,
// whole, and returns how many of its bytes were left unread.
func netHTTPChunked(body []byte) (left int, err error) {
	src := bytes.NewReader(append([]byte(chunkedAnswerHead), body...))
	br := bufio.NewReader(src)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		return 0, err
	}
	if _, err := io.ReadAll(resp.Body); err != nil {
		return 0, err
	}
	return br.Buffered() + src.Len(), nil
}

// FuzzChunkScanner checks chunkScanner against net/http's chunked
// reader: a body the scanner ends, net/http reads whole, ending at the
// same byte; one that net/http reads whole, the scanner ends there too,
// or finds bad only by its stricter rules (strictOnly).
func FuzzChunkScanner(f *testing.F) {
	for _, tc := range chunkCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(checkChunkScanner)
}

// checkChunkScanner is FuzzChunkScanner's check of one input.
func checkChunkScanner(t *testing.T, in []byte) {
	n, done, bad := scanChunks(in, func(left int) int { return left })
	if n1, done1, bad1 := scanChunks(in, func(int) int { return 3 }); n1 != n || done1 != done || bad1 != bad {
		t.Fatalf("in 3-byte pieces: n %d done %v bad %v; whole: %d %v %v", n1, done1, bad1, n, done, bad)
	}
	left, err := netHTTPChunked(in)
	switch {
	case done && err != nil:
		t.Fatalf("the scanner ends the body at %d; net/http: %v", n, err)
	case done && left != len(in)-n:
		t.Fatalf("the scanner ends the body at %d; net/http at %d", n, len(in)-left)
	case err != nil || done:
	case bad && strictOnly(in[:len(in)-left]):
	case bad:
		t.Fatalf("net/http reads the body whole (%d bytes); the scanner finds it bad at %d", len(in)-left, n)
	default:
		t.Fatalf("net/http reads the body whole (%d bytes); the scanner waits for more", len(in)-left)
	}
}

// strictOnly reports whether a chunked body that net/http read whole
// has a line the scanner refuses by its stricter rules: a bare LF, a
// control byte (other than HTAB) in a size or trailer line, or a trailer
// line other than "token:value" (folded, or with whitespace before the
// colon).
func strictOnly(body []byte) bool {
	trailer := false
	for len(body) > 0 {
		i := bytes.IndexByte(body, '\n')
		if i < 0 {
			return false
		}
		line := body[:i+1]
		body = body[i+1:]
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			return true
		}
		for _, c := range line[:len(line)-2] {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return true
			}
		}
		if trailer {
			name, _, ok := bytes.Cut(line, []byte(":"))
			if len(line) > 2 && (!ok || !httpguts.ValidHeaderFieldName(string(name))) {
				return true
			}
			continue
		}
		digits, _, _ := bytes.Cut(bytes.TrimRight(line, " \t\r\n"), []byte(";"))
		size, err := strconv.ParseUint(string(digits), 16, 64)
		switch {
		case err != nil:
			return false
		case size == 0:
			trailer = true
		case size > uint64(len(body)) || uint64(len(body))-size < 2:
			return false
		default:
			body = body[size+2:]
		}
	}
	return false
}
