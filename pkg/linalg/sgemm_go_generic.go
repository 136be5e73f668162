//go:build !amd64 || noasm

package linalg

// gemmGoName names gemmGo on this architecture.
const gemmGoName = "cache-blocked 2×4 register kernel"

// gemmGo is the pure-Go GEMM used where gonum has no assembly (riscv64, arm64, …, or
// amd64 with the noasm tag): the blocked kernel, several times faster than gonum's plain-Go
// loops (measured with -tags noasm, docs/gemm.md).
func gemmGo(m, n, k int, a, b, c []float32) {
	gemmBlocked(m, n, k, a, b, c)
}
