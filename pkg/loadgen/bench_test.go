package loadgen

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sstemu/sstemu/pkg/linalg"
)

// The benchmarks compare sstemu against the floor inside ONE run: every b.Loop iteration
// does one op on each target in turn (rotating the order), so all targets see the same
// machine state, and each reports its own p50 plus its ratio to the first target. Run them
// short, several times, and quote medians:
//
//	go test -run '^$' -bench . -benchtime 2s -count 5 ./pkg/loadgen
//
// "tcpfront" is layer 1 with the simplest layer 2 (linalgExecutor), in this process like
// "floor". If SSTEMU_BENCH_ADDR names a running server (e.g. `sstemu serve --listen
// 127.0.0.1:9998`), it is measured too, as "sstemu", against "floor-proc": the floor in a
// child process, so that both sides of that ratio cross a process boundary.

const benchAddrEnv = "SSTEMU_BENCH_ADDR"

// benchTarget is one thing measured: an op and its latency samples.
type benchTarget struct {
	name    string
	op      func() error
	base    *benchTarget // its p50 is reported as a ratio to base's; nil: to the first target
	samples []time.Duration
}

// clientTarget dials addr and returns a target issuing m×n×k GEMMs on it, each request in
// five pieces if pieces.
func clientTarget(b *testing.B, name, addr string, pieces bool, m, n, k int) *benchTarget {
	b.Helper()
	return optionsTarget(b, name, addr, ClientOptions{Pieces: pieces}, m, n, k)
}

// optionsTarget dials addr with opts and returns a target issuing m×n×k GEMMs on it.
func optionsTarget(b *testing.B, name, addr string, opts ClientOptions, m, n, k int) *benchTarget {
	b.Helper()
	c, err := Dial(context.Background(), addr, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	a, bm, out := randomMatrix(r, m*k), randomMatrix(r, k*n), make([]float32, m*n)
	ctx := context.Background()
	return &benchTarget{name: name, op: func() error { return c.GEMM(ctx, m, n, k, a, bm, out) }}
}

// servedTargets are the floor and tcpfront, and if SSTEMU_BENCH_ADDR is set, the floor in
// a child process and the real binary.
func servedTargets(b *testing.B, pieces bool, m, n, k int) []*benchTarget {
	floor := clientTarget(b, "floor", startFloor(b), pieces, m, n, k)
	ts := []*benchTarget{floor, clientTarget(b, "tcpfront", startTCPFront(b, linalgExecutor{}), pieces, m, n, k)}
	if addr := os.Getenv(benchAddrEnv); addr != "" {
		proc := clientTarget(b, "floor-proc", startFloorProcess(b), pieces, m, n, k)
		proc.base = floor
		real := clientTarget(b, "sstemu", addr, pieces, m, n, k)
		real.base = proc
		ts = append(ts, proc, real)
	}
	return ts
}

// interleave warms every target up, then runs one op of each per iteration and reports
// each target's p50 in µs and the ratio of its p50 to its base's (targets[0] if base is
// nil). With paired, it also reports the median over iterations of the ratio of the two
// ops of the same iteration, which cancels load that drifts slowly from iteration to
// iteration (other processes on a shared machine).
func interleave(b *testing.B, warmup int, paired bool, targets ...*benchTarget) {
	for _, t := range targets {
		for range warmup {
			if err := t.op(); err != nil {
				b.Fatalf("%s warm-up: %v", t.name, err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range targets {
			t := targets[(i+j)%len(targets)]
			t0 := time.Now()
			if err := t.op(); err != nil {
				b.Fatalf("%s: %v", t.name, err)
			}
			t.samples = append(t.samples, time.Since(t0))
		}
	}
	b.StopTimer()
	p50 := make(map[*benchTarget]time.Duration, len(targets))
	for _, t := range targets {
		p50[t] = Summarize(t.samples).P50
		b.ReportMetric(float64(p50[t])/float64(time.Microsecond), t.name+"-p50-us")
	}
	for _, t := range targets[1:] {
		base := t.base
		if base == nil {
			base = targets[0]
		}
		b.ReportMetric(float64(p50[t])/float64(p50[base]), t.name+"/"+base.name+"-p50")
		if paired {
			ratios := make([]float64, len(t.samples))
			for i := range ratios {
				ratios[i] = float64(t.samples[i]) / float64(base.samples[i])
			}
			slices.Sort(ratios)
			b.ReportMetric(ratios[(len(ratios)-1)/2], t.name+"/"+base.name+"-paired")
		}
	}
}

// BenchmarkSmallOp is target (1): the 4×16×8 op of the reference client, one connection,
// one write per op; p50 of sstemu against the floor.
func BenchmarkSmallOp(b *testing.B) {
	interleave(b, 32, false, servedTargets(b, false, 4, 16, 8)...)
}

// BenchmarkPieces is target (2): the same op sent as the reference client sends it (five
// writes, Nagle on) against one write, on each server. The floor does not re-arm quick ACKs,
// so its five-piece ops show the ≈40 ms stall sstemu avoids.
func BenchmarkPieces(b *testing.B) {
	const m, n, k = 4, 16, 8
	b.Run("tcpfront", func(b *testing.B) {
		addr := startTCPFront(b, linalgExecutor{})
		interleave(b, 32, false, clientTarget(b, "one-write", addr, false, m, n, k), clientTarget(b, "five-piece", addr, true, m, n, k))
	})
	if addr := os.Getenv(benchAddrEnv); addr != "" {
		b.Run("sstemu", func(b *testing.B) {
			interleave(b, 32, false, clientTarget(b, "one-write", addr, false, m, n, k), clientTarget(b, "five-piece", addr, true, m, n, k))
		})
	}
	b.Run("floor", func(b *testing.B) {
		addr := startFloor(b)
		interleave(b, 32, false, clientTarget(b, "one-write", addr, false, m, n, k), clientTarget(b, "five-piece", addr, true, m, n, k))
	})
}

// BenchmarkConns32 is target (3): 32 connections of small ops, one write each; each
// iteration runs Config.Ops ops on every server in turn. Reports ops/s per server (ops over
// measured time, summed over iterations), the median per-run p50, and the ratio of ops/s.
func BenchmarkConns32(b *testing.B) {
	const conns, opsPerRun = 32, 3200
	type server struct {
		name    string
		addr    string
		ops     int64
		elapsed time.Duration
		p50s    []time.Duration
		base    *server // ops/s reported as a ratio to base's
	}
	floor := &server{name: "floor", addr: startFloor(b)}
	servers := []*server{floor, {name: "tcpfront", addr: startTCPFront(b, linalgExecutor{}), base: floor}}
	if addr := os.Getenv(benchAddrEnv); addr != "" {
		proc := &server{name: "floor-proc", addr: startFloorProcess(b), base: floor}
		servers = append(servers, proc, &server{name: "sstemu", addr: addr, base: proc})
	}
	for i := 0; b.Loop(); i++ {
		for j := range servers {
			s := servers[(i+j)%len(servers)]
			rep, err := Run(context.Background(), Config{Addr: s.addr, M: 4, N: 16, K: 8, Conns: conns, Ops: opsPerRun, Warmup: 2})
			if err != nil || rep.Errors > 0 {
				b.Fatalf("%s: %v %s", s.name, err, rep.FirstError)
			}
			s.ops += rep.Ops
			s.elapsed += rep.Elapsed
			s.p50s = append(s.p50s, rep.Latency.P50)
		}
	}
	b.StopTimer()
	rate := func(s *server) float64 { return float64(s.ops) / s.elapsed.Seconds() }
	for _, s := range servers {
		b.ReportMetric(rate(s), s.name+"-ops/s")
		b.ReportMetric(float64(Summarize(s.p50s).P50)/float64(time.Microsecond), s.name+"-p50-us")
		if s.base != nil {
			b.ReportMetric(rate(s)/rate(s.base), s.name+"/"+s.base.name+"-ops/s")
		}
	}
}

// BenchmarkGEMM1024 is target (5): a 1024³ GEMM end to end (encode, send 8 MiB, decode,
// compute, answer 4 MiB, decode) through each server, against its arithmetic alone
// (linalg.Sgemm on the same operands, in this process).
func BenchmarkGEMM1024(b *testing.B) {
	const m, n, k = 1024, 1024, 1024
	r := rand.New(rand.NewPCG(1, 2))
	a, bm, out := randomMatrix(r, m*k), randomMatrix(r, k*n), make([]float32, m*n)
	arith := &benchTarget{name: "arithmetic", op: func() error { linalg.Sgemm(m, n, k, a, bm, out); return nil }}
	targets := append([]*benchTarget{arith}, servedTargets(b, false, m, n, k)...)
	for _, t := range targets {
		t.base = nil // every ratio is to the arithmetic
	}
	interleave(b, 1, true, targets...)
}
