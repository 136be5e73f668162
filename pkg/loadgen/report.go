package loadgen

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Latency summarises the latencies of a run's successful ops. Percentiles use the
// nearest-rank definition on the sorted samples: the p-th percentile of n samples is the
// ⌈p/100·n⌉-th smallest (the smallest for p = 0), so it is always an observed latency and
// exact (no histogram buckets, no interpolation).
type Latency struct {
	Samples                       int
	Min, Mean, P50, P90, P99, Max time.Duration
}

// Percentile returns the nearest-rank p-th percentile (0 ≤ p ≤ 100) of sorted, which must
// be in ascending order; 0 if it is empty.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// Summarize sorts samples in place and summarises them.
func Summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum float64
	for _, d := range samples {
		sum += float64(d)
	}
	return Latency{
		Samples: len(samples),
		Min:     samples[0],
		Mean:    time.Duration(sum / float64(len(samples))),
		P50:     Percentile(samples, 50),
		P90:     Percentile(samples, 90),
		P99:     Percentile(samples, 99),
		Max:     samples[len(samples)-1],
	}
}

// Report is the outcome of Run.
type Report struct {
	Config Config // as run, with defaults filled in

	Ops        int64 // measured ops answered (with or without a mismatch)
	Errors     int64 // failed ops and failed redials during the measured window
	Mismatches int64 // answered ops whose result is outside the tolerance (Verify only)
	Elapsed    time.Duration
	OpsPerSec  float64 // Ops / Elapsed
	Latency    Latency // of the Ops answered

	FirstError    string // the first error, "" if none
	FirstMismatch string // where the first mismatch was, "" if none
}

// WriteTo writes the report in the CLI's human-readable form.
func (r *Report) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, r.String())
	return int64(n), err
}

// String formats the report in a few lines: target, counts and throughput, latency.
func (r *Report) String() string {
	var b strings.Builder
	mode := "one write, TCP_NODELAY"
	if r.Config.Pieces {
		mode = "five pieces, Nagle on"
	}
	verify := "off"
	if r.Config.Verify {
		verify = "on"
	}
	if r.Config.Timing {
		mode += ", timing records"
	}
	fmt.Fprintf(&b, "target     %s  GEMM %d×%d×%d  conns %d  %s  verify %s\n",
		r.Config.Addr, r.Config.M, r.Config.N, r.Config.K, r.Config.Conns, mode, verify)
	fmt.Fprintf(&b, "ops        %d in %s = %.1f ops/s  errors %d  mismatches %d\n",
		r.Ops, fmtDuration(r.Elapsed), r.OpsPerSec, r.Errors, r.Mismatches)
	l := r.Latency
	fmt.Fprintf(&b, "latency    p50 %s  p90 %s  p99 %s  max %s  (min %s, mean %s, %d samples)\n",
		fmtDuration(l.P50), fmtDuration(l.P90), fmtDuration(l.P99), fmtDuration(l.Max),
		fmtDuration(l.Min), fmtDuration(l.Mean), l.Samples)
	if r.FirstError != "" {
		fmt.Fprintf(&b, "first error     %s\n", r.FirstError)
	}
	if r.FirstMismatch != "" {
		fmt.Fprintf(&b, "first mismatch  %s\n", r.FirstMismatch)
	}
	return b.String()
}

// fmtDuration prints d with three significant figures in µs, ms or s.
func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3fs", d.Seconds())
}
