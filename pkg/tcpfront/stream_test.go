package tcpfront

import (
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
)

// streamingExecutor is layer 2 itself (no devices: ops come back untimed) counting the
// GEMMs it was asked to stream.
type streamingExecutor struct {
	*deviceserver.Server
	starts atomic.Int64
}

func (e *streamingExecutor) StartGEMM(ctx context.Context, op *deviceserver.Op) (deviceserver.GEMMStream, error) {
	e.starts.Add(1)
	return e.Server.StartGEMM(ctx, op)
}

func newStreamingExecutor(t *testing.T) *streamingExecutor {
	s := deviceserver.New(deviceserver.Config{Logger: zerolog.Nop()})
	t.Cleanup(func() { _ = s.Close() })
	return &streamingExecutor{Server: s}
}

// streamShape has a B of 515 rows of 2048: linalg's blocks of 128 rows, the last of 3.
const streamM, streamN, streamK = 5, 2048, 515

// writeInPieces writes b in pieces of size bytes, pausing between them if pause > 0.
func writeInPieces(c net.Conn, b []byte, size int, pause time.Duration) error {
	for len(b) > 0 {
		n := min(size, len(b))
		if _, err := c.Write(b[:n]); err != nil {
			return err
		}
		b = b[n:]
		if pause > 0 {
			time.Sleep(pause) // a slow client, not a wait for the server
		}
	}
	return nil
}

// TestStreamedGEMMOverTCP sends GEMMs whose B spans several K-blocks (K not a multiple
// of the block) in one write, in odd-sized pieces and in slow pieces; the integer-valued
// operands make every sum exact, so C must equal the naive product exactly (the float64
// bound of docs/gemm.md for arbitrary data is tested in pkg/linalg).
func TestStreamedGEMMOverTCP(t *testing.T) {
	exec := newStreamingExecutor(t)
	ts := startServer(t, exec, nil)
	a, b := ramp(streamM*streamK, 3), ramp(streamK*streamN, 4)
	f := frame(1, gemmJSONFor(9, streamM, streamN, streamK), a, b)
	want := naiveGEMM(a, b, streamM, streamN, streamK)
	for _, tc := range []struct {
		name  string
		piece int
		pause time.Duration
	}{
		{"one write", len(f), 0},
		{"odd pieces", 997, 0},
		{"slow pieces", len(f)/20 + 1, 2 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := exec.starts.Load()
			c := ts.dial(t)
			require.NoError(t, writeInPieces(c, f, tc.piece, tc.pause))
			got, err := readResponse(c)
			require.NoError(t, err)
			require.Equal(t, want, got)
			assert.Equal(t, before+1, exec.starts.Load(), "streamed")
			// The connection goes on with the next frame, here a small unstreamed op.
			require.NoError(t, doGEMM(t, c, 10, 3, 4, 5))
			assert.Equal(t, before+1, exec.starts.Load(), "a small GEMM is not streamed")
		})
	}
	st := ts.Stats()
	assert.Equal(t, int64(3*len(f)+3*(HeaderSize+len(gemmJSONFor(10, 3, 4, 5))+8+4*(15+20))), int64(st.BytesIn))
}

// TestStreamedGEMMClientDiesMidB: a client that closes after half of B ends its op
// without leaking goroutines or the in-flight budget: with a budget for exactly one
// such op, the next client's op runs.
func TestStreamedGEMMClientDiesMidB(t *testing.T) {
	exec := newStreamingExecutor(t)
	need := int64(4 * (streamM*streamK + streamK*streamN + streamM*streamN))
	ts := startServer(t, exec, func(s *Server) { s.MaxInflightBytes = need })
	a, b := ramp(streamM*streamK, 3), ramp(streamK*streamN, 4)
	f := frame(1, gemmJSONFor(9, streamM, streamN, streamK), a, b)
	warm := ts.dial(t)
	require.NoError(t, doGEMM(t, warm, 1, 2, 2, 2))
	require.NoError(t, warm.Close())
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, time.Second, time.Millisecond)
	baseline := runtime.NumGoroutine()
	for _, cut := range []int{len(f) - 4*len(b)/2, len(f) - 1} {
		c, err := net.Dial("tcp", ts.addr)
		require.NoError(t, err)
		_, err = c.Write(f[:cut])
		require.NoError(t, err)
		require.NoError(t, c.Close())
		// The next op needs the whole budget, so it runs only once the dead one released it.
		next := ts.dial(t)
		_, err = next.Write(f)
		require.NoError(t, err)
		require.NoError(t, next.SetReadDeadline(time.Now().Add(10*time.Second)))
		got, err := readResponse(next)
		require.NoError(t, err)
		require.Equal(t, naiveGEMM(a, b, streamM, streamN, streamK), got)
		require.NoError(t, next.Close())
	}
	require.Eventually(t, func() bool { return ts.Stats().ActiveConns == 0 }, 3*time.Second, time.Millisecond)
	// Polled by hand: require.Eventually runs its condition on a goroutine of its own.
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(3 * time.Second); n > baseline && time.Now().Before(deadline); n = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	assert.LessOrEqual(t, n, baseline, "goroutines left behind")
	assert.Len(t, ts.log.lines(t, "stream ended inside the frame"), 2)
}

// TestStreamingDisabled: with DisableStreaming the same GEMM goes through Execute.
func TestStreamingDisabled(t *testing.T) {
	exec := newStreamingExecutor(t)
	ts := startServer(t, exec, func(s *Server) { s.DisableStreaming = true })
	require.NoError(t, doGEMM(t, ts.dial(t), 1, streamM, streamN, streamK))
	assert.Equal(t, int64(0), exec.starts.Load())
}

// BenchmarkLargeGEMM is one large GEMM end to end over loopback TCP (one write of the
// frame, the answer read whole) through layer 2 without devices, with B streamed into
// the arithmetic and without (DisableStreaming), for before/after ratios in one run:
//
//	go test -run '^$' -bench LargeGEMM -count 5 ./pkg/tcpfront
func BenchmarkLargeGEMM(b *testing.B) {
	for _, sh := range []struct{ m, n, k int }{{1024, 1024, 1024}, {128, 4096, 4096}} {
		a, bm := ramp(sh.m*sh.k, 1), ramp(sh.k*sh.n, 2)
		f := frame(1, gemmJSONFor(1, sh.m, sh.n, sh.k), a, bm)
		for _, mode := range []string{"streamed", "whole"} {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", sh.m, sh.n, sh.k, mode), func(b *testing.B) {
				s := deviceserver.New(deviceserver.Config{Logger: zerolog.Nop()})
				defer s.Close()
				ts := startServer(b, s, func(srv *Server) {
					srv.DisableStreaming = mode == "whole"
					srv.Logger = zerolog.Nop()
				})
				c := ts.dial(b)
				resp := make([]byte, 4+4*sh.m*sh.n)
				b.SetBytes(int64(len(f) + len(resp)))
				for b.Loop() {
					if _, err := c.Write(f); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(c, resp); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
