package loadgen

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseShape(t *testing.T) {
	cases := []struct {
		in      string
		m, n, k int
		errPart string
	}{
		{"4x16x8", 4, 16, 8, ""},
		{"1024X1024X1024", 1024, 1024, 1024, ""},
		{" 2×3×5 ", 2, 3, 5, ""},
		{"4x16", 0, 0, 0, "want MxNxK"},
		{"4x16x8x2", 0, 0, 0, "want MxNxK"},
		{"0x1x1", 0, 0, 0, `M = "0" is not a positive integer`},
		{"1x-2x1", 0, 0, 0, `N = "-2"`},
		{"1x1xk", 0, 0, 0, `K = "k"`},
		{"", 0, 0, 0, "want MxNxK"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			m, n, k, err := ParseShape(tc.in)
			if tc.errPart != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errPart)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, [3]int{tc.m, tc.n, tc.k}, [3]int{m, n, k})
		})
	}
}
