package linalg

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
)

// unitRoundoff is u = 2⁻²⁴, the unit roundoff of float32.
const unitRoundoff = 1.0 / (1 << 24)

// KernelInfo says which GEMM kernels Sgemm runs and why: what the start-up check of
// CheckKernels found. It is what the serve command logs at start, /stats shows and the
// INFO op reports.
type KernelInfo struct {
	// Backend is Backend() when the check ran: the implementation and its configuration.
	Backend string `json:"backend"`
	// Core is OpenBLAS's kernel set (its core name, e.g. "Cooperlake"); empty for the
	// pure-Go build.
	Core string `json:"core,omitempty"`
	// Source says who chose Core: CoreUser, CoreAuto or CoreOpenBLAS; empty for the
	// pure-Go build.
	Source string `json:"source,omitempty"`
	// Requested is the OPENBLAS_CORETYPE OpenBLAS was started with (the user's or the
	// automatic choice); empty when OpenBLAS chose by itself.
	Requested string `json:"requested,omitempty"`
	// ThreadTimeout is how long OpenBLAS's idle worker threads spin before they sleep, as
	// the exponent of 2^n TSC ticks it applies (OPENBLAS_THREAD_TIMEOUT; 28 is OpenBLAS's
	// default, 24 sstemu's); 0 for the pure-Go build.
	ThreadTimeout int `json:"thread_timeout,omitempty"`
	// ThreadTimeoutSource says who chose ThreadTimeout, with Source's values: CoreUser,
	// CoreAuto, or CoreOpenBLAS (its default); empty for the pure-Go build.
	ThreadTimeoutSource string `json:"thread_timeout_source,omitempty"`
	// Fallback is true when the kernels failed the check and Sgemm runs the portable Go
	// kernels instead.
	Fallback bool `json:"fallback"`
	// CheckError is what the check found wrong (empty when it passed).
	CheckError string `json:"check_error,omitempty"`
}

// Who chose OpenBLAS's kernels (KernelInfo.Source).
const (
	// CoreUser: OPENBLAS_CORETYPE was set in the environment; sstemu never overrides it.
	CoreUser = "user"
	// CoreAuto: the variable was unset and sstemu chose the best kernel set the CPU's
	// features support, before OpenBLAS initialised.
	CoreAuto = "auto"
	// CoreOpenBLAS: the variable was unset and sstemu knew no better choice for this CPU,
	// so OpenBLAS's own detection chose.
	CoreOpenBLAS = "openblas"
)

// checkShapes are the products the start-up check runs: both matrix–vector paths, odd
// edges that leave partial register tiles, and one large enough for OpenBLAS to thread.
var checkShapes = []GEMMShape{
	{M: 1, N: 67, K: 61},
	{M: 67, N: 1, K: 61},
	{M: 67, N: 61, K: 59},
	{M: 96, N: 80, K: 64}, // 491,520 > 262,144 = M·N·K above which OpenBLAS 0.3.21 threads
}

// checkKernel runs kernel on checkShapes with fixed pseudo-random inputs in [-1, 1) and
// compares every element with the float64 reference within the bound of withinBound. It
// returns nil if all pass, or an error naming the first shape and element that did not.
func checkKernel(kernel func(m, n, k int, a, b, c []float32)) error {
	r := rand.New(rand.NewPCG(14, 0x9e3779b97f4a7c15))
	fill := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = 2*r.Float32() - 1
		}
		return s
	}
	for _, s := range checkShapes {
		a, b := fill(s.M*s.K), fill(s.K*s.N)
		c := make([]float32, s.M*s.N)
		for i := range c {
			c[i] = float32(math.NaN())
		}
		kernel(s.M, s.N, s.K, a, b, c)
		ref, mag := refGEMM(s.M, s.N, s.K, a, b)
		if i, ok := withinBound(s.K, c, ref, mag); !ok {
			return fmt.Errorf("%d×%d×%d product, element %d: got %g, float64 reference %g",
				s.M, s.N, s.K, i, c[i], ref[i])
		}
	}
	return nil
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

// withinBound checks every element against the float64 reference with the classical
// bound for a float32 dot product of k terms computed in any order (Higham, Accuracy and
// Stability of Numerical Algorithms, §3.1): |c − ref| ≤ γₖ·Σ|a||b| with γₖ = k·u/(1 − k·u).
// It holds for OpenBLAS's blocked kernels, FMA or not, and for any summation order, so it
// does not depend on the implementation; the float64 reference's own error (k·2⁻⁵³) is
// negligible against it. A tiny absolute floor covers denormal rounding. It returns the
// index of the first element out of bounds (NaN included) and false, or -1 and true.
func withinBound(k int, got []float32, ref, mag []float64) (int, bool) {
	ku := float64(k) * unitRoundoff
	gamma := ku / (1 - ku)
	for i, g := range got {
		tol := gamma*mag[i] + 1e-30
		if d := math.Abs(float64(g) - ref[i]); !(d <= tol) {
			return i, false
		}
	}
	return -1, true
}

// kernels runs checkBackend once, on first use.
var kernels = sync.OnceValue(checkBackend)

// Kernels returns the GEMM kernels Sgemm runs, checked once against a float64 reference
// on a few small products (both matrix–vector paths, odd edges, a threaded size) the
// first time it or Sgemm is called; the serve command calls it at start-up. If OpenBLAS's
// kernels fail the check, Sgemm runs the portable Go kernels from then on (Fallback).
func Kernels() KernelInfo {
	return kernels()
}
