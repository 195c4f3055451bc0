package l7

// chunkScanner follows a chunked body (RFC 9112, 7.1) as it passes, to
// find its end; it never changes a byte. It reads as net/http's chunked
// reader does, with its bounds, or more strictly: 1 to 16 hex digits of
// size, whitespace after them only before the CRLF, extensions of text
// after ';', a trailer of field lines (a token, a colon, text) within
// 4 KiB, CRLF line ends, and net/http's bound on the bytes of size lines
// against the data they carry. The framing guard follows a request's
// chunked body with it, the fast path an answer's.
type chunkScanner struct {
	state uint8
	size  int64 // bytes of chunk data left; the size being read
	line  int   // bytes of the current size line, or of the trailer
	// excess is net/http's count of size-line bytes beyond what the
	// data they announce allows (maxChunkExcess).
	excess int64
	// trailer is set once the last chunk's size line ended.
	trailer bool
	// data counts the chunk data bytes passed.
	data int64
}

const (
	ckSize        uint8 = iota // hex digits of a chunk size
	ckSizeWS                   // whitespace after the size, up to CR
	ckExt                      // after the size: extensions up to CR
	ckSizeLF                   // the LF after a size line's CR
	ckData                     // size bytes of data
	ckDataCR                   // the CR after data
	ckDataLF                   // the LF after data
	ckTrailer                  // a trailer line's first byte, or the final CR
	ckTrailerName              // a trailer field's name, up to its colon
	ckTrailerLn                // a trailer field's value, up to CR
	ckTrailerLF                // the LF after a trailer line's CR
	ckEndLF                    // the final LF
	ckDone
	ckBad
)

// The bounds of net/http's chunked reader, which the scanner keeps.
const (
	// maxChunkDigits bounds a chunk size's hex digits.
	maxChunkDigits = 16
	// maxChunkLine bounds a chunk-size line, CRLF included: net/http
	// reads it whole into its 4 KiB buffer.
	maxChunkLine = 4096
	// maxTrailer bounds the trailer section, its last CRLF included:
	// net/http looks that far ahead for its end.
	maxTrailer = 4096
	// maxChunkExcess bounds the bytes of chunk-size lines beyond 16 per
	// chunk and twice its data, as net/http's chunked reader does.
	maxChunkExcess = 16 << 10
)

// scan follows p. It returns how many bytes of p belong to the body (all
// of them until its end) and whether the body ended there; bad reports
// bytes that are not a chunked body.
func (s *chunkScanner) scan(p []byte) (n int, done, bad bool) {
	for n < len(p) {
		if s.state == ckData {
			take := int64(len(p) - n)
			if take > s.size {
				take = s.size
			}
			n += int(take)
			s.data += take
			if s.size -= take; s.size == 0 {
				s.state = ckDataCR
			}
			continue
		}
		s.step(p[n])
		n++
		switch s.state {
		case ckDone:
			return n, true, false
		case ckBad:
			return n, false, true
		}
	}
	return n, false, false
}

// step takes one byte outside chunk data.
func (s *chunkScanner) step(c byte) {
	s.line++
	if s.line > maxChunkLine && !s.trailer || s.line > maxTrailer {
		s.state = ckBad
		return
	}
	switch s.state {
	case ckSize:
		if v := hexValue[c]; v >= 0 {
			if s.line > maxChunkDigits || s.size > (1<<62)/16 {
				s.state = ckBad
				return
			}
			s.size = s.size*16 + int64(v)
			return
		}
		switch {
		case s.line == 1:
			s.state = ckBad
		case c == '\r':
			s.state = ckSizeLF
		case c == ';':
			s.state = ckExt
		case c == ' ' || c == '\t':
			s.state = ckSizeWS
		default:
			s.state = ckBad
		}
	case ckSizeWS:
		// Trailing whitespace, as net/http's reader takes: not before
		// an extension.
		switch {
		case c == '\r':
			s.state = ckSizeLF
		case c != ' ' && c != '\t':
			s.state = ckBad
		}
	case ckExt:
		s.ext(c)
	case ckSizeLF:
		s.expect(c, '\n')
		if s.state != ckBad {
			s.sizeLineEnd()
		}
	case ckDataCR:
		s.expect(c, '\r')
		if s.state != ckBad {
			s.state = ckDataLF
		}
	case ckDataLF:
		s.expect(c, '\n')
		if s.state != ckBad {
			s.state, s.line, s.size = ckSize, 0, 0
		}
	case ckTrailer:
		switch {
		case c == '\r':
			s.state = ckEndLF
		case tokenByte[c]:
			s.state = ckTrailerName
		default:
			s.state = ckBad // a folded line, or not a field
		}
	case ckTrailerName:
		switch {
		case c == ':':
			s.state = ckTrailerLn
		case !tokenByte[c]:
			s.state = ckBad
		}
	case ckTrailerLn:
		if c == '\r' {
			s.state = ckTrailerLF
			return
		}
		s.text(c)
	case ckTrailerLF:
		s.expect(c, '\n')
		if s.state != ckBad {
			s.state = ckTrailer // s.line goes on: the trailer's bound is for all of it
		}
	case ckEndLF:
		s.expect(c, '\n')
		if s.state != ckBad {
			s.state = ckDone
		}
	}
}

// sizeLineEnd ends a chunk-size line: chunk data follows, or after the
// last chunk the trailer. net/http bounds the bytes of size lines beyond
// 16 per chunk and twice its data, in its words.
func (s *chunkScanner) sizeLineEnd() {
	s.excess += int64(s.line) - 16 - 2*s.size
	s.excess = max(s.excess, 0)
	s.line = 0
	switch {
	case s.excess > maxChunkExcess:
		s.state = ckBad
	case s.size == 0:
		s.state, s.trailer = ckTrailer, true
	default:
		s.state = ckData
	}
}

// ext takes a byte of a size line after the digits: extensions
// (";name=value", text), up to CR.
func (s *chunkScanner) ext(c byte) {
	if c == '\r' {
		s.state = ckSizeLF
		return
	}
	s.text(c)
}

// text refuses control bytes other than HTAB in a line.
func (s *chunkScanner) text(c byte) {
	if !valueByte[c] {
		s.state = ckBad
	}
}

func (s *chunkScanner) expect(c, want byte) {
	if c != want {
		s.state = ckBad
	}
}
