//go:build !unix

package sstcomponent

import (
	"errors"
	"net"
)

// DefaultSocketPath is the reference component's default socket_path.
const DefaultSocketPath = "/tmp/qemu-sst-linux.sock"

// Listen is only available on Unix systems, where the SST component's socket lives.
func Listen(path string) (net.Listener, error) {
	return nil, errors.New("sstcomponent: Unix sockets are not supported on this system")
}
