package router

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// LinkProtocolVersion is the version of the hello exchanged on every link
// connection and of the stream header. A peer speaking another version is
// refused with a message that names both versions.
const LinkProtocolVersion = 2

// ErrVersion reports a peer that speaks another link protocol version.
var ErrVersion = errors.New("link protocol version mismatch")

// Roles a link peer can have.
const (
	roleGateway = "gateway" // a site's gateway: part of the network graph
	roleMember  = "member"  // a sidecar attached to its site's gateway: receives the view, not part of the graph
)

// hello is the first message on every link connection, written by the
// dialing side right after the TLS handshake, before the mux starts.
type hello struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	Router  string `json:"router,omitempty"` // the dialling router: a gateway's or a sidecar's pod
	Role    string `json:"role"`
	Cost    int    `json:"cost"`
	LinkID  string `json:"linkID"` // groups the pool connections of one link
	Index   int    `json:"index"`  // 0 is the primary connection: it carries the control stream
	Pool    int    `json:"pool"`
	// Key is a gateway's site key (netview.KeyID form); Proof its
	// signature over the connection (helloDigest): proof that the
	// dialler holds the key it names.
	Key   string `json:"key,omitempty"`
	Proof string `json:"proof,omitempty"`
}

// helloReply is the accepting side's answer.
type helloReply struct {
	Version int    `json:"v"`
	Site    string `json:"site"`
	// Router names the accepting gateway within its site: with Site, the
	// node the link ends at (a site may run several gateways).
	Router string `json:"router,omitempty"`
	Error  string `json:"error,omitempty"`
	// Reason is a refusal's reason, as the metric labels it
	// (sibling_order, draining, token, ...).
	Reason string `json:"reason,omitempty"`
	// LinkCert is the link certificate (PEM) issued when the hello
	// redeemed a token.
	LinkCert string `json:"linkCert,omitempty"`
}

// writeMsg writes a length-prefixed JSON message.
func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// maxMsg bounds one control message (a full sync of a large network fits).
const maxMsg = 16 << 20

// readMsg reads a length-prefixed JSON message of at most maxMsg bytes.
func readMsg(r io.Reader, v any) error { return readMsgLimit(r, v, maxMsg) }

// readMsgLimit reads a length-prefixed JSON message of at most limit
// bytes; the size is checked before anything is allocated.
func readMsgLimit(r io.Reader, v any, limit uint32) error {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > limit {
		return fmt.Errorf("message of %d bytes exceeds the limit of %d", size, limit)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode message: %w", err)
	}
	return nil
}

// Stream kinds.
const (
	kindData    = 1
	kindControl = 2
)

// Protocols carried in the stream header.
const (
	protoTCP   = 0
	protoHTTP  = 1
	protoHTTP2 = 2
)

// defaultHops is the hop limit a stream starts with.
const defaultHops = 16

// header opens every stream on a link. Binary, because it is on the path
// of every new connection:
//
//	version u8 | kind u8 | hops u8 | proto u8 | port u16 |
//	len u8 | address | len u8 | destination site | len u8 | origin site
type header struct {
	Kind    uint8
	Hops    uint8
	Proto   uint8
	Port    uint16
	Address string
	Dest    string // destination site; empty lets the receiving gateway choose
	Origin  string
}

func (h header) encode() ([]byte, error) {
	for _, s := range []string{h.Address, h.Dest, h.Origin} {
		if len(s) > 255 {
			return nil, fmt.Errorf("stream header field %q longer than 255 bytes", s)
		}
	}
	b := make([]byte, 0, 9+len(h.Address)+len(h.Dest)+len(h.Origin))
	b = append(b, LinkProtocolVersion, h.Kind, h.Hops, h.Proto)
	b = binary.BigEndian.AppendUint16(b, h.Port)
	for _, s := range []string{h.Address, h.Dest, h.Origin} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

func readHeader(r *bufio.Reader) (header, error) {
	var fixed [6]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return header{}, fmt.Errorf("read stream header: %w", err)
	}
	if fixed[0] != LinkProtocolVersion {
		return header{}, fmt.Errorf("stream header v%d, this gateway speaks v%d: %w", fixed[0], LinkProtocolVersion, ErrVersion)
	}
	h := header{Kind: fixed[1], Hops: fixed[2], Proto: fixed[3], Port: binary.BigEndian.Uint16(fixed[4:])}
	var strs [3]string
	for i := range strs {
		n, err := r.ReadByte()
		if err != nil {
			return header{}, fmt.Errorf("read stream header: %w", err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return header{}, fmt.Errorf("read stream header: %w", err)
		}
		strs[i] = string(b)
	}
	h.Address, h.Dest, h.Origin = strs[0], strs[1], strs[2]
	if h.Kind != kindData && h.Kind != kindControl {
		return header{}, fmt.Errorf("stream header kind %d unknown", h.Kind)
	}
	return h, nil
}

// Stream status codes, answered by the far end once the stream is
// connected to an endpoint (or could not be).
const (
	statusOK          = 0
	statusNoEndpoint  = 1
	statusNoRoute     = 2
	statusHopLimit    = 3
	statusDialFailed  = 4
	statusBadRequest  = 5
	statusUnreachable = 6
)

// statusError is a stream that the far end refused.
type statusError struct {
	Code uint8
	Msg  string
}

func (e *statusError) Error() string { return e.Msg }

func writeStatus(w io.Writer, code uint8, msg string) error {
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	b := make([]byte, 3+len(msg))
	b[0] = code
	binary.BigEndian.PutUint16(b[1:], uint16(len(msg)))
	copy(b[3:], msg)
	_, err := w.Write(b)
	return err
}

func readStatus(r *bufio.Reader) error {
	var fixed [3]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return fmt.Errorf("read stream status: %w", err)
	}
	n := binary.BigEndian.Uint16(fixed[1:])
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("read stream status: %w", err)
	}
	if fixed[0] == statusOK {
		return nil
	}
	return &statusError{Code: fixed[0], Msg: string(msg)}
}
