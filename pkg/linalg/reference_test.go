package linalg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// unitRoundoff is u = 2⁻²⁴, the unit roundoff of float32.
const unitRoundoff = 1.0 / (1 << 24)

// randSlice returns n values uniform in [-1, 1) from a fixed seed, so failures reproduce.
func randSlice(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*r.Float32() - 1
	}
	return s
}

// refGEMM is the float64 reference: for each element the exact-ish sum Σₚ a[i,p]·b[p,j]
// and the magnitude sum Σₚ |a[i,p]|·|b[p,j]| that bounds float32 rounding error.
func refGEMM(m, n, k int, a, b []float32) (ref, mag []float64) {
	ref = make([]float64, m*n)
	mag = make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, t float64
			for p := range k {
				x, y := float64(a[i*k+p]), float64(b[p*n+j])
				s += x * y
				t += math.Abs(x * y)
			}
			ref[i*n+j] = s
			mag[i*n+j] = t
		}
	}
	return ref, mag
}

// requireClose checks every element against the float64 reference with the classical
// bound for a float32 dot product of k terms computed in any order (Higham, Accuracy and
// Stability of Numerical Algorithms, §3.1): |c − ref| ≤ γₖ·Σ|a||b| with γₖ = k·u/(1 − k·u).
// It holds for OpenBLAS's blocked kernels, FMA or not, and for any summation order, so the
// test does not depend on the implementation; the float64 reference's own error (k·2⁻⁵³)
// is negligible against it. A tiny absolute floor covers denormal rounding.
func requireClose(t *testing.T, k int, got []float32, ref, mag []float64) {
	t.Helper()
	require.Len(t, got, len(ref))
	ku := float64(k) * unitRoundoff
	gamma := ku / (1 - ku)
	for i, g := range got {
		tol := gamma*mag[i] + 1e-30
		if d := math.Abs(float64(g) - ref[i]); !(d <= tol) {
			t.Fatalf("element %d: got %g, want %g (|diff| %g > tol %g)", i, g, ref[i], d, tol)
		}
	}
}
