package router

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h), also
// IP6T_SO_ORIGINAL_DST for SOL_IPV6.
const soOriginalDst = 80

// OriginalDst returns the destination a redirected connection was headed
// for before an iptables REDIRECT or skiff's eBPF programs sent it to the
// sidecar. It needs no privileges.
func OriginalDst(c net.Conn) (*net.TCPAddr, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, fmt.Errorf("original destination of a %T: not a TCP connection", c)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("original destination: %w", err)
	}
	local, _ := tc.LocalAddr().(*net.TCPAddr)
	v6 := local != nil && local.IP.To4() == nil
	var addr *net.TCPAddr
	var serr error
	err = raw.Control(func(fd uintptr) {
		if v6 {
			var sa unix.RawSockaddrInet6
			size := uint32(unsafe.Sizeof(sa))
			serr = getsockopt(int(fd), unix.SOL_IPV6, soOriginalDst, unsafe.Pointer(&sa), &size)
			if serr == nil {
				port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
				addr = &net.TCPAddr{IP: net.IP(append([]byte(nil), sa.Addr[:]...)), Port: int(port)}
			}
			return
		}
		var sa unix.RawSockaddrInet4
		size := uint32(unsafe.Sizeof(sa))
		serr = getsockopt(int(fd), unix.SOL_IP, soOriginalDst, unsafe.Pointer(&sa), &size)
		if serr == nil {
			port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
			addr = &net.TCPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]).To4(), Port: int(port)}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("original destination: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	if ip4 := addr.IP.To4(); ip4 != nil {
		addr.IP = ip4
	}
	return addr, nil
}

func getsockopt(fd, level, name int, val unsafe.Pointer, size *uint32) error {
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(name), uintptr(val), uintptr(unsafe.Pointer(size)), 0)
	if e != 0 {
		return e
	}
	return nil
}
