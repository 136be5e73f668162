//go:build linux

package tcpfront

import "syscall"

// quickAck asks the kernel to acknowledge received data at once instead of delaying the
// ACK by up to 40 ms. Linux clears quick-ACK mode on its own, so the server calls this
// before every read inside a frame; setting it also sends an ACK that is pending right now.
// Errors are ignored: the option only affects latency.
func quickAck(rc syscall.RawConn) {
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
