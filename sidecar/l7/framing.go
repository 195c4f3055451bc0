package l7

import (
	"bytes"
	"net/http"
	"sync/atomic"
)

// The framing guard follows the HTTP/1.1 request framing (RFC 9112,
// section 6) of a client connection in its Read path, to find what
// net/http does not tell the handler: a request whose length its
// header states ambiguously (a request smuggling attempt, RFC 9112,
// section 11.2), such as one that names both Content-Length and
// Transfer-Encoding, whose Content-Length net/http drops. It only looks
// at the bytes net/http reads, as they pass, and never changes them. It
// records the index of the first ambiguous request, counted as the
// handler counts the requests it is handed; net/http reads ahead, so the
// guard may be past a request before its handler runs.
//
// It follows net/http's reading wherever net/http goes on with the
// connection: the header block as net/http splits it (a bare LF ends a
// line, as textproto's), the body by Content-Length without looking at
// its bytes, a chunked body and its trailer at least as strictly as
// net/http's chunked reader. That last matters: the engine serves full
// duplex, and net/http then reads the next request from the middle of a
// chunked body it found malformed. What net/http refuses in a header it
// answers and closes the connection on, so the guard may take more there.
//
// It goes on past a request that offers to upgrade the connection
// (Upgrade, Connection: upgrade): the engine may answer it in HTTP/1.1
// and read on (an h2c offer, which it drops; a WebSocket no endpoint
// took). Once a handler takes the connection over, nothing the guard
// records is asked for, and it soon stops on bytes that are not HTTP/1
// (a method's first byte that is not a token byte, say). Only HTTP/2's
// preface at the start turns it off unasked.

// h2Preface is HTTP/2's client preface (RFC 9113, section 3.4): a
// connection that begins with it speaks h2c with prior knowledge, whose
// frames carry their own lengths.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Bounds net/http's HTTP/1 server reads with; the guard refuses beyond
// them as net/http does.
const (
	// maxContentLength is the largest Content-Length net/http takes.
	maxContentLength = 1<<63 - 1
)

// The guard's states. The zero one is a connection's start.
const (
	stPreface uint8 = iota // the first bytes, matched to h2Preface
	stStart                // before a request (CR and LF skipped)
	stMethod               // the request line's method
	stTarget               // its target
	stVersion              // its version, to the LF
	stLine                 // the start of a header line
	stLineCR               // after a CR that starts a header line
	stName                 // a field name
	stSkip                 // a value framing ignores, to its LF
	stCL                   // a Content-Length value
	stTE                   // a Transfer-Encoding value
	stBody                 // a Content-Length body
	stChunked              // a chunked body and its trailer (chunkScanner)
	stOff                  // not followed: h2c, or past an ambiguous request
)

// Why a request is ambiguous; badReasons says it.
const (
	badNone    = iota
	badBoth    // Content-Length and Transfer-Encoding
	badCLs     // Content-Length fields that differ
	badCL      // a Content-Length that is not a number
	badTEs     // Transfer-Encoding more than once
	badTE      // a Transfer-Encoding other than chunked
	badTE10    // Transfer-Encoding in HTTP/1.0
	badSpace   // whitespace in a field name
	badFold    // a folded Content-Length or Transfer-Encoding line
	badHeader  // a malformed request line or field line
	badChunk   // malformed chunked framing
	badTrailer // a malformed trailer section
)

// badReasons completes "request ..." for each bad reason.
var badReasons = [...]string{
	badNone:    "is well framed",
	badBoth:    "names both Content-Length and Transfer-Encoding",
	badCLs:     "names Content-Length more than once, with different values",
	badCL:      "names a Content-Length that is not a number",
	badTEs:     "names Transfer-Encoding more than once",
	badTE:      "names a Transfer-Encoding other than chunked",
	badTE10:    "names Transfer-Encoding in HTTP/1.0",
	badSpace:   "has whitespace in a header field name",
	badFold:    "folds the line of its Content-Length or Transfer-Encoding",
	badHeader:  "has a malformed request line or header field",
	badChunk:   "has malformed chunked framing",
	badTrailer: "has a malformed trailer section",
}

// Candidates of a field name, as it is read.
const (
	candCL = 1 << iota
	candTE
)

const (
	nameCL = "content-length"
	nameTE = "transfer-encoding"
)

// framing is a connection's framing guard. Its zero value is ready for a
// connection's first byte. One goroutine at a time reads the connection
// (net/http makes sure of it), and only scan changes the reader's side;
// the handler's side, served, is only the handler's, whose HTTP/1
// requests come one at a time.
type framing struct {
	// bad is (index+1)<<8 | reason of the first ambiguous request; 0
	// while there is none.
	bad atomic.Uint64
	// h2 is set once the connection began with HTTP/2's preface.
	h2 atomic.Bool
	// served counts the requests the handler was handed (refusal).
	served int

	st   uint8  // state
	pre  uint8  // preface bytes matched (stPreface)
	n    int    // requests whose header ended and that net/http hands the handler
	off  int64  // bytes read before this Read
	left uint64 // bytes left of a Content-Length body or of chunk data
	r    request
	// onEnd, if not nil, is told the offset where each request ended
	// (a test's hook).
	onEnd func(off int64)
}

// request is the guard's state of the request being read.
type request struct {
	index     int // its index among the handler's requests
	method    [8]byte
	methodLen int
	target    bool // its target has a byte
	star      bool // its target is "*"
	vers      [9]byte
	versLen   int
	http10    bool // HTTP/1.0: Transfer-Encoding means nothing to net/http
	counted   bool // net/http hands it to the handler (not OPTIONS *)

	first   bool  // the next line is the first field line
	framing bool  // the last field line was Content-Length or Transfer-Encoding
	cand    uint8 // candCL | candTE still possible for the field name
	nameLen int
	sub     uint8 // step within a value
	pos     int   // bytes of "chunked" matched
	v       uint64
	digits  int64
	hasCL   bool
	cl      uint64 // the Content-Length
	clLen   int64  // its digits (leading zeros too, as net/http compares strings)
	te      bool

	chunks chunkScanner // its chunked body
}

// scan follows p, the bytes a Read of the connection returned.
func (g *framing) scan(p []byte) {
	if g.st == stOff || len(p) == 0 {
		return
	}
	base := g.off
	g.off += int64(len(p))
	if g.st == stPreface {
		var j int
		if p, j = g.preface(p); len(p) == 0 {
			return
		}
		base += int64(j)
	}
	g.run(p, base)
}

// preface matches the connection's first bytes to HTTP/2's preface. All
// of it turns the guard off: net/http serves h2c. A mismatch after the
// first j bytes of p replays the preface's bytes matched so far as
// HTTP/1; the rest of p is returned.
func (g *framing) preface(p []byte) (rest []byte, j int) {
	m := int(g.pre)
	for j < len(p) && m+j < len(h2Preface) && p[j] == h2Preface[m+j] {
		j++
	}
	switch {
	case m+j == len(h2Preface):
		g.h2.Store(true)
		g.st = stOff
		return nil, j
	case j == len(p):
		g.pre = uint8(m + j)
		return nil, j
	}
	g.st = stStart
	g.run(h2Preface[:m+j], 0)
	return p[j:], j
}

// run follows p, whose first byte is at offset base of the connection.
func (g *framing) run(p []byte, base int64) {
	for i := 0; i < len(p); {
		switch g.st {
		case stOff:
			return
		case stBody:
			// Skipped by count: no work per byte.
			if k := uint64(len(p) - i); g.left > k {
				g.left -= k
				return
			}
			i += int(g.left)
			g.left = 0
			g.end(base + int64(i))
		case stChunked:
			c := &g.r.chunks
			n, done, bad := c.scan(p[i:])
			i += n
			switch {
			case bad && c.trailer:
				g.fail(badTrailer)
			case bad:
				g.fail(badChunk)
			case done:
				g.end(base + int64(i))
			}
		case stSkip:
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j + 1
			g.st = stLine
		case stName, stTarget:
			// The runs of plain bytes, without a step each.
			if j := g.plain(p[i:]); j > 0 {
				i += j
				continue
			}
			if g.step(p[i]) {
				g.end(base + int64(i) + 1)
			}
			i++
		default:
			if g.step(p[i]) {
				g.end(base + int64(i) + 1)
			}
			i++
		}
	}
}

// step follows one byte of a request's lines; true if the request ended
// with it.
func (g *framing) step(c byte) bool {
	switch g.st {
	case stStart, stMethod, stTarget, stVersion:
		g.requestLine(c)
	case stLine, stLineCR:
		return g.lineStart(c)
	case stName:
		g.fieldName(c)
	case stCL:
		g.contentLength(c)
	case stTE:
		g.transferEncoding(c)
	}
	return false
}

// plain follows the bytes at the start of p that only go on a field
// name (token bytes) or a target (any but SP and LF), and returns how
// many; step follows the byte after them.
func (g *framing) plain(p []byte) int {
	r := &g.r
	i := 0
	if g.st == stTarget {
		for i < len(p) && p[i] != ' ' && p[i] != '\n' {
			i++
		}
		if i > 0 {
			r.star = !r.target && i == 1 && p[0] == '*'
			r.target = true
		}
		return i
	}
	for ; i < len(p) && tokenByte[p[i]]; i++ {
		if r.cand == 0 {
			continue
		}
		l, k := p[i]|0x20, r.nameLen+i // lower case, for a letter
		if k >= len(nameCL) || nameCL[k] != l {
			r.cand &^= candCL
		}
		if k >= len(nameTE) || nameTE[k] != l {
			r.cand &^= candTE
		}
	}
	r.nameLen += i
	return i
}

// end records where a request ended, and awaits the next.
func (g *framing) end(off int64) {
	if g.onEnd != nil {
		g.onEnd(off)
	}
	g.st = stStart
}

// fail records the request being read as ambiguous, and turns the guard
// off: nothing after it can be trusted.
func (g *framing) fail(reason uint8) {
	g.bad.Store(uint64(g.r.index+1)<<8 | uint64(reason))
	g.st = stOff
}

// requestLine follows the request line as net/http splits it: method,
// target and version at the first two spaces, to the LF.
func (g *framing) requestLine(c byte) {
	r := &g.r
	switch g.st {
	case stStart:
		if c == '\r' || c == '\n' {
			return // net/http skips up to 4 after a POST, and refuses more
		}
		g.r = request{index: g.n}
		g.st = stMethod
		g.requestLine(c)
	case stMethod:
		switch {
		case c == ' ' && r.methodLen > 0:
			g.st = stTarget
		case !tokenByte[c]:
			g.fail(badHeader)
		default:
			if r.methodLen < len(r.method) {
				r.method[r.methodLen] = c
			}
			r.methodLen++
		}
	case stTarget:
		switch c {
		case ' ':
			g.st = stVersion
		case '\n':
			g.fail(badHeader)
		default:
			r.star = !r.target && c == '*'
			r.target = true
		}
	default:
		if c == '\n' {
			g.version()
			return
		}
		if r.versLen < len(r.vers) {
			r.vers[r.versLen] = c
		}
		r.versLen++
	}
}

// version ends the request line. net/http serves HTTP/1.x, and HTTP/2.0
// only as "PRI *", which it hands the handler too; it answers OPTIONS *
// itself.
func (g *framing) version() {
	r := &g.r
	n := r.versLen
	if n > 0 && n <= len(r.vers) && r.vers[n-1] == '\r' {
		n--
	}
	v := r.vers[:8]
	if n != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		g.fail(badHeader)
		return
	}
	if v[5] != '1' && (v[5] != '2' || v[7] != '0' || !r.star || !r.is("PRI")) {
		g.fail(badHeader)
		return
	}
	r.http10 = v[5] == '1' && v[7] == '0'
	r.counted = !r.star || !r.is("OPTIONS")
	r.first = true
	g.st = stLine
}

// is reports whether the request's method is m (at most 8 bytes).
func (r *request) is(m string) bool {
	return r.methodLen == len(m) && string(r.method[:len(m)]) == m
}

// lineStart follows the first byte of a header line: an empty line ends
// the header; SP or HTAB continues the field before (obs-fold); anything
// else starts a field name.
func (g *framing) lineStart(c byte) bool {
	r := &g.r
	if g.st == stLineCR {
		if c != '\n' {
			g.fail(badHeader)
			return false
		}
		return g.headerEnd()
	}
	switch c {
	case '\n':
		return g.headerEnd()
	case '\r':
		g.st = stLineCR
	case ' ', '\t':
		switch {
		case r.first:
			g.fail(badHeader) // net/http refuses it
		case r.framing:
			g.fail(badFold) // RFC 9112, section 5.2, lets a server refuse it
		default:
			g.st = stSkip
		}
	default:
		r.first, r.framing = false, false
		r.cand, r.nameLen = candCL|candTE, 0
		g.st = stName
		g.fieldName(c)
	}
	return false
}

// fieldName follows a field name to its colon, matching it to the names
// framing depends on (case-insensitively, as net/http canonicalizes).
func (g *framing) fieldName(c byte) {
	r := &g.r
	switch {
	case c == ':' && r.nameLen > 0:
		g.fieldValue()
	case c == ' ' || c == '\t':
		g.fail(badSpace)
	case !tokenByte[c]:
		g.fail(badHeader)
	default:
		l := c | 0x20 // lower case, for a letter
		if r.nameLen >= len(nameCL) || nameCL[r.nameLen] != l {
			r.cand &^= candCL
		}
		if r.nameLen >= len(nameTE) || nameTE[r.nameLen] != l {
			r.cand &^= candTE
		}
		r.nameLen++
	}
}

// fieldValue starts a field's value, after its colon: Content-Length's
// and Transfer-Encoding's are followed byte by byte, any other's skipped
// to its LF.
func (g *framing) fieldValue() {
	r := &g.r
	r.sub = 0
	switch {
	case r.cand&candCL != 0 && r.nameLen == len(nameCL):
		r.v, r.digits = 0, 0
		g.st = stCL
	case r.cand&candTE != 0 && r.nameLen == len(nameTE):
		switch {
		case r.http10:
			g.fail(badTE10) // RFC 9112, section 6.1: faulty framing
		case r.te:
			g.fail(badTEs)
		case r.hasCL:
			g.fail(badBoth)
		default:
			r.te, r.pos = true, 0
			g.st = stTE
		}
	default:
		g.st = stSkip
	}
}

// Steps of a Content-Length or Transfer-Encoding value.
const (
	valueLead  = iota // whitespace before it
	valueIn           // in it
	valueTrail        // whitespace after it
	valueCR           // the CR before the LF
)

// contentLength follows a Content-Length value: whitespace, decimal
// digits (at most 2^63-1, as net/http takes), whitespace.
func (g *framing) contentLength(c byte) {
	r := &g.r
	switch {
	case c == '\n':
		g.contentLengthEnd()
	case r.sub == valueCR:
		g.fail(badCL)
	case c == '\r':
		r.sub = valueCR
	case c == ' ' || c == '\t':
		if r.sub == valueIn {
			r.sub = valueTrail
		}
	case isDigit(c) && r.sub != valueTrail:
		d := uint64(c - '0')
		if r.v > (maxContentLength-d)/10 {
			g.fail(badCL)
			return
		}
		r.v = r.v*10 + d
		r.digits++
		r.sub = valueIn
	default:
		g.fail(badCL)
	}
}

// contentLengthEnd ends a Content-Length field. net/http takes one given
// more than once with the same value (the same string).
func (g *framing) contentLengthEnd() {
	r := &g.r
	switch {
	case r.digits == 0:
		g.fail(badCL)
	case r.hasCL && (r.v != r.cl || r.digits != r.clLen):
		g.fail(badCLs)
	case r.te:
		g.fail(badBoth)
	default:
		r.hasCL, r.cl, r.clLen = true, r.v, r.digits
		r.framing = true
		g.st = stLine
	}
}

// transferEncoding follows a Transfer-Encoding value, which must be
// chunked (case-insensitively) and nothing else, as net/http takes.
func (g *framing) transferEncoding(c byte) {
	r := &g.r
	const chunked = "chunked"
	switch {
	case c == '\n':
		if r.pos != len(chunked) {
			g.fail(badTE)
			return
		}
		r.framing = true
		g.st = stLine
	case r.sub == valueCR:
		g.fail(badTE)
	case c == '\r':
		r.sub = valueCR
	case c == ' ' || c == '\t':
		if r.sub == valueIn {
			r.sub = valueTrail
		}
	case r.sub != valueTrail && r.pos < len(chunked) && c|0x20 == chunked[r.pos]:
		r.pos++
		r.sub = valueIn
	default:
		g.fail(badTE)
	}
}

// headerEnd ends a request's header: its body is chunked, Content-Length
// bytes, or none (RFC 9112, section 6.3). True if the request ended.
func (g *framing) headerEnd() bool {
	r := &g.r
	if r.counted {
		g.n++
	}
	switch {
	case r.te:
		r.chunks = chunkScanner{}
		g.st = stChunked
	case r.hasCL && r.cl > 0:
		g.left = r.cl
		g.st = stBody
	default:
		return true
	}
	return false
}

// refusal is the handler's side: it is called for every request of the
// connection, in order, and returns why the request must be refused, or
// "" to serve it. HTTP/2's requests, which come at once, are not
// counted: their framing is HTTP/2's.
func (g *framing) refusal() string {
	if g == nil || g.h2.Load() {
		return ""
	}
	i := g.served
	g.served++
	b := g.bad.Load()
	if b == 0 {
		return ""
	}
	bad, reason := int(b>>8)-1, badReasons[b&0xff]
	switch {
	case i < bad:
		return ""
	case i == bad:
		return "skiff: request " + reason + "; refused as a request smuggling attempt"
	}
	return "skiff: an earlier request on this connection " + reason + ", so where this one begins cannot be trusted; refused as a request smuggling attempt"
}

// refuseAmbiguous answers 400 with msg (refusal's) to a request whose
// framing cannot be trusted, and closes its connection after the answer:
// what follows on it cannot be read as requests. It is counted as
// skiff's own answer (site none), and never sent on.
func (e *Engine) refuseAmbiguous(w http.ResponseWriter, req *http.Request, p *plan, msg string) {
	e.log.Info("request refused", "address", p.address, "method", req.Method, "reason", "framing", "error", msg)
	p.site = ""
	e.m.observe(p, http.StatusBadRequest)
	w.Header().Set("Connection", "close")
	http.Error(w, msg, http.StatusBadRequest)
}

// tokenByte is RFC 9110's tchar: the bytes of a method or a field name.
var tokenByte = byteSet("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

// valueByte are the bytes net/http takes in a field value: VCHAR, SP,
// HTAB and obs-text.
var valueByte = func() (s [256]bool) {
	for c := range s {
		s[c] = c == '\t' || c >= ' ' && c != 0x7f
	}
	return s
}()

// hexValue is the value of a hex digit; -1 for another byte.
var hexValue = func() (v [256]int8) {
	for c := range v {
		v[c] = -1
	}
	for i, c := range []byte("0123456789abcdef") {
		v[c] = int8(i)
		if c >= 'a' {
			v[c-'a'+'A'] = int8(i)
		}
	}
	return v
}()

// byteSet is the set of the bytes of s.
func byteSet(s string) (set [256]bool) {
	for i := 0; i < len(s); i++ {
		set[s[i]] = true
	}
	return set
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
