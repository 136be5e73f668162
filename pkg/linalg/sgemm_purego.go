//go:build !cgo || noopenblas

package linalg

// sgemm computes c = a·b with the portable pure-Go implementation (see sgemmGo).
func sgemm(m, n, k int, a, b, c []float32) {
	sgemmGo(m, n, k, a, b, c)
}

// sgemmAcc computes c = a·b + beta·c for a strided A (see sgemmAccGo).
func sgemmAcc(m, n, k int, a []float32, lda int, b, c []float32, beta float32) {
	sgemmAccGo(m, n, k, a, lda, b, c, beta)
}

func backendName() string {
	return goBackendName
}

// checkBackend runs the start-up check of the pure-Go kernels (see Kernels); there is no
// other kernel to fall back to.
func checkBackend() KernelInfo {
	info := KernelInfo{Backend: backendName()}
	if err := checkKernel(sgemmGo); err != nil {
		info.CheckError = err.Error()
	}
	return info
}
