//go:build !linux

package tcpfront

import "syscall"

// quickAck is a no-op where TCP_QUICKACK does not exist.
func quickAck(syscall.RawConn) {}
