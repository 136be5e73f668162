package linalg

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gemmCases covers the degenerate and awkward sizes: all-ones, odd sizes that are not
// multiples of any SIMD width or block size, the M = 1 and N = 1 matrix–vector paths, K = 1
// (outer product), non-square, and sizes big enough for OpenBLAS to block and thread.
var gemmCases = []GEMMShape{
	{M: 1, N: 1, K: 1},
	{M: 2, N: 3, K: 4},
	{M: 17, N: 31, K: 13},
	{M: 1, N: 257, K: 129},
	{M: 1, N: 1, K: 1000},
	{M: 129, N: 1, K: 257},
	{M: 33, N: 45, K: 1},
	{M: 7, N: 300, K: 65},
	{M: 300, N: 7, K: 65},
	{M: 97, N: 101, K: 103},
	{M: 256, N: 200, K: 300},
	{M: 5, N: 2051, K: 7},
}

// gemmImpls are the implementations under test: Sgemm (the build's backend) and the
// pure-Go kernel, which the OpenBLAS build also compiles.
var gemmImpls = []struct {
	name string
	fn   func(m, n, k int, a, b, c []float32)
}{
	{"Sgemm", Sgemm},
	{"sgemmGo", exact(sgemmGo)},
	{"gemmGonum", exact(gemmGonum)},
	{"gemmBlocked", exact(gemmBlocked)},
}

// exact adapts an internal kernel, whose contract is exact slice lengths, to the test's
// slices with a guard tail.
func exact(fn func(m, n, k int, a, b, c []float32)) func(m, n, k int, a, b, c []float32) {
	return func(m, n, k int, a, b, c []float32) {
		fn(m, n, k, a[:m*k], b[:k*n], c[:m*n])
	}
}

func TestSgemmAgainstFloat64Reference(t *testing.T) {
	for _, impl := range gemmImpls {
		for i, s := range gemmCases {
			t.Run(fmt.Sprintf("%s/%dx%dx%d", impl.name, s.M, s.N, s.K), func(t *testing.T) {
				a := randSlice(uint64(2*i+1), s.M*s.K)
				b := randSlice(uint64(2*i+2), s.K*s.N)
				// C starts as NaN and has a guard tail: Sgemm must overwrite every element
				// (β = 0, no NaN leaking through) and touch nothing past M·N.
				const guard = 5
				c := make([]float32, s.M*s.N+guard)
				for j := range c {
					c[j] = float32(math.NaN())
				}
				impl.fn(s.M, s.N, s.K, a, b, c)
				ref, mag := refGEMM(s.M, s.N, s.K, a, b)
				requireClose(t, s.K, c[:s.M*s.N], ref, mag)
				for _, g := range c[s.M*s.N:] {
					require.True(t, math.IsNaN(float64(g)), "guard element written")
				}
			})
		}
	}
}

func TestSgemmHandWorked(t *testing.T) {
	// [1 2 3; 4 5 6]·[7 8; 9 10; 11 12] = [58 64; 139 154], worked by hand.
	a := []float32{1, 2, 3, 4, 5, 6}
	b := []float32{7, 8, 9, 10, 11, 12}
	c := make([]float32, 4)
	Sgemm(2, 2, 3, a, b, c)
	assert.Equal(t, []float32{58, 64, 139, 154}, c)
	// Row vector times matrix (the sgemv path): [1 2 3]·B = [58 64].
	c1 := make([]float32, 2)
	Sgemm(1, 2, 3, a[:3], b, c1)
	assert.Equal(t, []float32{58, 64}, c1)
	// Matrix times column vector: A·[1 2 3]ᵀ = [14 32].
	c2 := make([]float32, 2)
	Sgemm(2, 1, 3, a, []float32{1, 2, 3}, c2)
	assert.Equal(t, []float32{14, 32}, c2)
}

func TestSgemmEmpty(t *testing.T) {
	t.Run("K=0 gives zeros", func(t *testing.T) {
		c := []float32{9, 9, 9, 9, 9, 9}
		Sgemm(2, 3, 0, nil, nil, c)
		assert.Equal(t, make([]float32, 6), c)
	})
	t.Run("M=0 writes nothing", func(t *testing.T) {
		c := []float32{9}
		Sgemm(0, 1, 4, nil, make([]float32, 4), c)
		assert.Equal(t, []float32{9}, c)
	})
}

func TestSgemmPanicsOnBadArguments(t *testing.T) {
	cases := []struct {
		name    string
		m, n, k int
		la, lb  int
		lc      int
		kind    error
		field   string
	}{
		{"negative M", -1, 2, 2, 4, 4, 4, ErrBadDim, "M"},
		{"negative K", 2, 2, -3, 4, 4, 4, ErrBadDim, "K"},
		{"short A", 2, 2, 2, 3, 4, 4, ErrLength, "a"},
		{"short B", 2, 2, 2, 4, 3, 4, ErrLength, "b"},
		{"short C", 2, 2, 2, 4, 4, 3, ErrLength, "c"},
		{"overflow", math.MaxInt / 2, 4, 1, 0, 0, 0, ErrOverflow, "C"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r, "no panic")
				err, ok := r.(error)
				require.True(t, ok, "panic value %v is not an error", r)
				var le *Error
				require.ErrorAs(t, err, &le)
				assert.ErrorIs(t, err, tc.kind)
				assert.Equal(t, tc.field, le.Field)
			}()
			Sgemm(tc.m, tc.n, tc.k, make([]float32, tc.la), make([]float32, tc.lb), make([]float32, tc.lc))
		})
	}
}

func TestGEMMValidates(t *testing.T) {
	cases := []struct {
		name   string
		s      GEMMShape
		la, lb int
		kind   error
	}{
		{"ok", GEMMShape{M: 2, N: 3, K: 4}, 8, 12, nil},
		{"A too long", GEMMShape{M: 2, N: 3, K: 4}, 9, 12, ErrLength},
		{"B too short", GEMMShape{M: 2, N: 3, K: 4}, 8, 11, ErrLength},
		{"negative N", GEMMShape{M: 2, N: -3, K: 4}, 8, 12, ErrBadDim},
		{"K·N overflows", GEMMShape{M: 1, N: math.MaxInt / 3, K: 4}, 4, 0, ErrOverflow},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := randSlice(1, tc.la), randSlice(2, tc.lb)
			c, err := gemm(tc.s, a, b)
			if tc.kind != nil {
				require.ErrorIs(t, err, tc.kind)
				var le *Error
				require.ErrorAs(t, err, &le)
				assert.Equal(t, "gemm", le.Op)
				assert.Contains(t, err.Error(), "linalg: gemm:")
				return
			}
			require.NoError(t, err)
			ref, mag := refGEMM(tc.s.M, tc.s.N, tc.s.K, a, b)
			requireClose(t, tc.s.K, c, ref, mag)
		})
	}
}

func TestGEMMShapeFLOPs(t *testing.T) {
	assert.Equal(t, 2.0*1024*1024*1024, GEMMShape{M: 1024, N: 1024, K: 1024}.FLOPs())
}

// TestSgemmConcurrent runs GEMMs of several sizes (small single-threaded ones and large ones
// that OpenBLAS threads) from many goroutines at once and checks every result against the
// float64 reference: OpenBLAS's pthread build must be safe for concurrent callers.
func TestSgemmConcurrent(t *testing.T) {
	shapes := []GEMMShape{{M: 256, N: 256, K: 256}, {M: 1, N: 512, K: 300}, {M: 31, N: 17, K: 9}, {M: 128, N: 300, K: 200}}
	type job struct {
		s        GEMMShape
		a, b     []float32
		ref, mag []float64
	}
	jobs := make([]job, len(shapes))
	for i, s := range shapes {
		a, b := randSlice(uint64(100+i), s.M*s.K), randSlice(uint64(200+i), s.K*s.N)
		ref, mag := refGEMM(s.M, s.N, s.K, a, b)
		jobs[i] = job{s, a, b, ref, mag}
	}
	const goroutines, rounds = 8, 6
	results := make([][][]float32, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for r := range rounds {
				j := jobs[(g+r)%len(jobs)]
				c := make([]float32, j.s.M*j.s.N)
				Sgemm(j.s.M, j.s.N, j.s.K, j.a, j.b, c)
				results[g] = append(results[g], c)
			}
		})
	}
	wg.Wait()
	for g := range goroutines {
		for r, c := range results[g] {
			j := jobs[(g+r)%len(jobs)]
			requireClose(t, j.s.K, c, j.ref, j.mag)
		}
	}
}

func TestBackendName(t *testing.T) {
	name := Backend()
	assert.True(t, strings.HasPrefix(name, wantBackendPrefix), "Backend() = %q, want prefix %q", name, wantBackendPrefix)
}

func TestErrorUnwrap(t *testing.T) {
	err := error(newError("matmul", "AShape", ErrShapeMismatch, "x"))
	assert.True(t, errors.Is(err, ErrShapeMismatch))
	assert.False(t, errors.Is(err, ErrLength))
	assert.Equal(t, "linalg: matmul: AShape: incompatible shapes: x", err.Error())
}
