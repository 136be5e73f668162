//go:build amd64 && !noasm

package linalg

// gemmGoName names gemmGo on this architecture.
const gemmGoName = "gonum Sgemm with SSE assembly"

// gemmGo is the pure-Go GEMM used on amd64: gonum's, whose SSE assembly inner loops beat
// the scalar blocked kernel here (measured, docs/gemm.md).
func gemmGo(m, n, k int, a, b, c []float32) {
	gemmGonum(m, n, k, a, b, c)
}
