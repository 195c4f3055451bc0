package mux

import (
	"errors"
	"io"
	"testing"
	"time"
)

// TestPeerGoingAway: the end that receives GOAWAY sees it in
// PeerGoingAway (and its Open fails), the end that sent it does not, and
// the stream open across it still carries bytes both ways.
func TestPeerGoingAway(t *testing.T) {
	client, server := sessionPair(t, overPipe, Config{}, Config{})
	c, s := openPair(t, client, server)
	if client.PeerGoingAway() || server.PeerGoingAway() {
		t.Fatal("PeerGoingAway before any GOAWAY")
	}
	if err := server.GoAway(); err != nil {
		t.Fatalf("GoAway: %v", err)
	}
	deadline := time.Now().Add(guard)
	for !client.PeerGoingAway() {
		if time.Now().After(deadline) {
			t.Fatalf("client.PeerGoingAway still false after %s", guard)
		}
		time.Sleep(time.Millisecond)
	}
	if server.PeerGoingAway() {
		t.Error("server.PeerGoingAway after its own GOAWAY, want false")
	}
	if _, err := client.Open(t.Context()); !errors.Is(err, ErrGoAway) {
		t.Errorf("client Open after GOAWAY: %v, want ErrGoAway", err)
	}
	buf := make([]byte, 4)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}
