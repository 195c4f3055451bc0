//go:build !linux

package router

import (
	"errors"
	"net"
)

// OriginalDst is only available on Linux.
func OriginalDst(c net.Conn) (*net.TCPAddr, error) {
	return nil, errors.New("original destination: only supported on linux")
}
