//go:build linux

package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientNoDelay checks the socket option of each mode (Nagle on only for pieces).
func TestClientNoDelay(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	for _, pieces := range []bool{false, true} {
		c, err := Dial(context.Background(), addr, ClientOptions{Pieces: pieces})
		require.NoError(t, err)
		rc, err := c.conn.SyscallConn()
		require.NoError(t, err)
		var v int
		require.NoError(t, rc.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY) }))
		require.NoError(t, err)
		assert.Equal(t, !pieces, v != 0, "TCP_NODELAY with pieces=%v", pieces)
		require.NoError(t, c.Close())
	}
}

func TestDialError(t *testing.T) {
	l := listen(t)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	_, err := Dial(context.Background(), addr, ClientOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dial "+addr)
	assert.True(t, errors.Is(err, syscall.ECONNREFUSED), "wraps the dial error: %v", err)
}
