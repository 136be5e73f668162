package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/sstemu/sstemu/pkg/linalg"
)

func TestReferenceHandWorked(t *testing.T) {
	// [[1,2],[3,4]]·[[5,6],[7,8]] = [[19,22],[43,50]]; Σ|ab| equals C here (all positive),
	// so tol = 2·(2+1)·2⁻²⁴·C.
	r := newReference(2, 2, 2, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8})
	assert.Equal(t, []float64{19, 22, 43, 50}, r.want)
	for i, c := range []float64{19, 22, 43, 50} {
		assert.InDelta(t, 6*c/(1<<24), r.tol[i], 1e-18)
	}
	assert.Empty(t, r.check([]float32{19, 22, 43, 50}, 2))
	assert.Equal(t, "C[1,0] = 44, want 43 ± 1.54e-05", r.check([]float32{19, 22, 44, 50}, 2))
}

// TestReferenceAcceptsFloat32GEMMs checks that real float32 GEMMs (OpenBLAS or pure Go, and
// a naive float32 loop, the worst summation order) are never flagged, and that a small
// error in one element is.
func TestReferenceAcceptsFloat32GEMMs(t *testing.T) {
	shapes := []struct{ m, n, k int }{{4, 16, 8}, {64, 64, 512}, {3, 5, 4096}, {128, 96, 1}}
	for _, s := range shapes {
		r := rand.New(rand.NewPCG(7, uint64(s.k)))
		a, b := randomMatrix(r, s.m*s.k), randomMatrix(r, s.k*s.n)
		ref := newReference(s.m, s.n, s.k, a, b)
		blas := make([]float32, s.m*s.n)
		linalg.Sgemm(s.m, s.n, s.k, a, b, blas)
		assert.Empty(t, ref.check(blas, s.n), "linalg.Sgemm %v", s)

		naive := make([]float32, s.m*s.n)
		for i := range s.m {
			for j := range s.n {
				var acc float32
				for p := range s.k {
					acc += a[i*s.k+p] * b[p*s.n+j]
				}
				naive[i*s.n+j] = acc
			}
		}
		assert.Empty(t, ref.check(naive, s.n), "naive float32 %v", s)

		for _, bad := range []float32{blas[0] + 1e-3*(1+float32(math.Abs(float64(blas[0])))), float32(math.NaN()), float32(math.Inf(1))} {
			c := append([]float32(nil), blas...)
			c[len(c)-1] = bad
			assert.NotEmpty(t, ref.check(c, s.n), "%v with C[last] = %g", s, bad)
		}
	}
}
