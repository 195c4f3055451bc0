package router

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPBadInput: what a client sends wrong gets a clear answer, and
// the listener keeps serving the next client.
func TestHTTPBadInput(t *testing.T) {
	n := newHTTPNet(t, "balanced", nil)
	addr := strings.TrimPrefix(n.url, "http://")
	raw := func(req string) (string, error) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		return resp.Status, nil
	}
	for _, tc := range []struct {
		name, req, want string
	}{
		// At least 24 bytes: net/http reads that many to tell the HTTP/2
		// preface from a request line before it parses either.
		{"malformed request line", "THIS IS NOT A REQUEST LINE\r\n\r\n", "400 Bad Request"},
		{"malformed header", "GET / HTTP/1.1\r\nHost: web\r\nno colon here\r\n\r\n", "400 Bad Request"},
		{"header over 64 KiB", "GET / HTTP/1.1\r\nHost: web\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "431 Request Header Fields Too Large"},
		{"two different Content-Lengths", "POST / HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400 Bad Request"},
		{"unknown Transfer-Encoding", "POST / HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: gzip\r\n\r\n", "501 Not Implemented"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := raw(tc.req)
			if err != nil || got != tc.want {
				t.Errorf("answer %q, %v; want %q", got, err, tc.want)
			}
		})
	}

	// An HTTP/2 client that breaks the protocol (a DATA frame on stream 0)
	// gets GOAWAY with PROTOCOL_ERROR.
	t.Run("HTTP/2 protocol error", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		var b bytes.Buffer
		b.WriteString("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		b.Write(h2frame(0x4, 0, 0, nil))            // SETTINGS
		b.Write(h2frame(0x0, 0, 0, []byte("oops"))) // DATA on stream 0
		if _, err := c.Write(b.Bytes()); err != nil {
			t.Fatal(err)
		}
		for {
			typ, payload, err := readFrame(c)
			if err != nil {
				t.Fatalf("no GOAWAY before %v", err)
			}
			if typ == 0x7 { // GOAWAY: last stream id, error code
				if code := binary.BigEndian.Uint32(payload[4:8]); code != 0x1 {
					t.Errorf("GOAWAY error code %d, want PROTOCOL_ERROR (1)", code)
				}
				return
			}
		}
	})

	// And the next client is served.
	c, _ := keepAliveClient(false)
	if _, err := get(c, n.url+"/"); err != nil {
		t.Fatalf("after the bad input: %v", err)
	}
}

// h2frame is an HTTP/2 frame (RFC 9113, 4.1).
func h2frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[5:], stream)
	return append(b, payload...)
}

func readFrame(r io.Reader) (typ byte, payload []byte, err error) {
	var h [9]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	if n > 1<<20 {
		return 0, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[3], payload, err
}
