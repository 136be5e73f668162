package loadgen

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// The timing issue's two cost targets, against running servers (skipped without them):
//
//	sstemu serve --listen 127.0.0.1:9998 &
//	sstemu serve --listen 127.0.0.1:9997 --trace /tmp/t.json --op-log /tmp/ops.jsonl &
//	SSTEMU_BENCH_ADDR=127.0.0.1:9998 SSTEMU_BENCH_ADDR_RECORDED=127.0.0.1:9997 \
//	    go test -run '^$' -bench 'Trailer|Recorded' -benchtime 2s -count 5 ./pkg/loadgen

// benchRecordedEnv names a server run with --trace and --op-log, compared with
// SSTEMU_BENCH_ADDR's.
const benchRecordedEnv = "SSTEMU_BENCH_ADDR_RECORDED"

// BenchmarkTrailer: the 4×16×8 op on one server, without and with "timing": true (the
// client reading the trailer), one op of each per iteration, as `sstemu bench` and
// `sstemu bench --timing` send them. The paired ratio of p50s is the trailer's cost.
func BenchmarkTrailer(b *testing.B) {
	addr := os.Getenv(benchAddrEnv)
	if addr == "" {
		b.Skip(benchAddrEnv + " names no server")
	}
	const m, n, k = 4, 16, 8
	interleave(b, 32, true,
		optionsTarget(b, "plain", addr, ClientOptions{}, m, n, k),
		optionsTarget(b, "timing", addr, ClientOptions{Timing: true}, m, n, k))
}

// BenchmarkRecorded32: 32 connections of 4×16×8 ops against the plain server and the one
// writing a trace and an op log, in turn, as BenchmarkConns32 runs them; the ratio of ops/s
// is the cost of --trace and --op-log together. The paired ratio is the median over
// iterations of the two runs' ratio, which cancels load that drifts between iterations.
func BenchmarkRecorded32(b *testing.B) {
	plain, recorded := os.Getenv(benchAddrEnv), os.Getenv(benchRecordedEnv)
	if plain == "" || recorded == "" {
		b.Skip(benchAddrEnv + " and " + benchRecordedEnv + " must name servers")
	}
	const conns, opsPerRun = 32, 3200
	addrs := [2]string{plain, recorded}
	var ops [2]int64
	var elapsed [2]time.Duration
	var ratios []float64
	for i := 0; b.Loop(); i++ {
		var rates [2]float64
		for j := range addrs {
			s := (i + j) % 2
			rep, err := Run(context.Background(), Config{Addr: addrs[s], M: 4, N: 16, K: 8, Conns: conns, Ops: opsPerRun, Warmup: 2})
			if err != nil || rep.Errors > 0 {
				b.Fatalf("%s: %v %s", addrs[s], err, rep.FirstError)
			}
			ops[s] += rep.Ops
			elapsed[s] += rep.Elapsed
			rates[s] = rep.OpsPerSec
		}
		ratios = append(ratios, rates[1]/rates[0])
	}
	b.StopTimer()
	slices.Sort(ratios)
	b.ReportMetric(ratios[(len(ratios)-1)/2], "recorded/plain-paired")
	rate := func(s int) float64 { return float64(ops[s]) / elapsed[s].Seconds() }
	b.ReportMetric(rate(0), "plain-ops/s")
	b.ReportMetric(rate(1), "recorded-ops/s")
	b.ReportMetric(rate(1)/rate(0), "recorded/plain-ops/s")
}
