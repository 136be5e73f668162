package e2e

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// Load test size: loadConns connections, each issuing SSTEMU_E2E_LOAD_OPS ops
// (defaultLoadOps if unset).
const (
	loadConns      = 64
	defaultLoadOps = 1000
)

// loadOps reads SSTEMU_E2E_LOAD_OPS, the ops per connection of TestLoad.
func loadOps(t *testing.T) int {
	t.Helper()
	v := os.Getenv("SSTEMU_E2E_LOAD_OPS")
	if v == "" {
		return defaultLoadOps
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, "SSTEMU_E2E_LOAD_OPS")
	require.Positive(t, n, "SSTEMU_E2E_LOAD_OPS")
	return n
}

// TestLoad drives 64 connections of random small GEMMs (half of them sending each op in
// the reference client's five pieces with Nagle on) through all five layers and checks
// that every answer is right against float64 and that every layer counted exactly the ops
// sent: nothing lost, nothing duplicated, nothing wrong.
func TestLoad(t *testing.T) {
	ops := loadOps(t)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")

	var (
		done       atomic.Int64
		maxLatency atomic.Int64
	)
	begin := time.Now()
	wait := goConns(t, addr, loadConns, 2026, 10*time.Minute, func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int) {
		for j := 0; j < ops; j++ {
			m, n, k := smallShape(r)
			took, err := randomGEMM(ctx, c, r, m, n, k)
			if !assert.NoError(t, err, "connection %d op %d", i, j) {
				return
			}
			done.Add(1)
			if d := int64(took); d > maxLatency.Load() {
				maxLatency.Store(d) // racy maximum: good enough for a log line
			}
		}
	})
	wait()
	wall := time.Since(begin)
	total := uint64(loadConns * ops)
	require.Equal(t, total, uint64(done.Load()), "every op answered and right")
	t.Logf("load: %d connections × %d ops = %d ops in %v: %.0f ops/s, slowest op %v",
		loadConns, ops, total, wall.Round(time.Millisecond), float64(total)/wall.Seconds(),
		time.Duration(maxLatency.Load()).Round(time.Microsecond))

	// Every layer counted exactly what was sent. The front end counts an op as its answer
	// starts, so by now every count is final.
	s := eventuallyStats(t, httpAddr, 5*time.Second, "every connection closed",
		func(s stats) bool { return s.Front.ActiveConns == 0 })
	assert.Equal(t, total, s.Front.Ops, "front end ops")
	assert.Equal(t, total, s.Front.OpsGEMM, "front end GEMM ops")
	assert.Equal(t, uint64(loadConns), s.Front.TotalConns, "connections")
	for kind, n := range s.Front.Errors {
		assert.Zero(t, n, "front end errors of kind %s", kind)
	}
	assert.Equal(t, total, s.DeviceServer.Ops, "device server ops")
	assert.Equal(t, total, s.DeviceServer.Timed, "device server timed ops")
	assert.Zero(t, s.DeviceServer.Untimed, "device server untimed ops")
	assert.Zero(t, s.DeviceServer.Failed, "device server invalid ops")
	assert.Equal(t, total, s.DeviceServer.TimingRequest, "one timing request per GEMM")
	require.Len(t, s.CharDevices, 1)
	assert.Equal(t, int64(total), s.CharDevices[0].Writes, "/dev/sst0 writes")
	assert.Equal(t, int64(total), s.CharDevices[0].Answers, "/dev/sst0 answers")
	require.NotNil(t, s.SST)
	assert.Equal(t, total, s.SST.Requests[sstGEMMRequests], "SST GEMM requests")
	assert.Equal(t, total, s.SST.Total, "SST requests of every type")
	assert.Zero(t, s.Front.OpsInFlight)
	assert.Equal(t, 64, s.CharDevices[0].FreeSlots)
}
