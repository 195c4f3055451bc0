package mux

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// FuzzSession feeds arbitrary bytes to a server session as the client's
// frames. The session must neither panic nor hang: it ends when the bytes
// run out, and every stream operation returns.
func FuzzSession(f *testing.F) {
	settings := settingsFrame(initialWindow, initialFrameSize)
	cat := func(frames ...[]byte) []byte {
		var b []byte
		for _, f := range frames {
			b = append(b, f...)
		}
		return b
	}
	open1 := frameBytes(frameOpen, 1, 0, nil)
	f.Add([]byte{})
	f.Add(settings)
	f.Add(cat(settings, open1, frameBytes(frameData, 1, 5, []byte("hello")), frameBytes(frameFin, 1, 0, nil)))
	f.Add(cat(settings, open1, frameBytes(frameWindowUpdate, 1, 100, nil), frameBytes(frameRst, 1, rstStop, nil)))
	f.Add(cat(settings, frameBytes(frameWindowUpdate, 2, 1000, nil), frameBytes(frameData, 2, 3, []byte("abc")), frameBytes(frameRst, 2, rstCancel, nil)))
	f.Add(cat(settings, frameBytes(framePing, 0, 8, []byte("pingpong")), frameBytes(framePong, 0, 8, make([]byte, 8)), frameBytes(frameGoAway, 0, 0, nil)))
	f.Add(cat(settings, open1, frameBytes(frameOpen, 3, 0, nil), frameBytes(frameFin, 3, 0, nil), frameBytes(frameData, 1, 4096, make([]byte, 4096))))
	f.Add(cat(settings, open1, frameBytes(frameData, 1, 8192, make([]byte, 8192)), frameBytes(frameRst, 1, rstCancel, nil), frameBytes(frameData, 1, 10, make([]byte, 10))))
	f.Fuzz(func(t *testing.T, input []byte) {
		a, b := net.Pipe()
		s := Server(a, Config{StreamWindow: initialWindow, MaxFrameSize: initialFrameSize, AcceptBacklog: 4})
		var wg sync.WaitGroup
		wg.Go(func() { io.Copy(io.Discard, b) })
		// Streams the peer opens: read everything, answer, close.
		wg.Go(func() {
			for {
				st, err := s.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					io.Copy(io.Discard, st)
					st.Write([]byte("reply"))
					st.Close()
				})
			}
		})
		// A stream of ours, which the input may address as stream 2.
		if st, err := s.Open(t.Context()); err == nil {
			wg.Go(func() {
				st.Write(make([]byte, 100<<10))
				st.CloseWrite()
			})
			wg.Go(func() {
				buf := make([]byte, 1000)
				for {
					if _, err := st.Read(buf); err != nil {
						break
					}
				}
				st.Reset()
			})
		}
		b.Write(input)
		b.Close()
		done := make(chan struct{})
		go func() {
			<-s.Done()
			wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session or stream operations hang")
		}
		s.Close()
	})
}
