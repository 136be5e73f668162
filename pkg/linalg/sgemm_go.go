package linalg

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// goBackendName names the pure-Go Sgemm implementation.
const goBackendName = "go (gonum blas/gonum Sgemm/Sgemv)"

// sgemmGo computes c = a·b in pure Go with gonum's BLAS; the slices hold exactly m·k, k·n
// and m·n elements and all dimensions are ≥ 1. It is compiled into every build so that the
// OpenBLAS backend can hand it dimensions beyond 32 bits and tests can compare the two.
func sgemmGo(m, n, k int, a, b, c []float32) {
	var impl gonum.Implementation
	switch {
	case m == 1:
		impl.Sgemv(blas.Trans, k, n, 1, b, n, a, 1, 0, c, 1)
	case n == 1:
		impl.Sgemv(blas.NoTrans, m, k, 1, a, k, b, 1, 0, c, 1)
	default:
		impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, b, n, 0, c, n)
	}
}
