//go:build !cgo || noopenblas

package linalg

// wantBackendPrefix is how Backend must start in the pure-Go build.
const wantBackendPrefix = "go"
