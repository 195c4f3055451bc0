// Package mux multiplexes streams over one connection. Skiff's inter-site
// links run one Session over each mutual-TLS connection between two site
// gateways; either end can open streams, and every Stream is a net.Conn.
//
// # Use
//
// The dialing side calls Client, the accepting side Server. Open returns a
// stream at once (there is no round trip: the OPEN frame travels ahead of
// the first data), Accept returns the streams the peer opened. GoAway tells
// the peer to open no more streams while the existing ones drain; Close ends
// the session and every stream on it. io.Copy between a stream and a
// connection, either way, goes through Stream.WriteTo or Stream.ReadFrom,
// which hand buffers over without an extra copy. Stream.Sink does what
// WriteTo does into a socket or another stream without a goroutine of the
// caller's waiting: the session's reader writes what arrives to the
// socket (small frames, and large ones of a stream alone on the link; one
// write that never waits), or small messages into the other stream with
// Stream.TryWrite (which never waits, over a connection that is a
// HeldWriter), and a goroutine runs only while data waits. Stream.Notify
// and Stream.TryRead wait for a stream's data without a goroutine at all:
// the session's reader calls the caller back, which reads what came, and
// may leave work for the end of the reader's burst of frames (package l7
// passes small HTTP answers on to their clients so, one write for many).
// Stream.WriteUnflushed leaves its last frame in the session's buffer for
// the caller's Session.Flush, so that many streams' messages written
// together leave in one write.
//
// # Flow control
//
// Every stream has its own receive window (Config.StreamWindow). A sender
// never has more unacknowledged bytes in flight than the receiver granted,
// and the receiver grants more (WINDOW_UPDATE) once its consumer has read at
// least half a window. The goroutine that reads the connection therefore
// never waits for a slow stream: data beyond the window is a protocol error,
// so what a stream buffers is bounded by its window. Buffers come from a
// sync.Pool and are held only while data is in flight; an idle stream owns
// none. Where the session's reader wrote the data to the stream's
// destination itself (Sink), it writes the WINDOW_UPDATE too, over a
// HeldWriter, with what it leaves for the end of its burst, so the
// session's writer goroutine is not woken for it.
//
// # Wire format
//
// Each end first sends SETTINGS, then any frames, in this format (all
// integers big endian):
//
//	offset  size  field
//	0       1     version    1; a frame with any other version is refused
//	1       1     type       see below
//	2       1     flags      0
//	3       1     reserved   0
//	4       4     stream ID  0 for session frames, otherwise the stream
//	8       4     length     see below
//
//	type              stream  length               payload
//	0  DATA           ≠ 0     payload size         the data
//	1  WINDOW_UPDATE  ≠ 0     credit increment > 0 none
//	2  OPEN           ≠ 0     0                    none
//	3  FIN            ≠ 0     0                    none; the sender writes no more
//	4  RST            ≠ 0     reason, see below    none
//	5  PING           0       8                    8 opaque bytes
//	6  PONG           0       8                    the PING's 8 bytes
//	7  GOAWAY         0       0                    none
//	8  SETTINGS       0       8                    receive window u32, max frame u32
//
// RST reasons: 0 CANCEL aborts both directions; 1 STOP means the sender
// closed the stream without reading to the end (the receiver's writes fail,
// its reads go on up to the sender's FIN, which follows); 2 REFUSED means the
// stream was never handed to the application because the peer already had
// Config.MaxIncomingStreams open or the accept backlog was full; 3
// GOING_AWAY likewise, because the receiver had sent GOAWAY. A refused
// stream ends alone; the session carries on.
//
// The client (the dialing side) opens odd stream IDs, the server even ones;
// each end's IDs only grow. SETTINGS carries the sender's per-stream
// receive window (64 KiB to 1 GiB) and the largest DATA payload it accepts
// (16 KiB to 16 MiB); until it arrives a sender assumes 64 KiB and 16 KiB.
//
// Anything else closes the session with an error wrapping ErrProtocol that
// names the frame and says what was wrong (Session.Err, for one log line
// per session): an unknown version or type, nonzero flags, a first
// frame other than SETTINGS, a DATA frame larger than the receiver's max
// frame size or its remaining window, DATA after FIN, a frame for a stream
// ID that was never opened, an OPEN whose ID has the receiver's parity or
// does not grow. Frames for a stream that existed and has since closed or
// been reset are discarded: they were in flight when it ended.
//
// # Keepalive
//
// Each end sends a PING every Config.KeepAliveInterval (one outstanding at a
// time; its PONG gives RTT) and ends the session with ErrKeepAliveTimeout
// when nothing at all arrived for Config.KeepAliveTimeout.
package mux
