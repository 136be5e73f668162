package linalg

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckKernel(t *testing.T) {
	tests := []struct {
		name    string
		kernel  func(m, n, k int, a, b, c []float32)
		wantErr string
	}{
		{name: "go kernels pass", kernel: sgemmGo},
		{name: "a wrong last element", wantErr: "element", kernel: func(m, n, k int, a, b, c []float32) {
			sgemmGo(m, n, k, a, b, c)
			c[len(c)-1] *= 1.001
		}},
		{name: "a matrix-vector path left unwritten", wantErr: "1×67×61", kernel: func(m, n, k int, a, b, c []float32) {
			if m != 1 {
				sgemmGo(m, n, k, a, b, c)
			}
		}},
		{name: "wrong only when threaded", wantErr: "96×80×64", kernel: func(m, n, k int, a, b, c []float32) {
			sgemmGo(m, n, k, a, b, c)
			if m*n*k > 1<<18 {
				c[0] = float32(math.NaN())
			}
		}},
		{name: "single-precision rounding of each product still passes", kernel: func(m, n, k int, a, b, c []float32) {
			for i := range m {
				for j := range n {
					var s float32
					for p := range k {
						s += a[i*k+p] * b[p*n+j]
					}
					c[i*n+j] = s
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkKernel(tt.kernel)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestKernels(t *testing.T) {
	info := Kernels()
	t.Logf("%+v", info)
	assert.False(t, info.Fallback, "the kernels compiled in fail the check: %s", info.CheckError)
	assert.Empty(t, info.CheckError)
	assert.Equal(t, Backend(), info.Backend)
	assert.Equal(t, info, Kernels(), "checked once")
}
