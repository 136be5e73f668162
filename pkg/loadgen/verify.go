package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Verification.
const (
	// unitRoundoff is float32's unit roundoff, 2⁻²⁴.
	unitRoundoff = 1.0 / (1 << 24)
	// toleranceFactor scales the classic worst-case bound of a float32 dot product; see
	// newReference.
	toleranceFactor = 2
	// MaxVerifyMACs bounds M·N·K when Verify is on: each connection computes its float64
	// reference once, in plain Go (about 1 ns per multiply-add).
	MaxVerifyMACs = 1 << 27
)

// randomMatrix returns n values uniform in [-1, 1) from the deterministic stream seed.
func randomMatrix(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(2*r.Float64() - 1)
	}
	return v
}

// reference is the float64 product of one connection's fixed A and B, with a tolerance
// per element.
type reference struct {
	want, tol []float64
}

// newReference computes C = A·B in float64 and, per element, the tolerance
//
//	tol[i,j] = 2·(K+1)·2⁻²⁴·Σ_p |A[i,p]·B[p,j]|
//
// that is twice the classic worst-case error bound of a float32 dot product of length K
// (K roundings of the sum, one of each product, one of the stored result; any summation
// order or FMA use stays within it). A correct server is never flagged; a wrong element,
// a swapped operand or a transposed result is, since they differ by far more.
func newReference(m, n, k int, a, b []float32) *reference {
	r := &reference{want: make([]float64, m*n), tol: make([]float64, m*n)}
	scale := toleranceFactor * float64(k+1) * unitRoundoff
	for i := range m {
		want, tol := r.want[i*n:(i+1)*n], r.tol[i*n:(i+1)*n]
		for p := range k {
			x := float64(a[i*k+p])
			row := b[p*n : (p+1)*n]
			for j, y := range row {
				prod := x * float64(y)
				want[j] += prod
				tol[j] += math.Abs(prod)
			}
		}
		for j := range tol {
			tol[j] *= scale
		}
	}
	return r
}

// check returns "" if every element of c is within tolerance of the reference, else where
// the first one is not.
func (r *reference) check(c []float32, n int) string {
	for i, v := range c {
		diff := math.Abs(float64(v) - r.want[i])
		if !(diff <= r.tol[i]) { // also catches NaN
			return fmt.Sprintf("C[%d,%d] = %g, want %g ± %.3g", i/n, i%n, v, r.want[i], r.tol[i])
		}
	}
	return ""
}
