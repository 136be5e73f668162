package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/refsst"
	"github.com/sstemu/sstemu/pkg/loadgen"
)

// realSSTOps is the ops each of the 64 connections sends to a fake of the real SST.
const realSSTOps = 30

// runAgainst serves `sstemu serve --sst-socket` in front of a fake of the real component of
// kind k, drives it with loadConns connections of realSSTOps random small GEMMs each,
// checking every result, and returns the /stats after, the log and the sum over the ops of
// cycles(M, N, K), what each op's timing must be.
func runAgainst(t *testing.T, k refsst.Kind, cycles func(m, n, k uint64) uint64) (stats, *proc, *refsst.Server, uint64) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "sst.sock")
	fake, err := refsst.Listen(sock, k)
	require.NoError(t, err)
	t.Cleanup(func() { _ = fake.Close() })
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--sst-socket", sock)
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")

	var (
		want atomic.Uint64
	)
	wait := goConns(t, addr, loadConns, 13, 5*time.Minute, func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int) {
		for j := range realSSTOps {
			m, n, kk := smallShape(r)
			if _, err := randomGEMM(ctx, c, r, m, n, kk); !assert.NoError(t, err, "connection %d op %d", i, j) {
				return
			}
			want.Add(cycles(uint64(m), uint64(n), uint64(kk)))
		}
	})
	wait()
	return mustStats(t, httpAddr), p, fake, want.Load()
}

// TestShippedSST: behind the component as ACALSim ships it, which answers GEMM INVALID,
// 64 connections get every op timed with the reference device server's cycles: one
// COMPUTE of 2·M·N·K units at 100 cycles a unit. The op that found out is timed too.
func TestShippedSST(t *testing.T) {
	s, p, fake, want := runAgainst(t, refsst.Shipped, func(m, n, k uint64) uint64 { return refsst.ComputeCost * 2 * m * n * k })
	const ops = loadConns * realSSTOps
	assert.Equal(t, uint64(ops), s.DeviceServer.Ops)
	assert.Equal(t, uint64(ops), s.DeviceServer.Timed, "every op timed; untimed by cause: %v", s.DeviceServer.UntimedByCause)
	assert.Zero(t, s.DeviceServer.Untimed)
	assert.Equal(t, want, s.DeviceServer.Cycles, "the reference device server's cycles")
	assert.Equal(t, []string{"compute"}, s.DeviceServer.TimingModes)
	assert.Equal(t, uint64(1), s.DeviceServer.ComputeFallbacks)
	assert.Equal(t, uint64(ops), s.DeviceServer.ComputeTimingRequests)
	assert.Equal(t, s.DeviceServer.TimingRequest-uint64(ops), fake.Stats().Invalid, "every refused GEMM counted as a request")
	assert.Equal(t, 1, p.count(func(m map[string]any) bool {
		return m["layer"] == "deviceserver" && m["level"] == "info" && m["message"] != nil &&
			len(m["message"].(string)) > 30 && m["message"].(string)[:30] == "the device does not know GEMM:"
	}), "the switch logged once")
	// A client asking for timing records sees which request timed the op.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := loadgen.Dial(ctx, p.listenAddr("tcpfront"), loadgen.ClientOptions{Timing: true})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.GEMM(ctx, 4, 16, 8, make([]float32, 32), make([]float32, 128), make([]float32, 64)))
	var rec struct {
		Timed         bool   `json:"timed"`
		Cycles        uint64 `json:"cycles"`
		TimingRequest string `json:"timing_request"`
	}
	require.NoError(t, json.Unmarshal(c.LastTiming(), &rec), "%s", c.LastTiming())
	assert.Equal(t, true, rec.Timed)
	assert.Equal(t, uint64(100*2*4*16*8), rec.Cycles)
	assert.Equal(t, "compute", rec.TimingRequest)

	st := fake.Stats()
	assert.Zero(t, st.Overruns, "the window kept the component alive")
	assert.Zero(t, st.Split, "every request arrived in one read")
	assert.Equal(t, uint64(1), st.Conns)
}

// TestTutorialSST64Conns: behind the component with the tutorial's GEMM, 64 connections
// keep every op timed with the tutorial's roofline, on one link that never overruns.
func TestTutorialSST64Conns(t *testing.T) {
	s, _, fake, want := runAgainst(t, refsst.Tutorial, func(m, n, k uint64) uint64 {
		c, _, _, _ := refsst.TutorialGEMMCycles(m, n, k, 4)
		return c
	})
	const ops = loadConns * realSSTOps
	assert.Equal(t, uint64(ops), s.DeviceServer.Timed, "every op timed; untimed by cause: %v", s.DeviceServer.UntimedByCause)
	assert.Equal(t, want, s.DeviceServer.Cycles)
	assert.Equal(t, []string{"gemm"}, s.DeviceServer.TimingModes)
	assert.Equal(t, uint64(ops), s.DeviceServer.TimingRequest)
	st := fake.Stats()
	assert.Zero(t, st.Overruns)
	assert.Zero(t, st.Split)
	assert.Equal(t, uint64(1), st.Conns, "one link throughout")
	assert.Equal(t, uint64(ops), st.Requests)
}

// BenchmarkTutorialSST64Conns measures `sstemu serve --sst-socket` in front of the fake of
// the tutorial's component under 64 connections of 4×16×8 GEMMs, every op timed (checked
// after the run): ops/s over b.N ops.
//
//	go test -run '^$' -bench TutorialSST64Conns -benchtime 20000x -count 5 ./e2e
func BenchmarkTutorialSST64Conns(b *testing.B) {
	sock := filepath.Join(b.TempDir(), "sst.sock")
	fake, err := refsst.Listen(sock, refsst.Tutorial)
	require.NoError(b, err)
	defer fake.Close()
	cmd := exec.Command(sstemuBin, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--sst-socket", sock, "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	addrs := map[string]string{}
	sc := bufio.NewScanner(stderr)
	for len(addrs) < 2 && sc.Scan() {
		var l struct{ Message, Layer, Addr string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Message == "listening" {
			addrs[l.Layer] = l.Addr
		}
	}
	require.Len(b, addrs, 2, "the listening lines of tcpfront and http")
	go func() { _, _ = io.Copy(io.Discard, stderr) }()

	ops := max(int64(b.N), loadConns)
	b.ResetTimer()
	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		Addr: addrs["tcpfront"], M: 4, N: 16, K: 8, Conns: loadConns, Ops: ops, Timeout: time.Minute,
	})
	b.StopTimer()
	require.NoError(b, err)
	require.Zero(b, rep.Errors, rep.FirstError)
	s, err := getStats(addrs["sstemu"])
	require.NoError(b, err)
	require.Equal(b, s.DeviceServer.Ops, s.DeviceServer.Timed, "every op timed: %v", s.DeviceServer.UntimedByCause)
	require.Zero(b, fake.Stats().Overruns)
	b.ReportMetric(rep.OpsPerSec, "ops/s")
	b.ReportMetric(float64(rep.Latency.P50.Microseconds()), "p50-µs")
}
