package mux

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestProtocolErrors feeds a server session frames that break the wire
// protocol; each must end the session with ErrProtocol.
func TestProtocolErrors(t *testing.T) {
	settings := settingsFrame(initialWindow, initialFrameSize)
	open1 := frameBytes(frameOpen, 1, 0, nil)
	data := func(id uint32, n int) []byte { return frameBytes(frameData, id, uint32(n), make([]byte, n)) }
	badVersion := frameBytes(framePing, 0, 8, make([]byte, 8))
	badVersion[0] = 2
	badFlags := frameBytes(frameOpen, 1, 0, nil)
	badFlags[2] = 1
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   string // in Err(): the frame and what was wrong
	}{
		{"bad version first", [][]byte{badVersion}, "frame version 2, this end speaks version 1"},
		{"bad version later", [][]byte{settings, badVersion}, "frame version 2, this end speaks version 1"},
		{"unknown type", [][]byte{settings, frameBytes(numFrameTypes, 1, 0, nil)}, "unknown frame type 9"},
		{"nonzero flags", [][]byte{settings, badFlags}, "OPEN frame with flags 0x1"},
		{"first frame not SETTINGS", [][]byte{frameBytes(framePing, 0, 8, make([]byte, 8))}, "first frame is PING, want SETTINGS"},
		{"second SETTINGS", [][]byte{settings, settings}, "second SETTINGS frame"},
		{"SETTINGS window too small", [][]byte{settingsFrame(initialWindow-1, initialFrameSize)}, "SETTINGS window 65535 outside"},
		{"SETTINGS frame size too large", [][]byte{settingsFrame(initialWindow, maxFrameSize+1)}, "SETTINGS max frame size 16777217 outside"},
		{"SETTINGS of 4 bytes", [][]byte{frameBytes(frameSettings, 0, 4, make([]byte, 4))}, "SETTINGS frame of 4 bytes, want 8"},
		{"DATA over max frame size", [][]byte{settings, open1, data(1, DefaultMaxFrameSize+1)}, "DATA frame of 32769 bytes on stream 1 exceeds max frame size"},
		{"DATA beyond the window", [][]byte{settings, open1, data(1, 32<<10), data(1, 32<<10), data(1, 1)}, "DATA of 1 bytes on stream 1 exceeds its remaining window 0"},
		{"DATA for a stream never opened", [][]byte{settings, data(5, 10)}, "DATA frame for stream 5, which was never opened"},
		{"DATA for a local stream never opened", [][]byte{settings, data(2, 10)}, "DATA frame for stream 2, which was never opened"},
		{"DATA on stream 0", [][]byte{settings, data(0, 10)}, "DATA frame on stream 0"},
		{"DATA after FIN", [][]byte{settings, open1, frameBytes(frameFin, 1, 0, nil), data(1, 1)}, "DATA on stream 1 after FIN"},
		{"second FIN", [][]byte{settings, open1, frameBytes(frameFin, 1, 0, nil), frameBytes(frameFin, 1, 0, nil)}, "second FIN on stream 1"},
		{"OPEN with the server's parity", [][]byte{settings, frameBytes(frameOpen, 2, 0, nil)}, "OPEN frame for stream 2, an ID of this end's parity"},
		{"OPEN with a lower ID", [][]byte{settings, frameBytes(frameOpen, 3, 0, nil), open1}, "OPEN frame for stream 1 after stream 3"},
		{"OPEN with a length", [][]byte{settings, frameBytes(frameOpen, 1, 5, nil)}, "OPEN frame with length 5"},
		{"WINDOW_UPDATE of 0", [][]byte{settings, open1, frameBytes(frameWindowUpdate, 1, 0, nil)}, "WINDOW_UPDATE of 0 on stream 1"},
		{"WINDOW_UPDATE beyond the window", [][]byte{settings, open1, frameBytes(frameWindowUpdate, 1, 1, nil)}, "WINDOW_UPDATE of 1 on stream 1"},
		{"RST with an unknown reason", [][]byte{settings, open1, frameBytes(frameRst, 1, 9, nil)}, "RST on stream 1 with unknown reason 9"},
		{"PING of 4 bytes", [][]byte{settings, frameBytes(framePing, 0, 4, make([]byte, 4))}, "PING frame of 4 bytes, want 8"},
		{"PING on a stream", [][]byte{settings, open1, frameBytes(framePing, 1, 8, make([]byte, 8))}, "PING frame on stream 1"},
		{"GOAWAY with a length", [][]byte{settings, frameBytes(frameGoAway, 0, 1, nil)}, "GOAWAY frame with length 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, peer := newRawPeer(t, false, Config{StreamWindow: initialWindow})
			for _, f := range tc.frames {
				peer.send(f)
			}
			select {
			case <-s.Done():
			case <-time.After(guard):
				t.Fatal("session still alive")
			}
			if err := s.Err(); !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrSessionClosed) {
				t.Fatalf("Err() = %v, want ErrProtocol and ErrSessionClosed", err)
			}
			if err := s.Err(); !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Err() = %q, want it to say %q", err, tc.want)
			}
		})
	}
}

// TestFramesForClosedStreams: frames still in flight for a stream that
// was reset or closed are discarded, and the session lives on.
func TestFramesForClosedStreams(t *testing.T) {
	s, peer := newRawPeer(t, false, Config{})
	peer.send(settingsFrame(initialWindow, initialFrameSize))
	peer.send(frameBytes(frameOpen, 1, 0, nil))
	peer.send(frameBytes(frameOpen, 3, 0, nil))
	reset, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	closed, err := s.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reset.Reset()
	if f := peer.next(t, frameRst); f.id != 1 || f.length != rstCancel {
		t.Fatalf("got RST %d on stream %d, want CANCEL on 1", f.length, f.id)
	}
	closed.Close()
	if f := peer.next(t, frameRst); f.id != 3 || f.length != rstStop {
		t.Fatalf("got RST %d on stream %d, want STOP on 3", f.length, f.id)
	}
	for _, id := range []uint32{1, 3} {
		peer.send(frameBytes(frameData, id, 10<<10, make([]byte, 10<<10)))
		peer.send(frameBytes(frameData, id, 10, make([]byte, 10)))
		peer.send(frameBytes(frameWindowUpdate, id, 1000, nil))
		peer.send(frameBytes(frameFin, id, 0, nil))
		peer.send(frameBytes(frameRst, id, rstCancel, nil))
	}
	ping := []byte("12345678")
	peer.send(frameBytes(framePing, 0, 8, ping))
	if f := peer.next(t, framePong); !bytes.Equal(f.payload, ping) {
		t.Fatalf("PONG payload %q, want %q", f.payload, ping)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("session ended: %v", err)
	}
	if n := s.NumStreams(); n != 0 {
		t.Errorf("NumStreams = %d, want 0", n)
	}
}

// TestWireFormat pins the bytes a session sends.
func TestWireFormat(t *testing.T) {
	s, peer := newRawPeer(t, true, Config{StreamWindow: 256 << 10, MaxFrameSize: 64 << 10})
	settings := peer.next(t, frameSettings)
	wantSettings := settingsFrame(256<<10, 64<<10)[headerLen:]
	if !bytes.Equal(settings.payload, wantSettings) {
		t.Errorf("SETTINGS payload % x, want % x", settings.payload, wantSettings)
	}
	peer.send(settingsFrame(initialWindow, initialFrameSize))
	st, err := s.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("hi"))
	st.CloseWrite()
	var got [][]byte
	for _, typ := range []frameType{frameOpen, frameData, frameFin} {
		f := peer.next(t, typ)
		got = append(got, frameBytes(f.typ, f.id, f.length, f.payload))
	}
	want := [][]byte{
		{1, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
		{1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 'h', 'i'},
		{1, 3, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
	}
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("frames\n% x\nwant\n% x", got, want)
	}
}
