package deviceserver_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/stack"
)

// timingCallers is how many goroutines ask for timings at once in the parallel benchmark
// (at least; b.SetParallelism counts in multiples of GOMAXPROCS).
const timingCallers = 64

// linkUpWait bounds the wait for the in-process link from layer 4 to layer 5.
const linkUpWait = 5 * time.Second

// benchShape is the small op of the reference client (docs/performance.md §Targets), 4×16×8.
var benchShape = []linalg.GEMMShape{{M: 4, N: 16, K: 8}}

// newTimingStack builds the in-process stack exactly as `sstemu serve` does with one
// device and returns its layer 2, once the device's link to layer 5 is up.
func newTimingStack(b *testing.B) *deviceserver.Server {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), linkUpWait)
	defer cancel()
	st, err := stack.Build(ctx, stack.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	if err := st.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	return st.Server()
}

// checkTimed fails the benchmark unless t is a real answer from the device's model.
func checkTimed(b *testing.B, t deviceserver.Timing) {
	if !t.Timed || t.Requests != 1 || t.Cycles == 0 {
		b.Fatalf("timing %+v: want one timed request with cycles", t)
	}
}

// BenchmarkTimingLayers2to5 is a timing request per call: GEMM timing requests alone (no numerics)
// through the device server, /dev/sst0, the virtio-sst device and the SST component, from
// timingCallers goroutines at once on one device. Reports req/s.
func BenchmarkTimingLayers2to5(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	checkTimed(b, srv.Time(ctx, benchShape)) // link up, one handle open
	timeInParallel(b, srv, benchShape)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// timeInParallel times shapes from timingCallers goroutines at once for b.N calls in all,
// failing unless every answer is timed with one request per shape.
func timeInParallel(b *testing.B, srv *deviceserver.Server, shapes []linalg.GEMMShape) {
	ctx := context.Background()
	b.ReportAllocs()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((timingCallers + procs - 1) / procs)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if t := srv.Time(ctx, shapes); !t.Timed || t.Requests != len(shapes) {
				b.Errorf("timing %+v: want %d timed requests (%v)", t, len(shapes), t.UntimedErr)
				return
			}
		}
	})
}

// BenchmarkTimingLayers2to5Serial is the same with one caller: the latency of one timing
// request through the four layers.
func BenchmarkTimingLayers2to5Serial(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	checkTimed(b, srv.Time(ctx, benchShape))
	b.ReportAllocs()
	for b.Loop() {
		if t := srv.Time(ctx, benchShape); !t.Timed {
			b.Fatalf("untimed: %s", t.UntimedErr)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// frameGEMMs is how many GEMMs one TIME frame carries in BenchmarkTimingFrame1000.
const frameGEMMs = 1000

// BenchmarkTimingFrame1000 is target (6): timing-only frames of frameGEMMs GEMMs of
// distinct shapes (no two equal consecutive ones, so nothing is coalesced: every GEMM is
// its own request through layers 3–5), from timingCallers goroutines at once on one
// device. Reports GEMMs timed per second.
func BenchmarkTimingFrame1000(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	frame := make([]linalg.GEMMShape, frameGEMMs)
	for i := range frame {
		frame[i] = linalg.GEMMShape{M: 1 + i, N: 64, K: 64}
	}
	checkTimed(b, srv.Time(ctx, benchShape))
	timeInParallel(b, srv, frame)
	b.ReportMetric(float64(b.N)*frameGEMMs/b.Elapsed().Seconds(), "gemms/s")
}

// BenchmarkTimeEntries1000 is target (6) as a TIME op runs it: one client's frames of
// frameGEMMs entries of one GEMM each, all of distinct shapes, through TimeEntries (what
// layer 1 calls for a TIME frame) on the stack serve builds, one frame after the other.
// Reports GEMMs timed per second.
func BenchmarkTimeEntries1000(b *testing.B) {
	srv := newTimingStack(b)
	ctx := context.Background()
	entries := make([][]linalg.GEMMBatch, frameGEMMs)
	for i := range entries {
		entries[i] = []linalg.GEMMBatch{{Shape: linalg.GEMMShape{M: 1 + i, N: 64, K: 64}, Count: 1}}
	}
	checkTimed(b, srv.Time(ctx, benchShape))
	b.ReportAllocs()
	for b.Loop() {
		_, out := srv.TimeEntries(ctx, entries)
		for i, t := range out {
			if !t.Timed || t.Requests != 1 || t.Cycles == 0 {
				b.Fatalf("entry %d: timing %+v: want one timed request with cycles", i, t)
			}
		}
	}
	b.ReportMetric(float64(b.N)*frameGEMMs/b.Elapsed().Seconds(), "gemms/s")
}
