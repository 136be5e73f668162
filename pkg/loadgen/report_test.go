package loadgen

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

// TestPercentileHandWorked checks nearest rank, rank = ⌈p/100·n⌉, on samples worked out by
// hand.
func TestPercentileHandWorked(t *testing.T) {
	oneToTen := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	hundred := make([]time.Duration, 200)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	cases := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample p0", ms(7), 0, 7 * time.Millisecond},
		{"one sample p99", ms(7), 99, 7 * time.Millisecond},
		{"1..10 p0 is the minimum", oneToTen, 0, 1 * time.Millisecond},
		{"1..10 p10: rank 1", oneToTen, 10, 1 * time.Millisecond},
		{"1..10 p11: rank ⌈1.1⌉ = 2", oneToTen, 11, 2 * time.Millisecond},
		{"1..10 p50: rank 5", oneToTen, 50, 5 * time.Millisecond},
		{"1..10 p90: rank 9", oneToTen, 90, 9 * time.Millisecond},
		{"1..10 p99: rank ⌈9.9⌉ = 10", oneToTen, 99, 10 * time.Millisecond},
		{"1..10 p100", oneToTen, 100, 10 * time.Millisecond},
		{"1..200 p99: rank 198", hundred, 99, 198 * time.Millisecond},
		{"1..200 p50: rank 100", hundred, 50, 100 * time.Millisecond},
		{"1..200 p99.9: rank ⌈199.8⌉ = 200", hundred, 99.9, 200 * time.Millisecond},
		{"ties", ms(1, 1, 1, 5), 75, 1 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Percentile(tc.sorted, tc.p))
		})
	}
}

func TestSummarize(t *testing.T) {
	cases := []struct {
		name    string
		samples []time.Duration
		want    Latency
	}{
		{"empty", nil, Latency{}},
		{"unsorted four", ms(30, 10, 40, 20), Latency{Samples: 4, Min: 10 * time.Millisecond,
			Mean: 25 * time.Millisecond, P50: 20 * time.Millisecond, P90: 40 * time.Millisecond,
			P99: 40 * time.Millisecond, Max: 40 * time.Millisecond}},
		// 19 fast ops of 1 ms and one of 101 ms: mean 6 ms, p90 rank 18 → 1 ms, p99 rank 20.
		{"one outlier in twenty", append(ms(101), ms(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1)...),
			Latency{Samples: 20, Min: time.Millisecond, Mean: 6 * time.Millisecond, P50: time.Millisecond,
				P90: time.Millisecond, P99: 101 * time.Millisecond, Max: 101 * time.Millisecond}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Summarize(tc.samples))
		})
	}
}

func TestReportString(t *testing.T) {
	r := &Report{
		Config: Config{Addr: "127.0.0.1:9999", M: 4, N: 16, K: 8, Conns: 2, Pieces: true, Verify: true},
		Ops:    1000, Errors: 1, Mismatches: 2, Elapsed: 2 * time.Second, OpsPerSec: 500,
		Latency: Latency{Samples: 1000, Min: 900 * time.Microsecond, Mean: 2 * time.Millisecond,
			P50: 1500 * time.Microsecond, P90: 3 * time.Millisecond, P99: 41 * time.Millisecond, Max: 1500 * time.Millisecond},
		FirstError: "connection 1: boom", FirstMismatch: "connection 0: C[0,1] = 3, want 4 ± 1e-06",
	}
	var b strings.Builder
	n, err := r.WriteTo(&b)
	require.NoError(t, err)
	assert.Equal(t, int64(b.Len()), n)
	assert.Equal(t, r.String(), b.String())
	for _, want := range []string{
		"127.0.0.1:9999", "GEMM 4×16×8", "conns 2", "five pieces, Nagle on", "verify on",
		"1000 in 2.000s = 500.0 ops/s", "errors 1", "mismatches 2",
		"p50 1.50ms", "p90 3.00ms", "p99 41.00ms", "max 1.500s", "min 900.0µs", "1000 samples",
		"first error     connection 1: boom", "first mismatch  connection 0: C[0,1]",
	} {
		assert.Contains(t, b.String(), want)
	}
}
