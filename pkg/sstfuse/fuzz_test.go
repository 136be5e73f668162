package sstfuse

import (
	"context"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/stack"
)

// FuzzHandlers feeds the FUSE handlers what a caller controls: the bytes and offset of a
// write and the size of a read, on a device backed by the in-process layers 3–5. Whatever
// they are, the answers are the driver's: a write of at least 4104 bytes submits 4104 and
// returns that, a shorter one is EINVAL; a read (of at least one byte) is EAGAIN with
// nothing stored, EINVAL into fewer than 4112 bytes, else 4112 bytes once; ioctl is ENOTTY.
func FuzzHandlers(f *testing.F) {
	st, err := stack.Build(context.Background(), stack.Options{})
	require.NoError(f, err)
	f.Cleanup(func() { _ = st.Close() })
	dev := st.Devices().All()[0]

	gemm := make([]byte, protocol.RequestSize)
	r := protocol.Request{Type: protocol.ReqGEMM}
	r.SetGEMM(protocol.GEMM{M: 4, N: 16, K: 8, DtypeSize: 4})
	require.NoError(f, r.Encode(gemm))
	f.Add(gemm, int64(0), uint16(protocol.ResponseSize), true)
	f.Add(gemm[:100], int64(5), uint16(protocol.ResponseSize), true)
	f.Add(append(gemm, 1, 2, 3), int64(-1), uint16(10), false)
	f.Add([]byte{}, int64(0), uint16(0), true)

	f.Fuzz(func(t *testing.T, data []byte, off int64, readSize uint16, writeFirst bool) {
		h := &handle{dev: dev}
		defer h.Release(context.Background())
		ctx := context.Background()
		stored := false
		if writeFirst {
			n, errno := h.Write(ctx, data, off)
			if len(data) < protocol.RequestSize {
				require.Equal(t, syscall.EINVAL, errno)
				require.Zero(t, n)
			} else {
				require.Equal(t, syscall.Errno(0), errno)
				require.Equal(t, uint32(protocol.RequestSize), n)
				stored = true
			}
		}
		dest := make([]byte, readSize)
		res, errno := h.Read(ctx, dest, off)
		switch {
		case readSize == 0:
			require.Equal(t, syscall.Errno(0), errno, "a read of nothing returns nothing, as sstdev.File")
		case !stored:
			require.Equal(t, syscall.EAGAIN, errno)
		case int(readSize) < protocol.ResponseSize:
			require.Equal(t, syscall.EINVAL, errno)
		default:
			require.Equal(t, syscall.Errno(0), errno)
			b, st := res.Bytes(nil)
			require.Zero(t, st)
			require.Len(t, b, protocol.ResponseSize)
			_, errno = h.Read(ctx, dest, off)
			require.Equal(t, syscall.EAGAIN, errno, "the answer is read once")
		}
		_, errno = h.Ioctl(ctx, uint32(off), uint64(readSize), data, nil)
		require.Equal(t, syscall.ENOTTY, errno)
	})
}
