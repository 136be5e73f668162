package sstfuse_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/stack"
)

// Benchmarks of one GEMM timing round trip (write + read of a 4×16×8 GEMM request) on
// /dev/sst0 of the in-process layers 3–5: from another process through DIR/sst0, and
// through the in-process file handle. Each reports the p50 of its round trips:
//
//	go test -run '^$' -bench 'RoundTrip' -benchtime 20000x -count 5 ./pkg/sstfuse

// BenchmarkMountRoundTrip runs b.N round trips in the C driver client, another process,
// through DIR/sst0.
func BenchmarkMountRoundTrip(b *testing.B) {
	bin := buildC(b)
	mnt, _ := mounted(b, stack.Options{})
	m := mnt.Path(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	b.ResetTimer()
	out, err := exec.CommandContext(ctx, bin, "bench", m, fmt.Sprint(b.N)).CombinedOutput()
	b.StopTimer()
	require.NoError(b, err, "%s", out)
	var p50, p99 float64
	_, err = fmt.Sscanf(string(out), "p50_ns %g p99_ns %g", &p50, &p99)
	require.NoError(b, err, "%s", out)
	b.ReportMetric(p50, "p50-ns")
	b.ReportMetric(p99, "p99-ns")
}

// BenchmarkFileRoundTrip is the same through the in-process handle (sstdev.File), as
// layer 2 times its ops.
func BenchmarkFileRoundTrip(b *testing.B) {
	st, err := stack.Build(context.Background(), stack.Options{})
	require.NoError(b, err)
	defer st.Close()
	f, err := st.Devices().All()[0].Open()
	require.NoError(b, err)
	defer f.Close()
	req := make([]byte, protocol.RequestSize)
	r := protocol.Request{Type: protocol.ReqGEMM}
	r.SetGEMM(protocol.GEMM{M: 4, N: 16, K: 8, DtypeSize: 4})
	require.NoError(b, r.Encode(req))
	resp := make([]byte, protocol.ResponseSize)
	ns := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		begin := time.Now()
		if _, err := f.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := f.Read(resp); err != nil {
			b.Fatal(err)
		}
		ns[i] = time.Since(begin)
	}
	b.StopTimer()
	slices.Sort(ns)
	b.ReportMetric(float64(ns[(b.N-1)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(ns[(b.N-1)*99/100].Nanoseconds()), "p99-ns")
}
