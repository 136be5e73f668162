package linalg

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// randSlice returns n values uniform in [-1, 1) from a fixed seed, so failures reproduce.
func randSlice(seed uint64, n int) []float32 {
	s := make([]float32, n)
	fillRand(seed, s)
	return s
}

// fillRand fills s with randSlice's values for seed.
func fillRand(seed uint64, s []float32) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := range s {
		s[i] = 2*r.Float32() - 1
	}
}

// requireClose checks every element against the float64 reference within withinBound's
// bound (γₖ·Σ|a||b|), reporting the first element outside it.
func requireClose(t *testing.T, k int, got []float32, ref, mag []float64) {
	t.Helper()
	require.Len(t, got, len(ref))
	if i, ok := withinBound(k, got, ref, mag); !ok {
		ku := float64(k) * unitRoundoff
		t.Fatalf("element %d: got %g, want %g (|diff| %g > tol %g)", i, got[i], ref[i],
			math.Abs(float64(got[i])-ref[i]), ku/(1-ku)*mag[i]+1e-30)
	}
}
