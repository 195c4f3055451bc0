package mux

import (
	"encoding/binary"
	"fmt"
)

// protocolVersion is the first byte of every frame.
const protocolVersion = 1

// headerLen is the size of the fixed frame header.
const headerLen = 12

// What a sender assumes about its peer until the peer's SETTINGS arrive;
// they are also the smallest values SETTINGS may announce.
const (
	initialWindow    = 64 << 10
	initialFrameSize = 16 << 10
)

type frameType uint8

const (
	frameData frameType = iota
	frameWindowUpdate
	frameOpen
	frameFin
	frameRst
	framePing
	framePong
	frameGoAway
	frameSettings
	numFrameTypes
)

var frameNames = [...]string{"DATA", "WINDOW_UPDATE", "OPEN", "FIN", "RST", "PING", "PONG", "GOAWAY", "SETTINGS"}

func (t frameType) String() string {
	if t < numFrameTypes {
		return frameNames[t]
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// RST reasons, carried in the length field.
const (
	rstCancel    = 0 // abort both directions
	rstStop      = 1 // the sender closed without reading to the end
	rstRefused   = 2 // accept backlog full
	rstGoingAway = 3 // the sender had sent GOAWAY
)

type header struct {
	version  uint8
	typ      frameType
	flags    uint8
	reserved uint8
	id       uint32
	length   uint32
}

func parseHeader(b []byte) header {
	return header{
		version:  b[0],
		typ:      frameType(b[1]),
		flags:    b[2],
		reserved: b[3],
		id:       binary.BigEndian.Uint32(b[4:]),
		length:   binary.BigEndian.Uint32(b[8:]),
	}
}

func appendHeader(b []byte, typ frameType, id, length uint32) []byte {
	b = append(b, protocolVersion, byte(typ), 0, 0)
	b = binary.BigEndian.AppendUint32(b, id)
	return binary.BigEndian.AppendUint32(b, length)
}

// protoErr returns an error wrapping ErrProtocol.
func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}
