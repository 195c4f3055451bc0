package l7

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// The fast path (fast.go) reads HTTP/1.1 heads itself. It takes only
// the plainest shape of a request, checked strictly: anything else, well
// formed or not, goes to net/http's server, which answers or refuses it
// as before (the framing guard included). An endpoint's answer cannot be
// handed on like that, so an answer's head is read whole; one the fast
// path cannot pass on unchanged in meaning is a failed request (502).

// headField is one field of a head: its name, its value without the
// whitespace around it, and the whole line (CRLF included).
type headField struct {
	name, value, line []byte
	drop              bool // not passed on: the hop's own, or skiff's
}

// reqHead is a request head the fast path takes. Its slices point into
// the bytes it was parsed from.
type reqHead struct {
	method, target []byte
	// length is the body's Content-Length; 0 without one.
	length int64
	// close is the client's Connection: close.
	close bool
	// multicast is a field of skiff's that asks this site to copy the
	// request (multicastHeader).
	multicast bool
	fields    []headField
	// dropped counts the fields marked drop.
	dropped int
	// size is the head's length, its last CRLF included.
	size int
}

// respHead is an answer's head. Its slices point into the bytes it was
// parsed from.
type respHead struct {
	status int
	// http10 is an HTTP/1.0 answer: its connection is not kept.
	http10 bool
	// length is the Content-Length; -1 without one.
	length  int64
	chunked bool
	close   bool
	// undelivered is the value of UndeliveredHeader.
	undelivered []byte
	fields      []headField
	dropped     int
	size        int
}

// The verdicts of parseRequestHead.
const (
	headTake    = iota // the fast path serves it
	headMore           // no end of the head in the bytes yet
	headHandOff        // net/http decides
)

var crlf2 = []byte("\r\n\r\n")

// parseRequestHead reads the request head at the start of b into h. It
// takes: a token method other than CONNECT, an origin-form target
// (RFC 9112, 3.2.1) of visible ASCII whose path's %-escapes are valid,
// HTTP/1.1, CRLF line ends, fields with a token name, the colon right
// after it and a value of field-content, exactly one valid Host, at most
// one Content-Length of digits; and no Transfer-Encoding, Upgrade,
// Expect, TE, or Connection naming upgrade. Anything else is headHandOff:
// net/http answers it (400, 431, 417) or serves it (chunked bodies,
// WebSocket, h2c).
func parseRequestHead(b []byte, h *reqHead) int {
	end := bytes.Index(b, crlf2)
	if end < 0 {
		if bareLF(b) || !linesSoFar(b) {
			// net/http reads such lines, or answers them now (400);
			// it decides.
			return headHandOff
		}
		return headMore
	}
	*h = reqHead{fields: h.fields[:0]}
	h.size = end + 4
	head := b[:end+2] // every line with its CRLF
	line, rest, ok := cutLine(head)
	if !ok || !h.requestLine(line) {
		return headHandOff
	}
	hosts, lengths := 0, 0
	for len(rest) > 0 {
		var f headField
		if line, rest, ok = cutLine(rest); !ok || !parseField(line, &f) {
			return headHandOff
		}
		switch {
		case fieldIs(f.name, "Host"):
			hosts++
			if !httpguts.ValidHostHeader(string(f.value)) {
				return headHandOff
			}
		case fieldIs(f.name, "Content-Length"):
			lengths++
			n, ok := parseLength(f.value)
			if !ok {
				return headHandOff
			}
			h.length = n
		case fieldIs(f.name, "Transfer-Encoding"), fieldIs(f.name, "Upgrade"), fieldIs(f.name, "Expect"), fieldIs(f.name, "Te"):
			return headHandOff
		case fieldIs(f.name, "Connection"):
			if hasToken(f.value, "upgrade") {
				return headHandOff
			}
			h.close = h.close || hasToken(f.value, "close")
		case fieldIs(f.name, multicastHeader):
			h.multicast = true
		}
		h.fields = append(h.fields, f)
	}
	if hosts != 1 || lengths > 1 {
		return headHandOff
	}
	h.dropped = markDropped(h.fields, true)
	return headTake
}

// linesSoFar reports whether the complete lines of a head not yet ended
// are ones the fast path takes: a client that sent a bad line is told
// so without waiting for the rest.
func linesSoFar(b []byte) bool {
	var h reqHead
	for first := true; ; first = false {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return true
		}
		var f headField
		if first && !h.requestLine(b[:i]) || !first && !parseField(b[:i], &f) {
			return false
		}
		b = b[i+2:]
	}
}

// bareLF reports an LF that no CR precedes.
func bareLF(b []byte) bool {
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			return true
		}
	}
	return false
}

// requestLine parses "METHOD SP origin-form SP HTTP/1.1".
func (h *reqHead) requestLine(line []byte) bool {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !isToken(line[:sp]) {
		return false
	}
	h.method = line[:sp]
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 || string(rest[sp+1:]) != "HTTP/1.1" || string(h.method) == "CONNECT" {
		return false
	}
	h.target = rest[:sp]
	return validTarget(h.target)
}

// validTarget reports an origin-form target of visible ASCII with only
// valid %-escapes and no ';' in its query: net/http's
// url.ParseRequestURI refuses a bad escape in the path, and its
// ReverseProxy rewrites a query that url.ParseQuery refuses.
func validTarget(t []byte) bool {
	if len(t) == 0 || t[0] != '/' {
		return false
	}
	inQuery := false
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c <= ' ' || c >= 0x7f || c == '#':
			return false
		case c == '?':
			inQuery = true
		case c == ';' && inQuery:
			return false
		case c == '%':
			if i+2 >= len(t) || hexValue[t[i+1]] < 0 || hexValue[t[i+2]] < 0 {
				return false
			}
		}
	}
	return true
}

// parseResponseHead reads the answer head at the start of b into h:
// "HTTP/1.1" or "HTTP/1.0", a three-digit status, a reason of text,
// CRLF line ends, fields as parseRequestHead takes them. Content-Length
// must be digits, repeated only with the same text; Transfer-Encoding,
// if any, exactly "chunked", once, without Content-Length, in HTTP/1.1.
// Anything else is false: the answer cannot be passed on unambiguously.
// headMore is not told apart: the caller reads the head to its end
// first.
func parseResponseHead(b []byte, h *respHead) bool {
	end := bytes.Index(b, crlf2)
	if end < 0 {
		return false
	}
	*h = respHead{fields: h.fields[:0], length: -1}
	h.size = end + 4
	line, rest, ok := cutLine(b[:end+2])
	if !ok || !h.statusLine(line) {
		return false
	}
	encodings := 0
	badTrailer := false
	var length []byte // the first Content-Length's value
	for len(rest) > 0 {
		var f headField
		if line, rest, ok = cutLine(rest); !ok || !parseField(line, &f) {
			return false
		}
		switch {
		case fieldIs(f.name, "Content-Length"):
			n, ok := parseLength(f.value)
			if !ok || (length != nil && !bytes.Equal(f.value, length)) {
				return false
			}
			h.length, length = n, f.value
		case fieldIs(f.name, "Transfer-Encoding"):
			encodings++
			if !fieldIs(f.value, "chunked") {
				return false
			}
			h.chunked = true
		case fieldIs(f.name, "Connection"):
			h.close = h.close || hasToken(f.value, "close")
		case fieldIs(f.name, UndeliveredHeader) && h.undelivered == nil:
			h.undelivered = f.value // the first, as Header.Get reads it
		case fieldIs(f.name, "Trailer"):
			// Fields that frame the message cannot come after it.
			badTrailer = badTrailer || hasToken(f.value, "Content-Length") ||
				hasToken(f.value, "Transfer-Encoding") || hasToken(f.value, "Trailer")
		}
		h.fields = append(h.fields, f)
	}
	if encodings > 1 || (h.chunked && (h.length >= 0 || h.http10 || badTrailer)) {
		return false
	}
	h.dropped = markDropped(h.fields, false)
	return true
}

// statusLine parses "HTTP/1.x SP 3DIGIT [SP reason]".
func (h *respHead) statusLine(line []byte) bool {
	if len(line) < 12 || line[8] != ' ' {
		return false
	}
	switch string(line[:8]) {
	case "HTTP/1.1":
	case "HTTP/1.0":
		h.http10 = true
	default:
		return false
	}
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return false
	}
	h.status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	reason := line[12:]
	if len(reason) == 0 {
		return true
	}
	return reason[0] == ' ' && httpguts.ValidHeaderFieldValue(string(reason[1:]))
}

// bodyless reports an answer that has no body whatever its header says
// (RFC 9112, 6.3): to HEAD, informational, 204, 304.
func (h *respHead) bodyless(method []byte) bool {
	return string(method) == "HEAD" || h.status < 200 || h.status == 204 || h.status == 304
}

// cutLine cuts the first CRLF-ended line off b; false if a line has a
// bare CR or LF, which the fast path does not take.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// parseField parses "name:OWS value OWS" with a token name and a value
// of field-content; a folded line (leading whitespace) is false.
func parseField(line []byte, f *headField) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 || !isToken(line[:colon]) {
		return false
	}
	v := trimOWS(line[colon+1:])
	if !httpguts.ValidHeaderFieldValue(string(v)) {
		return false
	}
	f.name, f.value = line[:colon], v
	f.line = line[:len(line)+2] // with its CRLF, which follows in the head
	return true
}

// trimOWS cuts the spaces and tabs around b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// markDropped marks the fields a proxy does not pass on: the hop's own
// (hopHeaders and those Connection names), the client's X-Forwarded-*
// and Forwarded (forwardedHeaders, as net/http's ReverseProxy removes
// them), and skiff's own (skiffHeaders); in a request, the client's.
// An answer keeps Transfer-Encoding and Trailer: its body passes
// unchanged, chunks and trailer with it. It returns how many it marked.
func markDropped(fields []headField, request bool) int {
	n := 0
	connection := false
	for _, f := range fields {
		connection = connection || fieldIs(f.name, "Connection")
	}
	for i := range fields {
		f := &fields[i]
		name := f.name
		switch {
		case len(name) >= len(droppedLengths) || !droppedLengths[len(name)]:
			// No list has a name this long: only Connection may name it.
			f.drop = connection && named(fields, name)
		case !request && (fieldIs(name, "Transfer-Encoding") || fieldIs(name, "Trailer")):
		case fieldIs(name, "Content-Length"), fieldIs(name, "Host"):
			// Framing and the target's host pass whatever Connection
			// names: without them the next hop would read the message
			// otherwise.
		case oneOf(name, hopHeaders), oneOf(name, skiffHeaders), request && oneOf(name, forwardedHeaders):
			f.drop = true
		default:
			f.drop = connection && named(fields, name)
		}
		if f.drop {
			n++
		}
	}
	return n
}

// named reports whether a Connection field names name.
func named(fields []headField, name []byte) bool {
	for _, c := range fields {
		if fieldIs(c.name, "Connection") && hasToken(c.value, string(name)) {
			return true
		}
	}
	return false
}

// droppedLengths are the lengths of the names markDropped looks up (and
// of Content-Length and Host, which it keeps): a field of another length
// is none of them.
var droppedLengths = func() (l [32]bool) {
	for _, list := range [][]string{hopHeaders, skiffHeaders, forwardedHeaders, {"Content-Length", "Host"}} {
		for _, k := range list {
			l[len(k)] = true
		}
	}
	return l
}()

func oneOf(name []byte, list []string) bool {
	for _, k := range list {
		if fieldIs(name, k) {
			return true
		}
	}
	return false
}

// fieldIs compares a field name (or token) to k, ignoring ASCII case.
func fieldIs(b []byte, k string) bool {
	if len(b) != len(k) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != lower(k[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken reports whether the comma-separated list v has token t,
// ignoring case.
func hasToken(v []byte, t string) bool {
	for len(v) > 0 {
		var item []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			item, v = v[:i], v[i+1:]
		} else {
			item, v = v, nil
		}
		if fieldIs(trimOWS(item), t) {
			return true
		}
	}
	return false
}

// parseLength parses a Content-Length: 1 to 18 digits.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}
