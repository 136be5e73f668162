package refsst

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
)

const waitLimit = 10 * time.Second

func listen(t *testing.T, k Kind) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sst.sock")
	s, err := Listen(path, k)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func request(t *testing.T, r *protocol.Request) []byte {
	t.Helper()
	b, err := r.MarshalBinary()
	require.NoError(t, err)
	return b
}

func roundTrip(t *testing.T, c net.Conn, r *protocol.Request) protocol.Response {
	t.Helper()
	_, err := c.Write(request(t, r))
	require.NoError(t, err)
	b := make([]byte, protocol.ResponseSize)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	var resp protocol.Response
	require.NoError(t, resp.Decode(b))
	return resp
}

func TestAnswers(t *testing.T) {
	gemm := &protocol.Request{Type: protocol.ReqGEMM, RequestID: 5, UserData: 55}
	gemm.SetGEMM(protocol.GEMM{M: 4, N: 16, K: 8, DtypeSize: 4})
	compute := &protocol.Request{Type: protocol.ReqCompute, RequestID: 6, UserData: 66}
	compute.SetCompute(protocol.Compute{ComputeUnits: 7, LatencyModel: 3})
	for _, k := range []Kind{Shipped, Tutorial} {
		t.Run(k.String(), func(t *testing.T) {
			s, path := listen(t, k)
			c, err := net.Dial("unix", path)
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(waitLimit)))

			r := roundTrip(t, c, compute)
			assert.Equal(t, protocol.StatusOK, r.Status)
			assert.Equal(t, uint64(6), r.RequestID)
			assert.Equal(t, uint64(66), r.UserData)
			assert.Equal(t, protocol.ComputeResult{Cycles: 700, Timestamp: 0}, r.Compute(), "100 cycles a unit whatever latency_model")

			r = roundTrip(t, c, gemm)
			if k == Shipped {
				assert.Equal(t, protocol.StatusInvalid, r.Status, "the shipped component does not know GEMM")
			} else {
				assert.Equal(t, protocol.StatusOK, r.Status)
				assert.Equal(t, protocol.GEMMResult{Cycles: 16, ComputeCycles: 16, MemoryCycles: 1, MemoryBytes: 896}, r.GEMM())
			}
			r = roundTrip(t, c, &protocol.Request{Type: protocol.ReqRead, RequestID: 7})
			assert.Equal(t, protocol.StatusInvalid, r.Status)
			r = roundTrip(t, c, &protocol.Request{Type: protocol.ReqEcho, RequestID: 8, Payload: [protocol.MaxDataSize]byte{1, 2, 3}})
			assert.Equal(t, uint64(protocol.MaxDataSize), r.Result)
			assert.Equal(t, byte(3), r.Payload[2])
			assert.Equal(t, uint64(4), s.Stats().Requests)
		})
	}
}

// TestSplitRequestDropped: a request that arrives in two reads is dropped; the next whole
// one is still answered.
func TestSplitRequestDropped(t *testing.T) {
	s, path := listen(t, Shipped)
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	b := request(t, &protocol.Request{Type: protocol.ReqNoop, RequestID: 1})
	_, err = c.Write(b[:100])
	require.NoError(t, err)
	require.NoError(t, s.Wait(ctx, func(st Stats) bool { return st.Split == 1 }))
	_, err = c.Write(b[100:]) // the rest, 4004 bytes: short as well
	require.NoError(t, err)
	require.NoError(t, s.Wait(ctx, func(st Stats) bool { return st.Split == 2 }))
	r := roundTrip(t, c, &protocol.Request{Type: protocol.ReqNoop, RequestID: 2})
	assert.Equal(t, uint64(2), r.RequestID)
	assert.Equal(t, uint64(1), s.Stats().Requests)
}

// TestOneClientAtATime: a second client is served only when the first has gone.
func TestOneClientAtATime(t *testing.T) {
	s, path := listen(t, Shipped)
	first, err := net.Dial("unix", path)
	require.NoError(t, err)
	second, err := net.Dial("unix", path) // connects into the backlog
	require.NoError(t, err)
	defer second.Close()
	require.NoError(t, first.SetDeadline(time.Now().Add(waitLimit)))
	require.NoError(t, second.SetDeadline(time.Now().Add(waitLimit)))
	roundTrip(t, first, &protocol.Request{Type: protocol.ReqNoop, RequestID: 1})
	_, err = second.Write(request(t, &protocol.Request{Type: protocol.ReqNoop, RequestID: 2}))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), s.Stats().Conns, "the second client waits")
	require.NoError(t, first.Close())
	b := make([]byte, protocol.ResponseSize)
	_, err = io.ReadFull(second, b)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), s.Stats().Conns)
}

// survives returns whether the server survives w answers that the client does not read:
// it sends w NOOPs, waits until all are answered or the server closed the connection,
// and only then reads.
func survives(t *testing.T, s *Server, path string, w int) bool {
	t.Helper()
	before := s.Stats()
	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(waitLimit)))
	for i := range w {
		_, err := c.Write(request(t, &protocol.Request{Type: protocol.ReqNoop, RequestID: uint64(i)}))
		require.NoError(t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, s.Wait(ctx, func(st Stats) bool {
		return st.Requests-before.Requests == uint64(w) || st.Overruns > before.Overruns
	}))
	b := make([]byte, protocol.ResponseSize)
	for range w {
		if _, err := io.ReadFull(c, b); err != nil {
			require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
			return false
		}
	}
	return s.Stats().Overruns == before.Overruns
}

// TestOverrun measures how many unread answers the fake (and so the real component, whose
// socket has the same default send buffer) survives: 32 must survive, as measured against
// the real SST, and 64 must not, or the fake would not test what it stands in for.
func TestOverrun(t *testing.T) {
	s, path := listen(t, Tutorial)
	first := 0
	for w := 1; w <= 64; w++ {
		if !survives(t, s, path, w) {
			first = w
			break
		}
	}
	t.Logf("the fake first closes the link with %d unread answers", first)
	require.NotZero(t, first, "64 unread answers did not overrun the fake")
	assert.Greater(t, first, 32, "32 in flight must survive")
}
