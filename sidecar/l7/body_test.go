package l7

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// A body read partly by one attempt is read whole by the next, which
// supersedes the first; once more than max was read, no attempt can
// start again.
func TestReplayBody(t *testing.T) {
	data := strings.Repeat("0123456789", 10) // 100 bytes
	b := newReplayBody(io.NopCloser(strings.NewReader(data)), 64)
	first := b.attempt()
	buf := make([]byte, 30)
	if n, err := io.ReadFull(first, buf); n != 30 || err != nil {
		t.Fatalf("first attempt read %d, %v", n, err)
	}
	if !b.replayable() {
		t.Fatal("30 of 64 bytes read: not replayable")
	}
	second := b.attempt()
	if _, err := first.Read(buf); !errors.Is(err, errSuperseded) {
		t.Errorf("first attempt after the second began: %v, want errSuperseded", err)
	}
	got, err := io.ReadAll(second)
	if err != nil || string(got) != data {
		t.Fatalf("second attempt read %d bytes (%v), want the whole body", len(got), err)
	}
	if b.replayable() {
		t.Error("100 bytes read with max 64: still replayable")
	}
	if _, err := b.getBody(); !errors.Is(err, errBodyGone) {
		t.Errorf("getBody after the body went too far: %v", err)
	}
}

// Every attempt reads the same bytes, whatever the read sizes, as long as
// the body fits in max.
func TestReplayBodyAttemptsAgree(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz"), 40)
	b := newReplayBody(io.NopCloser(bytes.NewReader(data)), len(data))
	for i, size := range []int{1, 7, 100, 4096} {
		a := b.attempt()
		var got []byte
		p := make([]byte, size)
		for len(got) < 3*size*(i+1) && len(got) < len(data) {
			n, err := a.Read(p)
			got = append(got, p[:n]...)
			if err != nil {
				break
			}
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("attempt %d (reads of %d) read other bytes", i, size)
		}
	}
	a := b.attempt()
	got, err := io.ReadAll(a)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("last attempt: %d bytes, %v", len(got), err)
	}
}

func TestIsUpgrade(t *testing.T) {
	for _, tc := range []struct {
		major      int
		conn, upgr string
		want       bool
	}{
		{1, "Upgrade", "websocket", true},
		{1, "keep-alive, upgrade", "websocket", true},
		{1, "keep-alive", "websocket", false},
		{1, "Upgrade", "", false},
		{2, "Upgrade", "websocket", false},
	} {
		req, _ := http.NewRequest("GET", "http://web/", nil)
		req.ProtoMajor = tc.major
		req.Header.Set("Connection", tc.conn)
		if tc.upgr != "" {
			req.Header.Set("Upgrade", tc.upgr)
		}
		if got := isUpgrade(req); got != tc.want {
			t.Errorf("isUpgrade(HTTP/%d, Connection %q, Upgrade %q) = %v", tc.major, tc.conn, tc.upgr, got)
		}
	}
}

// An offer to upgrade to h2c is taken out of the request; other
// Connection options stay.
func TestDropH2CUpgrade(t *testing.T) {
	req, _ := http.NewRequest("GET", "http://web/", nil)
	req.Header.Set("Connection", "Upgrade, HTTP2-Settings, keep-alive")
	req.Header.Set("Upgrade", "h2c")
	req.Header.Set("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
	dropH2CUpgrade(req)
	if isUpgrade(req) || req.Header.Get("Upgrade") != "" || req.Header.Get("Http2-Settings") != "" || req.Header.Get("Connection") != "keep-alive" {
		t.Errorf("after dropH2CUpgrade: %v", req.Header)
	}
	ws, _ := http.NewRequest("GET", "http://web/", nil)
	ws.Header.Set("Connection", "Upgrade")
	ws.Header.Set("Upgrade", "websocket")
	dropH2CUpgrade(ws)
	if !isUpgrade(ws) {
		t.Errorf("a WebSocket upgrade was dropped: %v", ws.Header)
	}
}
