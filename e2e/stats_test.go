package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/loadgen"
)

// stats is the part of `sstemu serve`'s /stats JSON the reliability tests read, with its
// snake_case keys.
type stats struct {
	Process struct {
		Goroutines     int    `json:"goroutines"`
		HeapAllocBytes uint64 `json:"heap_alloc_bytes"`
		HeapInuseBytes uint64 `json:"heap_inuse_bytes"`
	} `json:"process"`
	Front struct {
		Ops         uint64            `json:"ops"`
		OpsGEMM     uint64            `json:"ops_gemm"`
		BytesIn     uint64            `json:"bytes_in"`
		BytesOut    uint64            `json:"bytes_out"`
		TotalConns  uint64            `json:"total_conns"`
		Errors      map[string]uint64 `json:"errors"`
		ActiveConns int64             `json:"active_conns"`
		OpsInFlight int64             `json:"ops_in_flight"`
	} `json:"front"`
	DeviceServer struct {
		Ops            uint64            `json:"ops"`
		GEMM           uint64            `json:"gemm"`
		Timed          uint64            `json:"timed"`
		Untimed        uint64            `json:"untimed"`
		UntimedByCause map[string]uint64 `json:"untimed_by_cause"`
		Failed         uint64            `json:"failed"`
		TimingRequest  uint64            `json:"timing_requests"`
		Cycles         uint64            `json:"cycles"`
		// The COMPUTE fallback (issue 13).
		ComputeTimingRequests uint64   `json:"compute_timing_requests"`
		TimingModes           []string `json:"timing_modes"`
		ComputeFallbacks      uint64   `json:"compute_fallbacks"`
	} `json:"device_server"`
	CharDevices []struct {
		Writes      int64 `json:"writes"`
		Answers     int64 `json:"answers"`
		Timeouts    int64 `json:"timeouts"`
		LateAnswers int64 `json:"late_answers"`
		SlotWaits   int64 `json:"slot_waits"`
		FreeSlots   int   `json:"free_slots"`
		InFlight    int   `json:"in_flight"`
		Abandoned   int   `json:"abandoned"`
	} `json:"char_devices"`
	Virtio []struct {
		Requests  uint64 `json:"requests"`
		Responses uint64 `json:"responses"`
		Forwarded uint64 `json:"forwarded"`
		NoDevice  uint64 `json:"no_device"`
		LinkUps   uint64 `json:"link_ups"`
		LinkDowns uint64 `json:"link_downs"`
		LinkUp    bool   `json:"link_up"`
		InFlight  int64  `json:"in_flight"`
	} `json:"virtio"`
	SST *struct {
		Total    uint64   `json:"total"`
		Requests []uint64 `json:"requests"`
	} `json:"sst"`
}

// sstGEMMRequests is the index of GEMM in the SST component's per-type request counts
// (request type 8, docs/sst-protocol.md §Codes).
const sstGEMMRequests = 8

// httpClient fetches /stats on a fresh connection each time, so that no idle keep-alive
// connection adds a goroutine to the server's count.
var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// getStats fetches and decodes http://addr/stats.
func getStats(addr string) (stats, error) {
	var s stats
	resp, err := httpClient.Get("http://" + addr + "/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /stats: %s", resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// mustStats is getStats failing the test on error.
func mustStats(t *testing.T, addr string) stats {
	t.Helper()
	s, err := getStats(addr)
	require.NoError(t, err)
	return s
}

// eventuallyStats polls /stats until cond holds, failing with the last snapshot after
// timeout.
func eventuallyStats(t *testing.T, addr string, timeout time.Duration, what string, cond func(s stats) bool) stats {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, err := getStats(addr)
		if err == nil && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			js, _ := json.Marshal(s)
			t.Fatalf("within %v: %s; last /stats (err %v): %s", timeout, what, err, js)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.t.Fatalf("sstemu survived SIGKILL for 10 s")
	}
}

// gemmErr compares c with the float64 product of a and b, element by element within
// gemmTolerance: every element for results up to 4096 elements, a deterministic sample
// of 4096 for larger ones. It returns what was wrong, or nil; unlike checkGEMM it may be
// called from any goroutine.
func gemmErr(m, n, k int, a, b, c []float32) error {
	if len(c) != m*n {
		return fmt.Errorf("%dx%dx%d: %d result elements, want %d", m, n, k, len(c), m*n)
	}
	check := func(i, j int) error {
		var ref, mag float64
		for p := 0; p < k; p++ {
			x := float64(a[i*k+p]) * float64(b[p*n+j])
			ref += x
			mag += math.Abs(x)
		}
		if d := math.Abs(float64(c[i*n+j]) - ref); !(d <= gemmTolerance(mag)) {
			return fmt.Errorf("%dx%dx%d: C[%d,%d] = %g, float64 reference %g", m, n, k, i, j, c[i*n+j], ref)
		}
		return nil
	}
	if m*n <= 4096 {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				if err := check(i, j); err != nil {
					return err
				}
			}
		}
		return nil
	}
	r := rand.New(rand.NewPCG(uint64(m)*31+uint64(k), uint64(n)))
	for s := 0; s < 4096; s++ {
		if err := check(r.IntN(m), r.IntN(n)); err != nil {
			return err
		}
	}
	return nil
}

// randomGEMM issues one m×n×k GEMM of fresh random operands on c and checks its result
// against float64. It returns the op's round-trip time and any failure, and may be called
// from any goroutine.
func randomGEMM(ctx context.Context, c *loadgen.Client, r *rand.Rand, m, n, k int) (time.Duration, error) {
	a, b := randomMatrix(r, m*k), randomMatrix(r, k*n)
	out := make([]float32, m*n)
	begin := time.Now()
	err := c.GEMM(ctx, m, n, k, a, b, out)
	took := time.Since(begin)
	if err != nil {
		return took, err
	}
	return took, gemmErr(m, n, k, a, b, out)
}

// smallShape draws a small GEMM shape: 1×1×1 one time in eight, otherwise each dimension
// uniform in 1 … 17 (so odd sizes, primes and sizes just past a power of two all occur).
func smallShape(r *rand.Rand) (m, n, k int) {
	if r.IntN(8) == 0 {
		return 1, 1, 1
	}
	return 1 + r.IntN(17), 1 + r.IntN(17), 1 + r.IntN(17)
}

// goConns opens conns connections to addr at once, the odd ones sending each request in
// the reference client's five pieces, and runs body on connection i with a context of the
// given timeout and a random source seeded (i, seed). A failed dial fails the test and
// skips that body. The returned function waits until every connection has closed.
func goConns(t *testing.T, addr string, conns int, seed uint64, timeout time.Duration,
	body func(ctx context.Context, c *loadgen.Client, r *rand.Rand, i int)) (wait func()) {
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { // reports with assert: FailNow is for the test goroutine only
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			c, err := loadgen.Dial(ctx, addr, loadgen.ClientOptions{Pieces: i%2 == 1})
			if !assert.NoError(t, err) {
				return
			}
			defer c.Close()
			body(ctx, c, rand.New(rand.NewPCG(uint64(i), seed)), i)
		})
	}
	return wg.Wait
}

// goodClient issues small checked GEMMs on its own connection until stop is closed, as
// the well-behaved client that must keep being served while others misbehave. The
// returned channel yields the number of ops done and the first failure, once.
func goodClient(addr string, seed uint64, stop <-chan struct{}) <-chan goodResult {
	done := make(chan goodResult, 1)
	go func() {
		var res goodResult
		defer func() { done <- res }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		c, err := loadgen.Dial(ctx, addr, loadgen.ClientOptions{Pieces: true})
		if err != nil {
			res.err = err
			return
		}
		defer c.Close()
		r := rand.New(rand.NewPCG(seed, 99))
		for {
			select {
			case <-stop:
				return
			default:
			}
			m, n, k := smallShape(r)
			opCtx, opCancel := context.WithTimeout(ctx, 5*time.Second)
			took, err := randomGEMM(opCtx, c, r, m, n, k)
			opCancel()
			if err != nil {
				res.err = fmt.Errorf("good op %d: %w", res.ops, err)
				return
			}
			res.ops++
			res.maxLatency = max(res.maxLatency, took)
		}
	}()
	return done
}

// goodResult is what a goodClient reports when it stops.
type goodResult struct {
	ops        int
	maxLatency time.Duration
	err        error
}

// closedWithin reads from nc until the server closes it and returns how long that took
// and how many bytes came first; a reset counts as a close, a read timeout as none.
func closedWithin(nc net.Conn, limit time.Duration) (time.Duration, int64, error) {
	begin := time.Now()
	_ = nc.SetReadDeadline(begin.Add(limit))
	n, err := io.Copy(io.Discard, nc)
	took := time.Since(begin)
	if err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		err = nil
	}
	return took, n, err
}
