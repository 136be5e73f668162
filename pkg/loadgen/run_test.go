package loadgen

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunStopsAtDuration(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			const d = 300 * time.Millisecond
			cfg := Config{Addr: srv.start(t), M: 4, N: 16, K: 8, Conns: 3, Duration: d, Warmup: 2, Verify: true}
			start := time.Now()
			rep, err := Run(context.Background(), cfg)
			require.NoError(t, err)
			assert.Less(t, time.Since(start), d+time.Second, "Run returned late")
			assert.GreaterOrEqual(t, rep.Elapsed, d)
			assert.Less(t, rep.Elapsed, d+500*time.Millisecond)
			assert.Positive(t, rep.Ops)
			assert.Zero(t, rep.Errors, rep.FirstError)
			assert.Zero(t, rep.Mismatches, rep.FirstMismatch)
			assert.Equal(t, int(rep.Ops), rep.Latency.Samples)
			assert.InDelta(t, float64(rep.Ops)/rep.Elapsed.Seconds(), rep.OpsPerSec, 1e-6)
			l := rep.Latency
			assert.True(t, 0 < l.Min && l.Min <= l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max, "%+v", l)
			assert.Equal(t, 3, rep.Config.Conns)
		})
	}
}

func TestRunOpsCap(t *testing.T) {
	rep, err := Run(context.Background(), Config{Addr: startFloor(t), M: 3, N: 5, K: 7, Conns: 4, Ops: 50, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, int64(50), rep.Ops)
	assert.Equal(t, 50, rep.Latency.Samples)
	assert.Zero(t, rep.Errors)
	assert.Zero(t, rep.Mismatches)
}

func TestRunPieces(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		Addr: startTCPFront(t, linalgExecutor{}), M: 4, N: 16, K: 8, Ops: 20, Warmup: 2, Pieces: true, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, int64(20), rep.Ops)
	assert.Zero(t, rep.Errors+rep.Mismatches)
	assert.True(t, rep.Config.Pieces)
}

// TestRunCountsMismatches runs against a server whose results are wrong in one element.
func TestRunCountsMismatches(t *testing.T) {
	addr := startTCPFront(t, linalgExecutor{mod: func(c []float32) { c[5] += 1e-3 }})
	rep, err := Run(context.Background(), Config{Addr: addr, M: 4, N: 16, K: 8, Conns: 2, Ops: 30, Verify: true})
	require.NoError(t, err)
	assert.Equal(t, int64(30), rep.Ops)
	assert.Equal(t, int64(30), rep.Mismatches)
	assert.Contains(t, rep.FirstMismatch, "C[0,5]")

	_, err = Run(context.Background(), Config{Addr: addr, M: 4, N: 16, K: 8, Ops: 1, Warmup: 1, Verify: true})
	require.Error(t, err, "a wrong warm-up result fails the run")
	assert.Contains(t, err.Error(), "warm-up op 0: wrong result: C[0,5]")
}

// TestRunHonoursContext cancels a run whose server never answers: Run must interrupt the
// ops in flight and return at once with the context's error.
func TestRunHonoursContext(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	rep, err := Run(ctx, Config{Addr: addr, M: 4, N: 16, K: 8, Conns: 4, Duration: time.Minute})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Zero(t, rep.Ops)
	assert.Zero(t, rep.Errors, "interrupted ops are not errors: %s", rep.FirstError)
	assert.Equal(t, 4, rep.Config.Conns)

	// A run whose measured window ends while the server hangs: in-flight ops are dropped.
	start = time.Now()
	rep, err = Run(context.Background(), Config{Addr: addr, M: 4, N: 16, K: 8, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 2*time.Second)
	assert.Zero(t, rep.Ops+rep.Errors)
}

// TestRunCountsTimeouts runs against a server that never answers, with an op timeout: each
// op fails with ErrTimeout and is counted, unlike ops cut off by the end of the run.
func TestRunCountsTimeouts(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	rep, err := Run(context.Background(), Config{Addr: addr, M: 2, N: 2, K: 2, Conns: 2, Ops: 4, Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	assert.Zero(t, rep.Ops)
	assert.Equal(t, int64(4), rep.Errors)
	assert.Contains(t, rep.FirstError, ErrTimeout.Error())

	_, err = Run(context.Background(), Config{Addr: addr, M: 2, N: 2, K: 2, Ops: 1, Warmup: 1, Timeout: 50 * time.Millisecond})
	require.ErrorIs(t, err, ErrTimeout, "a warm-up op that times out fails the run")
}

// TestRunRedialsAfterErrors runs against a server that answers one op per connection
// correctly, then closes: every second op fails, and the run goes on over new connections.
func TestRunRedialsAfterErrors(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) {
		defer c.Close()
		if _, err := readRawFrame(c); err != nil {
			return
		}
		// Answer the first op with a 1×1 zero (the run does not verify), then read the
		// second request and close without answering it.
		_, _ = c.Write(binary.BigEndian.AppendUint32(nil, 4))
		_, _ = c.Write([]byte{0, 0, 0, 0})
		_, _ = readRawFrame(c)
	})
	rep, err := Run(context.Background(), Config{Addr: addr, M: 1, N: 1, K: 3, Ops: 10})
	require.NoError(t, err)
	assert.Equal(t, int64(5), rep.Ops)
	assert.Equal(t, int64(5), rep.Errors)
	assert.Contains(t, rep.FirstError, ErrNoAnswer.Error())
}

func TestRunSetupErrors(t *testing.T) {
	l := listen(t)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	floor := startFloor(t)
	cases := []struct {
		name    string
		cfg     Config
		errPart string
	}{
		{"no addr", Config{M: 1, N: 1, K: 1, Ops: 1}, "Addr: empty"},
		{"zero dim", Config{Addr: floor, M: 0, N: 1, K: 1, Ops: 1}, "at least 1, got 0×1×1"},
		{"too many conns", Config{Addr: floor, M: 1, N: 1, K: 1, Conns: MaxConns + 1, Ops: 1}, "Conns"},
		{"negative duration", Config{Addr: floor, M: 1, N: 1, K: 1, Duration: -1}, "Duration: negative"},
		{"no end", Config{Addr: floor, M: 1, N: 1, K: 1}, "would never end"},
		{"negative ops", Config{Addr: floor, M: 1, N: 1, K: 1, Ops: -1}, "Ops: negative"},
		{"negative timeout", Config{Addr: floor, M: 1, N: 1, K: 1, Ops: 1, Timeout: -1}, "Timeout: negative"},
		{"negative warmup", Config{Addr: floor, M: 1, N: 1, K: 1, Ops: 1, Warmup: -1}, "Warmup: negative"},
		{"verify too big", Config{Addr: floor, M: 1024, N: 1024, K: 1024, Ops: 1, Verify: true}, "exceeds"},
		{"dial fails", Config{Addr: closed, M: 1, N: 1, K: 1, Ops: 1}, "connection 0: loadgen: dial"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errPart)
		})
	}
}

func TestAutoWarmup(t *testing.T) {
	assert.Equal(t, 32, AutoWarmup(4, 16, 8))
	assert.Equal(t, 4, AutoWarmup(256, 256, 256))
	assert.Equal(t, 1, AutoWarmup(1024, 1024, 1024))
}

// TestPortablePath runs the client and the floor with the big-endian code paths (encode
// and decode through scratch buffers) on this host.
func TestPortablePath(t *testing.T) {
	saved := hostLittleEndian
	hostLittleEndian = false
	t.Cleanup(func() { hostLittleEndian = saved })
	addr := startFloor(t)
	for _, s := range []struct{ m, n, k int }{{4, 16, 8}, {96, 128, 160}} {
		c, err := Dial(context.Background(), addr, ClientOptions{})
		require.NoError(t, err)
		a, b := randMat(1, s.m*s.k), randMat(2, s.k*s.n)
		out := make([]float32, s.m*s.n)
		require.NoError(t, c.GEMM(context.Background(), s.m, s.n, s.k, a, b, out))
		assertCloseToFloat64(t, s.m, s.n, s.k, a, b, out)
		require.NoError(t, c.Close())
	}
}
