package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// SSTRequest and SSTResponse layout, written out from docs/sst-protocol.md rather than taken from
// pkg/protocol, so that the fake checks the stack against the document.
const (
	sstRequestSize  = 4104
	sstResponseSize = 4112
	sstTypeGEMM     = 8
	sstStatusOK     = 0
)

// fakeCycles is the fake SST's timing of an M×N×K GEMM: a formula no real model uses, so
// that a cycle count seen in sstemu can only have come from the fake.
func fakeCycles(m, n, k uint64) uint64 { return m*n*k + 1000 }

// fakeSST is a stand-in for the SST component on a Unix socket: it answers every GEMM
// request with fakeCycles, in request order, each one delay after it arrived.
type fakeSST struct {
	t        *testing.T
	ln       net.Listener
	delay    atomic.Int64 // time.Duration applied to requests arriving from now on
	received atomic.Int64
	answered atomic.Int64
	maxOut   atomic.Int64 // most requests received and not yet answered at once
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

// startFakeSST listens on path and serves every connection until the test ends.
func startFakeSST(t *testing.T, path string, delay time.Duration) *fakeSST {
	t.Helper()
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	f := &fakeSST{t: t, ln: ln}
	f.delay.Store(int64(delay))
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

func (f *fakeSST) setDelay(d time.Duration) { f.delay.Store(int64(d)) }

func (f *fakeSST) close() {
	_ = f.ln.Close()
	f.mu.Lock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func (f *fakeSST) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		f.wg.Add(1)
		go f.serve(c)
	}
}

// pending is one request waiting for its answer time.
type pending struct {
	due  time.Time
	resp [sstResponseSize]byte
}

// serve reads requests and hands them, answered, to a writer that sends each at its due
// time, so several requests can be in flight on one connection, as with the real SST.
func (f *fakeSST) serve(c net.Conn) {
	defer f.wg.Done()
	queue := make(chan *pending, 1024)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for p := range queue {
			time.Sleep(time.Until(p.due))
			f.answered.Add(1) // before the write: the next request may follow it at once
			if _, err := c.Write(p.resp[:]); err != nil {
				return
			}
		}
	}()
	defer close(queue)
	var req [sstRequestSize]byte
	for {
		if _, err := io.ReadFull(c, req[:]); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				f.t.Logf("fake SST: %v", err)
			}
			return
		}
		out := f.received.Add(1) - f.answered.Load()
		for m := f.maxOut.Load(); out > m && !f.maxOut.CompareAndSwap(m, out); m = f.maxOut.Load() {
		}
		p := &pending{due: time.Now().Add(time.Duration(f.delay.Load()))}
		le := binary.LittleEndian
		le.PutUint32(p.resp[0:], sstStatusOK)
		copy(p.resp[8:24], req[8:24]) // request_id, user_data
		if le.Uint32(req[0:]) == sstTypeGEMM {
			m, n, k := uint64(le.Uint32(req[24:])), uint64(le.Uint32(req[28:])), uint64(le.Uint32(req[32:]))
			cycles := fakeCycles(m, n, k)
			le.PutUint64(p.resp[24:], cycles) // result
			le.PutUint64(p.resp[32:], cycles) // cycles
			le.PutUint64(p.resp[40:], cycles) // compute_cycles
		}
		queue <- p
	}
}

// slowShape is one op of the slow-SST test with the cycles the fake gives it.
type slowShape struct{ m, n, k int }

// TestSlowSST puts sstemu serve in front of a fake SST that answers after 600 ms while
// --device-timeout is 200 ms: each op is answered right and untimed after ≈ 200 ms, the
// late answers are reclaimed (the device's slots all free again, nothing in flight), and
// once the SST answers at once the ops are timed again with exactly the fake's cycles.
func TestSlowSST(t *testing.T) {
	const (
		deviceTimeout = 200 * time.Millisecond
		slowDelay     = 600 * time.Millisecond
		slowConns     = 4
		slowOpsEach   = 2
	)
	sock := filepath.Join(t.TempDir(), "fake.sock")
	fake := startFakeSST(t, sock, slowDelay)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--sst-socket", sock,
		"--device-timeout", deviceTimeout.String(), "--log-level", "debug")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	p.waitFor(10*time.Second, "the link to the fake SST", func(m map[string]any) bool { return m["layer"] == "virtiodev" && m["message"] == "connected to SST" })

	var (
		mu               sync.Mutex
		fastest, slowest = time.Hour, time.Duration(0)
	)
	wait := goConns(t, addr, slowConns, 600, time.Minute, func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int) {
		for j := 0; j < slowOpsEach; j++ {
			m, n, k := smallShape(r)
			took, err := randomGEMM(ctx, c, r, m, n, k)
			assert.NoError(t, err)
			mu.Lock()
			fastest, slowest = min(fastest, took), max(slowest, took)
			mu.Unlock()
			assert.GreaterOrEqual(t, took, deviceTimeout, "answered once the device timed out")
			assert.Less(t, took, deviceTimeout+300*time.Millisecond, "answered soon after the device timed out, not when the SST answered")
		}
	})
	wait()
	t.Logf("slow SST: ops answered untimed in %v … %v (device timeout %v, SST delay %v)",
		fastest.Round(time.Millisecond), slowest.Round(time.Millisecond), deviceTimeout, slowDelay)
	const slowOps = slowConns * slowOpsEach
	s := mustStats(t, httpAddr)
	assert.Equal(t, uint64(slowOps), s.DeviceServer.Untimed, "every slow op untimed")
	assert.Zero(t, s.DeviceServer.Timed)
	assert.Equal(t, int64(slowOps), s.CharDevices[0].Timeouts, "/dev/sst0 timeouts")
	untimed := p.waitFor(5*time.Second, "an untimed op line", func(m map[string]any) bool { return isOp(m) && m["untimed"] != nil })
	assert.Equal(t, "timeout", untimed["untimed"])
	assert.Contains(t, untimed["error"], "timed out")
	assert.Equal(t, uint64(slowOps), s.DeviceServer.UntimedByCause["timeout"], "every slow op untimed for the driver's timeout")

	// The late answers come back and their slots are reclaimed.
	s = eventuallyStats(t, httpAddr, 5*time.Second, "the late answers reclaimed", func(s stats) bool {
		d := s.CharDevices[0]
		return d.LateAnswers == slowOps && d.FreeSlots == 64 && d.InFlight == 0
	})
	assert.Zero(t, s.CharDevices[0].Abandoned)
	assert.Equal(t, int64(slowOps), fake.answered.Load())

	// A fast SST times ops again, with exactly its cycles.
	fake.setDelay(0)
	c := dial(t, addr, false)
	r := rand.New(rand.NewPCG(7, 7))
	shapes := []slowShape{{1, 1, 1}, {4, 16, 8}, {3, 5, 7}, {17, 1, 9}}
	var want uint64
	for _, sh := range shapes {
		took, err := randomGEMM(withTimeout(t, 10*time.Second), c, r, sh.m, sh.n, sh.k)
		require.NoError(t, err)
		assert.Less(t, took, deviceTimeout, "a fast SST's op is not held to the timeout")
		want += fakeCycles(uint64(sh.m), uint64(sh.n), uint64(sh.k))
	}
	s = mustStats(t, httpAddr)
	assert.Equal(t, uint64(len(shapes)), s.DeviceServer.Timed, "timed again")
	assert.Equal(t, want, s.DeviceServer.Cycles, "the fake SST's cycles, summed")
	assert.Equal(t, uint64(slowOps), s.DeviceServer.Untimed, "no more untimed ops")
	l := p.waitFor(5*time.Second, "the 4x16x8 op", func(m map[string]any) bool {
		shape, _ := m["shape"].([]any)
		return isOp(m) && m["untimed"] == nil && len(shape) == 2 && shape[0] == 4.0 && shape[1] == 16.0
	})
	assert.Equal(t, float64(fakeCycles(4, 16, 8)), l["cycles"])
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
}

// TestMaxInflight checks --max-inflight (the old name of --max-device-handles) from the
// SST's side: with 8 clients at once and a bound of 2, the fake SST never holds more than
// 2 requests, and every op is still timed.
func TestMaxInflight(t *testing.T) {
	const (
		bound   = 2
		clients = 8
		each    = 3
	)
	sock := filepath.Join(t.TempDir(), "fake.sock")
	fake := startFakeSST(t, sock, 50*time.Millisecond)
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--sst-socket", sock,
		"--max-inflight", "2")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	p.waitFor(10*time.Second, "the link to the fake SST", func(m map[string]any) bool { return m["layer"] == "virtiodev" && m["message"] == "connected to SST" })
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			c, err := loadgen.Dial(ctx, addr, loadgen.ClientOptions{})
			if !assert.NoError(t, err) {
				return
			}
			defer c.Close()
			r := rand.New(rand.NewPCG(uint64(i), 2))
			for j := 0; j < each; j++ {
				m, n, k := smallShape(r)
				_, err := randomGEMM(ctx, c, r, m, n, k)
				assert.NoError(t, err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(bound), fake.maxOut.Load(), "requests held by the SST at once")
	s := mustStats(t, httpAddr)
	assert.Equal(t, uint64(clients*each), s.DeviceServer.Timed)
	assert.Zero(t, s.DeviceServer.Untimed)
}
