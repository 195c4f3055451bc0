package router

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHeaderRoundTrip(t *testing.T) {
	tests := []header{
		{Kind: kindData, Hops: defaultHops, Proto: protoTCP, Port: 8080, Address: "backend", Dest: "west", Origin: "east"},
		{Kind: kindControl, Origin: "east"},
		{Kind: kindData, Hops: 1, Proto: protoHTTP2, Port: 65535, Address: strings.Repeat("a", 255), Dest: "", Origin: "x"},
	}
	for _, h := range tests {
		t.Run(h.Address, func(t *testing.T) {
			b, err := h.encode()
			if err != nil {
				t.Fatal(err)
			}
			got, err := readHeader(bufio.NewReader(bytes.NewReader(b)))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, h); diff != "" {
				t.Errorf("header (-got +want):\n%s", diff)
			}
		})
	}
}

func TestHeaderErrors(t *testing.T) {
	if _, err := (header{Kind: kindData, Address: strings.Repeat("a", 256)}).encode(); err == nil {
		t.Error("a 256-byte address encoded")
	}
	good, _ := header{Kind: kindData, Address: "a", Dest: "b", Origin: "c"}.encode()
	v3 := append([]byte{3}, good[1:]...)
	if _, err := readHeader(bufio.NewReader(bytes.NewReader(v3))); !errors.Is(err, ErrVersion) {
		t.Errorf("v3 header: got %v, want ErrVersion", err)
	}
	badKind := append([]byte{}, good...)
	badKind[1] = 9
	if _, err := readHeader(bufio.NewReader(bytes.NewReader(badKind))); err == nil || !strings.Contains(err.Error(), "kind 9") {
		t.Errorf("kind 9: got %v", err)
	}
	if _, err := readHeader(bufio.NewReader(bytes.NewReader(good[:len(good)-1]))); err == nil {
		t.Error("truncated header accepted")
	}
}

func TestStatusRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := writeStatus(&buf, statusOK, ""); err != nil {
		t.Fatal(err)
	}
	if err := writeStatus(&buf, statusNoRoute, "no route to site x"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(&buf)
	if err := readStatus(br); err != nil {
		t.Fatalf("ok status: %v", err)
	}
	err := readStatus(br)
	var se *statusError
	if !errors.As(err, &se) || se.Code != statusNoRoute || se.Msg != "no route to site x" {
		t.Fatalf("status = %v, want no route", err)
	}
}

func TestMsgLimit(t *testing.T) {
	b := []byte{0xff, 0xff, 0xff, 0xff}
	var v map[string]any
	if err := readMsg(bytes.NewReader(b), &v); err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("oversized message: %v", err)
	}
}

func FuzzHeader(f *testing.F) {
	good, _ := header{Kind: kindData, Hops: 16, Port: 80, Address: "echo", Dest: "west", Origin: "east"}.encode()
	f.Add(good)
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		enc, err := h.encode()
		if err != nil {
			t.Fatalf("decoded header does not encode: %v", err)
		}
		if !bytes.Equal(enc, b[:len(enc)]) {
			t.Fatalf("re-encoded %x, input %x", enc, b)
		}
	})
}
