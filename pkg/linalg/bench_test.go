package linalg

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// benchShapes are the large GEMMs whose speed is compared with numpy (docs/gemm.md): square
// GEMMs, LLM-style projections at batch 32 and 128, and the M = 1 decode step.
var benchShapes = []GEMMShape{
	{M: 1024, N: 1024, K: 1024},
	{M: 2048, N: 2048, K: 2048},
	{M: 32, N: 4096, K: 4096},
	{M: 128, N: 11008, K: 4096},
	{M: 1, N: 4096, K: 4096},
}

// BenchmarkSgemm measures Sgemm (the build's backend) and reports GFLOPS.
func BenchmarkSgemm(b *testing.B) {
	benchGEMM(b, Sgemm)
}

// BenchmarkSgemmGo measures the pure-Go fallback, compiled into every build.
func BenchmarkSgemmGo(b *testing.B) {
	benchGEMM(b, sgemmGo)
}

// BenchmarkSgemmGonum measures gonum's Sgemm (SSE assembly on amd64, plain Go with
// -tags noasm) for every shape, M = 1 included: one candidate for the pure-Go fallback.
func BenchmarkSgemmGonum(b *testing.B) {
	benchGEMM(b, gemmGonum)
}

// BenchmarkSgemmBlocked measures the cache-blocked Go kernel for every shape, M = 1
// included: the other candidate.
func BenchmarkSgemmBlocked(b *testing.B) {
	benchGEMM(b, gemmBlocked)
}

func benchGEMM(b *testing.B, fn func(m, n, k int, a, b, c []float32)) {
	for _, s := range benchShapes {
		b.Run(fmt.Sprintf("%dx%dx%d", s.M, s.N, s.K), func(b *testing.B) {
			x, y, c := benchOperands(b, s)
			b.ResetTimer()
			for b.Loop() {
				fn(s.M, s.N, s.K, x, y, c)
			}
			b.ReportMetric(s.FLOPs()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}

// benchOperands returns A, B (randSlice's values for seeds 1 and 2) and C of shape s,
// allocated by benchFloats: the operands of BenchmarkSgemm and of TestSgemmWorker.
func benchOperands(tb testing.TB, s GEMMShape) (a, b, c []float32) {
	a, b, c = benchFloats(tb, s.M*s.K), benchFloats(tb, s.K*s.N), benchFloats(tb, s.M*s.N)
	fillRand(1, a)
	fillRand(2, b)
	return a, b, c
}

// sgemmWorkerEnv makes TestSgemmWorker the Go side of testdata/compare.py.
const sgemmWorkerEnv = "SSTEMU_SGEMM_WORKER"

// TestSgemmWorker serves samples of Sgemm to testdata/compare.py, which alternates them
// with numpy's (numpy_bench.py --worker) so that every pair sees the same machine load
// without a process start between them. Each stdin line "MxNxK seconds" is answered on
// stdout by "gflops G": Sgemm on that shape run back to back for at least that long, on
// operands allocated as BenchmarkSgemm's and kept per shape.
func TestSgemmWorker(t *testing.T) {
	if os.Getenv(sgemmWorkerEnv) != "1" {
		t.Skipf("testdata/compare.py's sample server; runs with %s=1", sgemmWorkerEnv)
	}
	type operands struct{ a, b, c []float32 }
	kept := map[GEMMShape]operands{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var s GEMMShape
		var seconds float64
		if _, err := fmt.Sscanf(in.Text(), "%dx%dx%d %g", &s.M, &s.N, &s.K, &seconds); err != nil {
			t.Fatalf("request %q: %v (want \"MxNxK seconds\")", in.Text(), err)
		}
		if s.M <= 0 || s.N <= 0 || s.K <= 0 || !(seconds > 0) {
			t.Fatalf("request %q: want positive dimensions and seconds", in.Text())
		}
		op, ok := kept[s]
		if !ok {
			op.a, op.b, op.c = benchOperands(t, s)
			Sgemm(s.M, s.N, s.K, op.a, op.b, op.c) // warm-up: page faults, the thread pool
			kept[s] = op
		}
		calls, start := 0, time.Now()
		for time.Since(start).Seconds() < seconds {
			Sgemm(s.M, s.N, s.K, op.a, op.b, op.c)
			calls++
		}
		fmt.Printf("gflops %.3f\n", s.FLOPs()*float64(calls)/time.Since(start).Seconds()/1e9)
	}
	if err := in.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSgemmWorkerAnswers runs TestSgemmWorker as compare.py does: a sample per request
// line, and a bad request fails the worker instead of being answered.
func TestSgemmWorkerAnswers(t *testing.T) {
	out, err := runSgemmWorker("16x8x4 0.01\n16x8x4 0.01\n1x64x32 0.01\n")
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 4, "%s", out)
	for _, l := range lines[:3] {
		var g float64
		_, err := fmt.Sscanf(l, "gflops %g", &g)
		require.NoError(t, err, "answer %q", l)
		require.Greater(t, g, 0.0, "answer %q", l)
	}
	require.Equal(t, "PASS", lines[3])

	for _, bad := range []struct{ request, want string }{
		{"16x8 0.01", `want "MxNxK seconds"`},
		{"16x-8x4 0.01", "want positive dimensions and seconds"},
		{"16x8x0 0.01", "want positive dimensions and seconds"},
		{"16x8x4 0", "want positive dimensions and seconds"},
	} {
		t.Run(bad.request, func(t *testing.T) {
			out, err := runSgemmWorker(bad.request + "\n")
			require.Error(t, err, "%s", out)
			require.NotContains(t, string(out), "gflops")
			require.Contains(t, string(out), bad.want)
		})
	}
}

// runSgemmWorker runs TestSgemmWorker in this test binary again with requests on its
// stdin, and returns what it printed.
func runSgemmWorker(requests string) ([]byte, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestSgemmWorker$", "-test.count=1")
	cmd.Env = append(os.Environ(), sgemmWorkerEnv+"=1")
	cmd.Stdin = strings.NewReader(requests)
	return cmd.CombinedOutput()
}
