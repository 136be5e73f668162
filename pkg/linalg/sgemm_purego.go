//go:build !cgo || noopenblas

package linalg

// sgemm computes c = a·b with the portable pure-Go implementation (see sgemmGo).
func sgemm(m, n, k int, a, b, c []float32) {
	sgemmGo(m, n, k, a, b, c)
}

func backendName() string {
	return goBackendName
}
