//go:build !linux

package linalg

import "testing"

// benchFloats returns n float32s from the Go heap: only Linux has numpy's huge-page advice.
func benchFloats(tb testing.TB, n int) []float32 {
	return make([]float32, n)
}
