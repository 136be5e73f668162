package linalg

// GEMMShape is the size of one GEMM C[M,N] = A[M,K]·B[K,N]: the unit of work the device
// server times on the simulated accelerator.
type GEMMShape struct {
	M, N, K int
}

// FLOPs is the GEMM's floating-point operation count, 2·M·N·K (a multiply and an add per
// term), as a float64 so that it cannot overflow.
func (s GEMMShape) FLOPs() float64 {
	return 2 * float64(s.M) * float64(s.N) * float64(s.K)
}

// validate checks that the dimensions are non-negative, that M·K, K·N and M·N fit in an
// int, and that the slices hold exactly M·K, K·N and M·N elements; a negative length skips
// that operand's check.
func (s GEMMShape) validate(op string, lenA, lenB, lenC int) error {
	for _, d := range []struct {
		name string
		v    int
	}{{"M", s.M}, {"N", s.N}, {"K", s.K}} {
		if d.v < 0 {
			return newError(op, d.name, ErrBadDim, "%s = %d is negative", d.name, d.v)
		}
	}
	for _, o := range []struct {
		name       string
		rows, cols int
		got        int
	}{{"A", s.M, s.K, lenA}, {"B", s.K, s.N, lenB}, {"C", s.M, s.N, lenC}} {
		want, ok := mulInt(o.rows, o.cols)
		if !ok {
			return newError(op, o.name, ErrOverflow, "%d×%d elements", o.rows, o.cols)
		}
		if o.got >= 0 && o.got != want {
			return newError(op, o.name, ErrLength, "len = %d, want %d×%d = %d", o.got, o.rows, o.cols, want)
		}
	}
	return nil
}

// Sgemm computes C[m,n] = A[m,k]·B[k,n] on dense row-major float32 matrices, overwriting C
// (whatever it held). The slices must hold at least m·k, k·n and m·n elements; extra
// elements are neither read nor written. m == 1 and n == 1 are computed as matrix–vector
// products, which OpenBLAS runs several times faster than its GEMM kernel.
//
// Sgemm panics with an *Error on negative dimensions or short slices (a programming error,
// like an out-of-range index); validate untrusted sizes first with PlanGEMM, or use its
// Plan's Compute. It is safe for concurrent use on disjoint C.
func Sgemm(m, n, k int, a, b, c []float32) {
	s := GEMMShape{M: m, N: n, K: k}
	if err := s.validate("sgemm", -1, -1, -1); err != nil {
		panic(err)
	}
	for _, o := range []struct {
		name string
		need int
		got  int
	}{{"a", m * k, len(a)}, {"b", k * n, len(b)}, {"c", m * n, len(c)}} {
		if o.got < o.need {
			panic(newError("sgemm", o.name, ErrLength, "len = %d, need at least %d", o.got, o.need))
		}
	}
	if m == 0 || n == 0 {
		return
	}
	c = c[:m*n]
	if k == 0 {
		clear(c)
		return
	}
	sgemm(m, n, k, a[:m*k], b[:k*n], c)
}

// Backend names the Sgemm implementation compiled in, with its configuration (for
// OpenBLAS: version, build options, CPU core type selected at run time and thread count).
func Backend() string {
	return backendName()
}
