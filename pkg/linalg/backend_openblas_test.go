//go:build cgo && !noopenblas

package linalg

// wantBackendPrefix is how Backend must start in the OpenBLAS build.
const wantBackendPrefix = "openblas"
