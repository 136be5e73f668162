package linalg

import (
	"fmt"
	"testing"
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
			x, y, c := benchFloats(b, s.M*s.K), benchFloats(b, s.K*s.N), benchFloats(b, s.M*s.N)
			fillRand(1, x)
			fillRand(2, y)
			b.ResetTimer()
			for b.Loop() {
				fn(s.M, s.N, s.K, x, y, c)
			}
			b.ReportMetric(s.FLOPs()*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
		})
	}
}
