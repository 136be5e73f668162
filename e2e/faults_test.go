package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// promptOp is how long any op may take while the SST component is away: the device
// answers NO_DEVICE at once, so the op comes back untimed without waiting for a timeout.
const promptOp = time.Second

// loadLoop runs conns connections of small checked GEMMs until stop is closed, failing
// the test on any wrong, lost or slow (over promptOp) answer. It returns the number of ops
// answered once every connection has stopped.
func loadLoop(t *testing.T, addr string, conns int, stop <-chan struct{}) func() int64 {
	var count atomic.Int64
	wait := goConns(t, addr, conns, 31337, 5*time.Minute, func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int) {
		for j := 0; ; j++ {
			select {
			case <-stop:
				return
			default:
			}
			m, n, k := smallShape(r)
			opCtx, opCancel := context.WithTimeout(ctx, 10*time.Second)
			took, err := randomGEMM(opCtx, c, r, m, n, k)
			opCancel()
			if !assert.NoError(t, err, "connection %d op %d", i, j) {
				return
			}
			if !assert.Less(t, took, promptOp, "connection %d op %d (%dx%dx%d) answered late", i, j, m, n, k) {
				return
			}
			count.Add(1)
		}
	})
	return func() int64 { wait(); return count.Load() }
}

// outageTime is how long TestSSTKilledAndRestarted keeps the SST component away.
const outageTime = 3 * time.Second

// TestSSTKilledAndRestarted kills the external SST component (SIGKILL) in the middle of a
// load and restarts it on the same socket path. During the outage every op still gets its
// right answer within promptOp, counted untimed; once the SST is back the device
// reconnects by itself and ops are timed again, without restarting sstemu serve.
func TestSSTKilledAndRestarted(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sst.sock")
	sst := start(t, "sst", "--socket", sock)
	require.Eventually(t, func() bool { _, err := os.Stat(sock); return err == nil }, 10*time.Second, 10*time.Millisecond)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--sst-socket", sock)
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	p.waitFor(10*time.Second, "the link to SST", func(m map[string]any) bool { return m["layer"] == "virtiodev" && m["message"] == "connected to SST" })

	stop := make(chan struct{})
	wait := loadLoop(t, addr, 8, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			wait()
		}
	}()
	const phaseOps = 500 // ops each phase must see before the next step
	before := eventuallyStats(t, httpAddr, 30*time.Second, "timed ops with the SST up",
		func(s stats) bool { return s.DeviceServer.Timed >= phaseOps })
	require.Zero(t, before.DeviceServer.Untimed, "all ops timed while the SST is up")

	sst.kill()
	killedAt := time.Now()
	// The outage lasts long enough for the device's reconnection back-off to reach its
	// 1 s ceiling.
	outage := eventuallyStats(t, httpAddr, 30*time.Second, "untimed ops during the outage",
		func(s stats) bool { return s.DeviceServer.Untimed >= phaseOps && time.Since(killedAt) >= outageTime })
	// No op can be timed from here on: the SST is dead. Every op since the kill was
	// answered (by the load loop, promptly) and counted untimed.
	timedByFirst := outage.DeviceServer.Timed
	require.False(t, outage.Virtio[0].LinkUp, "the device saw the link go down")
	require.Positive(t, outage.Virtio[0].NoDevice, "forwarded requests answered NO_DEVICE")
	t.Logf("outage: %d untimed ops within %v of SIGKILL", outage.DeviceServer.Untimed, time.Since(killedAt).Round(time.Millisecond))

	sst2 := start(t, "sst", "--socket", sock)
	restartedAt := time.Now()
	after := eventuallyStats(t, httpAddr, 30*time.Second, "timed ops again after the restart",
		func(s stats) bool { return s.DeviceServer.Timed >= timedByFirst+phaseOps })
	t.Logf("timing resumed: %d timed ops within %v of the restart", after.DeviceServer.Timed-timedByFirst, time.Since(restartedAt).Round(time.Millisecond))
	assert.True(t, after.Virtio[0].LinkUp)
	assert.Equal(t, uint64(2), after.Virtio[0].LinkUps, "one reconnection")

	close(stop)
	answered := wait()
	final := mustStats(t, httpAddr)
	assert.Equal(t, uint64(answered), final.Front.Ops, "front end ops = answers received")
	assert.Equal(t, uint64(answered), final.DeviceServer.Ops, "device server ops")
	assert.Equal(t, final.DeviceServer.Ops, final.DeviceServer.Timed+final.DeviceServer.Untimed)
	assert.Equal(t, final.DeviceServer.Untimed, final.DeviceServer.UntimedByCause["link_down"],
		"every op untimed during the outage is untimed for the link: %v", final.DeviceServer.UntimedByCause)
	assert.Zero(t, final.DeviceServer.Failed)
	for kind, n := range final.Front.Errors {
		assert.Zero(t, n, "front end errors of kind %s", kind)
	}

	// The restarted SST timed every op timed since the outage began, no more, no less.
	require.NoError(t, sst2.signal(syscall.SIGTERM, 10*time.Second))
	assert.Contains(t, sst2.output(), fmt.Sprintf("GEMM requests: %d\n", final.DeviceServer.Timed-timedByFirst))
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
	t.Logf("SST kill: %d ops answered: %d timed by the first SST, %d untimed during the outage, %d timed by the restarted SST",
		answered, timedByFirst, final.DeviceServer.Untimed, final.DeviceServer.Timed-timedByFirst)
}

// Leak bounds of TestClientDisconnectsLeakNothing.
const (
	// leakRounds is how many times each misbehaving client runs.
	leakRounds = 50
	// heapGrowthBound is how much heap_inuse may exceed the baseline once the process has
	// settled. One leaked 1024³ op would keep 12 MiB (A, B, C) and the 2·leakRounds small
	// disconnections at least 2·leakRounds·64 KiB = 6.4 MiB of read buffers; the bound is
	// below both.
	heapGrowthBound = 4 << 20
	// bigDim is the side of the op whose answer is never read: its 4 MiB result cannot
	// fit in the socket buffers, so the server is blocked writing it when the client
	// closes.
	bigDim = 1024
)

// TestClientDisconnectsLeakNothing disconnects clients in the middle of an op (after the
// header, in the middle of a tensor) and sends a 1024³ op whose answer is never read, and
// checks from /stats that goroutines return to their baseline and the heap does not grow
// beyond heapGrowthBound. The process runs with GOGC=10 so that the small allocations of
// polling /stats soon trigger a collection (no way to call runtime.GC from outside).
func TestClientDisconnectsLeakNothing(t *testing.T) {
	p := startEnv(t, []string{"GOGC=10"}, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")

	// Warm up every path once (small and 1024³ ops, on connections since closed), so that
	// pools and lazily built state are part of the baseline, then churn so that the
	// baseline is measured after a collection.
	r := rand.New(rand.NewPCG(4, 4))
	for _, pieces := range []bool{false, true} {
		c := dial(t, addr, pieces)
		gemm(t, c, r, 3, 5, 7)
		c.Close()
	}
	c := dial(t, addr, false)
	gemm(t, c, r, bigDim, bigDim, bigDim)
	c.Close()
	churn(t, addr)
	base := settled(t, httpAddr, func(s stats) bool { return true })
	t.Logf("baseline: %d goroutines, heap_inuse %d KiB", base.Process.Goroutines, base.Process.HeapInuseBytes>>10)

	json := `{"op_id": 1, "M": 64, "N": 64, "K": 64, "A_shape": [64, 64], "B_shape": [64, 64], "dtype": "float32"}`
	full := frame(1, json, make([]byte, 4*64*64), make([]byte, 4*64*64))
	afterHeader := 9
	midTensorA := 9 + len(json) + 4 + 4*64*32
	for i := 0; i < leakRounds; i++ {
		for _, cut := range []int{afterHeader, midTensorA} {
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			_, err = nc.Write(full[:cut])
			require.NoError(t, err)
			require.NoError(t, nc.Close())
		}
	}

	// A 1024³ op whose answer is never read: wait until the server has computed it and is
	// writing (the front end counts the op as its answer starts), then close.
	opsBefore := mustStats(t, httpAddr).Front.Ops
	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	big := fmt.Sprintf(`{"op_id": 2, "M": %d, "N": %d, "K": %d, "A_shape": [%d, %d], "B_shape": [%d, %d], "dtype": "float32"}`,
		bigDim, bigDim, bigDim, bigDim, bigDim, bigDim, bigDim)
	tensor := make([]byte, 4*bigDim*bigDim)
	_, err = nc.Write(frame(1, big, tensor, tensor))
	require.NoError(t, err)
	eventuallyStats(t, httpAddr, 30*time.Second, "the 1024³ op computed", func(s stats) bool { return s.Front.Ops == opsBefore+1 })
	time.Sleep(200 * time.Millisecond) // the server fills the socket buffers and blocks
	require.NoError(t, nc.Close())

	churn(t, addr)
	after := settled(t, httpAddr, func(s stats) bool {
		return s.Process.Goroutines <= base.Process.Goroutines && s.Process.HeapInuseBytes <= base.Process.HeapInuseBytes+heapGrowthBound
	})
	t.Logf("after %d header cuts, %d mid-tensor cuts and one unread 1024³ answer: %d goroutines, heap_inuse %d KiB (baseline %d KiB, bound +%d KiB)",
		leakRounds, leakRounds, after.Process.Goroutines, after.Process.HeapInuseBytes>>10, base.Process.HeapInuseBytes>>10, heapGrowthBound>>10)
	assert.Equal(t, uint64(2*leakRounds), after.Front.Errors["truncated"], "one truncated frame per cut")
	assert.Equal(t, uint64(1), after.Front.Errors["write_error"], "the unread answer")
	assert.Zero(t, after.Front.OpsInFlight)
	assert.Equal(t, 64, after.CharDevices[0].FreeSlots)
	assert.Equal(t, 2*leakRounds+1, p.count(func(m map[string]any) bool { return m["level"] == "warn" || m["level"] == "error" }),
		"one log line per misbehaving client")
}

// churnOps is how many 256³ ops churn sends, each on a new connection: with the read
// buffer, both tensors and the result, each leaves ≈ 832 KiB of garbage, ≈ 32 MiB in all,
// more than any heap goal of the process under GOGC=10 (live heap ≲ 30 MiB), so at least
// one garbage collection has run by the end and heap_inuse reflects what is live.
const churnOps = 40

// churn makes the server allocate and drop memory until the garbage collector has run.
func churn(t *testing.T, addr string) {
	t.Helper()
	r := rand.New(rand.NewPCG(40, 40))
	for i := 0; i < churnOps; i++ {
		c := dial(t, addr, false)
		_, err := randomGEMM(withTimeout(t, 30*time.Second), c, r, 256, 256, 256)
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
}

// settled polls /stats until no connection is open and no op is in flight, the goroutine
// count has held still for a few polls, and cond holds; it fails after 20 s.
func settled(t *testing.T, httpAddr string, cond func(stats) bool) stats {
	t.Helper()
	var last []int
	return eventuallyStats(t, httpAddr, 20*time.Second, "the process settles (goroutines, heap)", func(s stats) bool {
		last = append(last, s.Process.Goroutines)
		if len(last) > 5 {
			last = last[1:]
		}
		steady := len(last) == 5
		for _, g := range last {
			steady = steady && g == last[0]
		}
		return steady && s.Front.ActiveConns == 0 && s.Front.OpsInFlight == 0 && cond(s)
	})
}

// TestSIGTERMUnderLoad sends SIGTERM while 16 connections issue ops, some large enough
// to be in flight at that moment: every op the server accepted is answered (right), the
// connections are closed, the statistics print and the exit status is 0. What the clients
// received and what the server counted agree exactly.
func TestSIGTERMUnderLoad(t *testing.T) {
	p := start(t, "serve", "--listen", "127.0.0.1:0")
	addr := p.listenAddr("tcpfront")
	const conns = 16
	var (
		answered     atomic.Int64
		afterSignal  atomic.Int64 // ops started before SIGTERM was sent and answered after
		signalled    atomic.Int64 // time of SIGTERM, UnixNano; 0 before
		running      atomic.Int64
		enoughBefore = make(chan struct{})
		once         sync.Once
	)
	wait := goConns(t, addr, conns, 15, 2*time.Minute, func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int) {
		for j := 0; ; j++ {
			m, n, k := smallShape(r)
			if j%4 == 3 {
				m, n, k = 256+r.IntN(64), 256+r.IntN(64), 256+r.IntN(64)
			}
			running.Add(1)
			startedBefore := signalled.Load() == 0
			_, err := randomGEMM(ctx, c, r, m, n, k)
			running.Add(-1)
			if err != nil {
				// Only a connection closed by the shutdown may end an op, and only
				// after the signal.
				var oe *loadgen.OpError
				assert.True(t, errors.As(err, &oe) && oe.Phase != loadgen.PhaseArgs && oe.Phase != loadgen.PhaseStart,
					"connection %d op %d: %v", i, j, err)
				assert.NotZero(t, signalled.Load(), "connection %d op %d failed before SIGTERM: %v", i, j, err)
				assert.NotErrorIs(t, err, context.DeadlineExceeded, "connection %d op %d left hanging", i, j)
				return
			}
			answered.Add(1)
			if startedBefore && signalled.Load() != 0 {
				afterSignal.Add(1)
			}
			if answered.Load() >= 400 {
				once.Do(func() { close(enoughBefore) })
			}
		}
	})
	<-enoughBefore
	signalled.Store(time.Now().UnixNano())
	inFlight := running.Load()
	err := p.signal(syscall.SIGTERM, 30*time.Second)
	wait()
	require.NoError(t, err, "exit status 0")
	t.Logf("SIGTERM with %d ops in flight at the client side: %d ops answered, %d of them started before the signal and answered after it",
		inFlight, answered.Load(), afterSignal.Load())
	assert.Positive(t, afterSignal.Load(), "ops in flight at the signal were finished and answered")

	out := p.output()
	front := regexp.MustCompile(`front end: (\d+) ops`).FindStringSubmatch(out)
	dev := regexp.MustCompile(`device server: (\d+) ops, (\d+) timed, 0 untimed, 0 invalid`).FindStringSubmatch(out)
	require.NotNil(t, front, "statistics printed:\n%s", out)
	require.NotNil(t, dev, "statistics printed:\n%s", out)
	fops, _ := strconv.ParseInt(front[1], 10, 64)
	dops, _ := strconv.ParseInt(dev[1], 10, 64)
	assert.Equal(t, answered.Load(), fops, "every op the front end answered reached a client")
	assert.Equal(t, answered.Load(), dops, "every op computed was answered")
	assert.Contains(t, out, fmt.Sprintf("GEMM requests: %d\n", answered.Load()))
}
