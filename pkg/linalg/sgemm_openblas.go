//go:build cgo && !noopenblas

package linalg

// OpenBLAS is linked statically from Debian's libopenblas-dev (pthread flavour,
// /usr/lib/x86_64-linux-gnu/libopenblas.a): the binary then runs without the shared
// library installed. The CBLAS entry points used here need only libm and libpthread
// besides the archive itself (no gfortran: that is only for the LAPACK part).

/*
#cgo LDFLAGS: -l:libopenblas.a -lm -lpthread
#include <cblas.h>
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"
)

// sgemm computes c = a·b with OpenBLAS, or with the pure-Go kernel if OpenBLAS's kernels
// failed the start-up check (Kernels). The slices hold exactly m·k, k·n and m·n elements
// and all dimensions are ≥ 1.
func sgemm(m, n, k int, a, b, c []float32) {
	if kernels().Fallback {
		sgemmGo(m, n, k, a, b, c)
		return
	}
	sgemmOpenBLAS(m, n, k, a, b, c)
}

// sgemmOpenBLAS computes c = a·b with OpenBLAS, as sgemm. Dimensions beyond OpenBLAS's
// 32-bit blasint go to the pure-Go kernel.
func sgemmOpenBLAS(m, n, k int, a, b, c []float32) {
	if m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 {
		sgemmGo(m, n, k, a, b, c)
		return
	}
	cblasProduct(m, n, k, a, k, b, c, 0)
}

// sgemmAcc computes c = a·b + beta·c, a being m×k with leading dimension lda (a block of
// A's columns), b k×n and c m×n dense, with OpenBLAS (matrix–vector products for m or
// n = 1, as sgemm), or with gonum where sgemm would use the pure-Go kernel.
func sgemmAcc(m, n, k int, a []float32, lda int, b, c []float32, beta float32) {
	if kernels().Fallback || m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 || lda > math.MaxInt32 {
		sgemmAccGo(m, n, k, a, lda, b, c, beta)
		return
	}
	cblasProduct(m, n, k, a, lda, b, c, beta)
}

// cblasProduct computes c = a·b + beta·c through CBLAS, every dimension fitting a blasint:
// a row vector times a matrix (m = 1) and a matrix times a column vector (n = 1) as sgemv,
// which runs them at memory speed where sgemm would pack them (3.5× slower for
// 1×4096×4096, docs/performance.md), everything else as sgemm.
func cblasProduct(m, n, k int, a []float32, lda int, b, c []float32, beta float32) {
	pa := (*C.float)(unsafe.Pointer(&a[0]))
	pb := (*C.float)(unsafe.Pointer(&b[0]))
	pc := (*C.float)(unsafe.Pointer(&c[0]))
	switch {
	case m == 1:
		// c[1,n] = a[1,k]·b[k,n] is y = Bᵀx with B the k×n row-major matrix.
		C.cblas_sgemv(C.CblasRowMajor, C.CblasTrans, C.blasint(k), C.blasint(n),
			1, pb, C.blasint(n), pa, 1, C.float(beta), pc, 1)
	case n == 1:
		// c[m,1] = a[m,k]·b[k,1] is y = Ax.
		C.cblas_sgemv(C.CblasRowMajor, C.CblasNoTrans, C.blasint(m), C.blasint(k),
			1, pa, C.blasint(lda), pb, 1, C.float(beta), pc, 1)
	default:
		C.cblas_sgemm(C.CblasRowMajor, C.CblasNoTrans, C.CblasNoTrans,
			C.blasint(m), C.blasint(n), C.blasint(k),
			1, pa, C.blasint(lda), pb, C.blasint(n), C.float(beta), pc, C.blasint(n))
	}
}

// checkBackend runs the start-up check of OpenBLAS's kernels (see Kernels).
func checkBackend() KernelInfo {
	requested, source := coreChoice()
	timeout, timeoutSource := threadTimeout()
	info := KernelInfo{
		Backend:             backendName(),
		Core:                C.GoString(C.openblas_get_corename()),
		Source:              source,
		Requested:           requested,
		ThreadTimeout:       timeout,
		ThreadTimeoutSource: timeoutSource,
	}
	if err := checkKernel(sgemmOpenBLAS); err != nil {
		info.Fallback = true
		info.CheckError = err.Error()
		return info
	}
	return info
}

func backendName() string {
	return fmt.Sprintf("openblas (cgo, static): %s; core=%s; threads=%d",
		C.GoString(C.openblas_get_config()), C.GoString(C.openblas_get_corename()),
		openBLASThreads())
}
