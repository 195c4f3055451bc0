package mux

import (
	"crypto/tls"
	"io"
	"testing"
)

// The benchmarks run over a real TLS 1.3 connection on 127.0.0.1 with
// ECDSA P-256 certificates. Each op carries 32 KiB.
const benchChunk = 32 << 10

func reportMBps(b *testing.B, bytes int64) {
	b.ReportMetric(float64(bytes)/1e6/b.Elapsed().Seconds(), "MB/s")
}

// source stands for a busy TCP connection that a gateway copies into a
// stream: every Read fills p, until n bytes have been read.
type source struct{ n int64 }

func (s *source) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	k := int(min(int64(len(p)), s.n))
	s.n -= int64(k)
	return k, nil
}

// BenchmarkRawTLS is the baseline for BenchmarkThroughput: 32 KiB writes
// (what io.Copy does) to a plain tls.Conn, read with a 32 KiB buffer.
func BenchmarkRawTLS(b *testing.B) {
	c, s := connPair(b, true)
	defer c.Close()
	defer s.Close()
	received := make(chan int64)
	go func() {
		var n int64
		buf := make([]byte, benchChunk)
		for {
			k, err := s.Read(buf)
			n += int64(k)
			if err != nil {
				received <- n
				return
			}
		}
	}()
	chunk := make([]byte, benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	c.(*tls.Conn).CloseWrite()
	n := <-received
	b.StopTimer()
	if n != int64(b.N)*benchChunk {
		b.Fatalf("received %d bytes, want %d", n, int64(b.N)*benchChunk)
	}
	reportMBps(b, n)
}

// BenchmarkThroughput sends b.N×32 KiB over 1 or 8 streams, each fed by
// io.Copy from a source (Stream.ReadFrom) as a gateway does, or (write=32KiB)
// by Stream.Write of 32 KiB chunks. The receiver copies each stream to
// io.Discard (Stream.WriteTo).
func BenchmarkThroughput(b *testing.B) {
	for _, tc := range []struct {
		name    string
		streams int
		write   bool
	}{
		{"streams=1", 1, false},
		{"streams=8", 8, false},
		{"streams=1,write=32KiB", 1, true},
		{"streams=8,write=32KiB", 8, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			client, server := sessionPair(b, overTLS, Config{}, Config{})
			received := make(chan int64)
			go func() {
				for {
					st, err := server.Accept()
					if err != nil {
						return
					}
					go func() {
						n, err := io.Copy(io.Discard, st)
						if err != nil {
							b.Error(err)
						}
						received <- n
					}()
				}
			}()
			var sts []*Stream
			for range tc.streams {
				st, err := client.Open(b.Context())
				if err != nil {
					b.Fatal(err)
				}
				sts = append(sts, st)
			}
			chunk := make([]byte, benchChunk)
			b.ResetTimer()
			for i, st := range sts {
				chunks := b.N/tc.streams + min(1, max(0, b.N%tc.streams-i))
				go func() {
					defer st.CloseWrite()
					if !tc.write {
						if _, err := io.Copy(st, &source{int64(chunks) * benchChunk}); err != nil {
							b.Error(err)
						}
						return
					}
					for range chunks {
						if _, err := st.Write(chunk); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			var n int64
			for range tc.streams {
				n += <-received
			}
			b.StopTimer()
			if n != int64(b.N)*benchChunk {
				b.Fatalf("received %d bytes, want %d", n, int64(b.N)*benchChunk)
			}
			reportMBps(b, n)
		})
	}
}

// BenchmarkOpenRoundTrip opens a stream, sends a 64-byte request, reads a
// 64-byte reply and closes, one at a time.
func BenchmarkOpenRoundTrip(b *testing.B) {
	client, server := sessionPair(b, overTLS, Config{}, Config{})
	go func() {
		for {
			st, err := server.Accept()
			if err != nil {
				return
			}
			go func() {
				defer st.Close()
				buf := make([]byte, 64)
				if _, err := io.ReadFull(st, buf); err != nil {
					b.Error(err)
					return
				}
				st.Write(buf)
			}()
		}
	}()
	req, reply := make([]byte, 64), make([]byte, 64)
	b.ResetTimer()
	for range b.N {
		st, err := client.Open(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(st, reply); err != nil {
			b.Fatal(err)
		}
		st.Close()
	}
}
