//go:build amd64 && !noasm

package linalg

// gemmGoName names gemmGo on this architecture.
//
//lint:ignore U1000 goBackendName uses it in the pure-Go builds (noopenblas or no cgo).
const gemmGoName = "gonum Sgemm with SSE assembly"

// gemmGo is the pure-Go GEMM used on amd64: gonum's, whose SSE assembly inner loops beat
// the scalar blocked kernel here (measured, docs/gemm.md).
func gemmGo(m, n, k int, a, b, c []float32) {
	gemmGonum(m, n, k, a, b, c)
}
