package linalg

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGEMMStreamAgainstFloat64Reference adds B in blocks of the stream's size and in odd
// pieces (1 row, 7 rows, …), for shapes whose K is not a multiple of the block, and checks
// C against the float64 reference with the bound of docs/gemm.md.
func TestGEMMStreamAgainstFloat64Reference(t *testing.T) {
	shapes := []GEMMShape{
		{M: 1, N: 1, K: 1},
		{M: 33, N: 4096, K: 300}, // blocks of 128 rows: 128 + 128 + 44
		{M: 1, N: 2048, K: 515},  // matrix–vector path, blocks of 512 + 3
		{M: 129, N: 1, K: 257},   // N = 1: one block of at most K rows
		{M: 97, N: 101, K: 1031}, // blocks of 1031 (K < the block): one block
		{M: 64, N: 8192, K: 259}, // blocks of 128: 128 + 128 + 3
		{M: 0, N: 5, K: 7},
		{M: 3, N: 5, K: 0},
	}
	pieces := map[string]func(block int) []int{
		"blocks": func(block int) []int { return []int{block} },
		"odd":    func(int) []int { return []int{1, 7, 3, 64, 129} },
	}
	for i, s := range shapes {
		for pname, sizes := range pieces {
			t.Run(fmt.Sprintf("%dx%dx%d/%s", s.M, s.N, s.K, pname), func(t *testing.T) {
				p, err := PlanGEMM(s)
				require.NoError(t, err)
				a := randSlice(uint64(2*i+1), s.M*s.K)
				b := randSlice(uint64(2*i+2), s.K*s.N)
				st, err := p.StreamGEMM(a)
				require.NoError(t, err)
				steps := sizes(st.BlockRows())
				for j := 0; st.Rows() < s.K; j++ {
					kb := min(steps[j%len(steps)], s.K-st.Rows())
					r := st.Rows()
					require.NoError(t, st.Add(b[r*s.N:(r+kb)*s.N]))
				}
				c, err := st.Result()
				require.NoError(t, err)
				ref, mag := refGEMM(s.M, s.N, s.K, a, b)
				requireClose(t, s.K, c, ref, mag)
			})
		}
	}
}

// TestSgemmAccGoAgainstFloat64Reference checks the portable accumulating kernel (the
// OpenBLAS build's fallback) on a column block of A with β = 0 and β = 1.
func TestSgemmAccGoAgainstFloat64Reference(t *testing.T) {
	const m, n, k, k0 = 37, 53, 91, 40
	a := randSlice(1, m*k)
	b := randSlice(2, k*n)
	c := make([]float32, m*n)
	sgemmAccGo(m, n, k0, a, k, b, c, 0)
	sgemmAccGo(m, n, k-k0, a[k0:], k, b[k0*n:], c, 1)
	ref, mag := refGEMM(m, n, k, a, b)
	requireClose(t, k, c, ref, mag)
}

func TestGEMMStreamErrors(t *testing.T) {
	p, err := PlanGEMM(GEMMShape{M: 2, N: 3, K: 4})
	require.NoError(t, err)
	_, err = p.StreamGEMM(make([]float32, 7))
	require.True(t, errors.Is(err, ErrLength), "%v", err)
	mp, err := PlanMatmul([]int{2, 3}, []int{3, 4})
	require.NoError(t, err)
	_, err = mp.StreamGEMM(make([]float32, 6))
	require.True(t, errors.Is(err, ErrBadDim), "%v", err)

	st, err := p.StreamGEMM(make([]float32, 8))
	require.NoError(t, err)
	require.True(t, errors.Is(st.Add(make([]float32, 4)), ErrLength), "not whole rows")
	require.True(t, errors.Is(st.Add(make([]float32, 15)), ErrLength), "more rows than K")
	_, err = st.Result()
	require.True(t, errors.Is(err, ErrLength), "result before all rows")
	require.NoError(t, st.Add(make([]float32, 12)))
	_, err = st.Result()
	require.NoError(t, err)
}

func TestStreamBlockRows(t *testing.T) {
	for _, tc := range []struct {
		s    GEMMShape
		want int
	}{
		{GEMMShape{M: 1024, N: 1024, K: 1024}, 512},
		{GEMMShape{M: 2048, N: 2048, K: 2048}, 512},
		{GEMMShape{M: 1, N: 1024, K: 4096}, 256},
		{GEMMShape{M: 128, N: 4096, K: 11008}, 128},
		{GEMMShape{M: 8, N: 8, K: 100}, 100},
		{GEMMShape{M: 8, N: 0, K: 0}, 1},
	} {
		require.Equal(t, tc.want, StreamBlockRows(tc.s), "%+v", tc.s)
	}
}

func TestStreamPays(t *testing.T) {
	for _, tc := range []struct {
		s    GEMMShape
		want bool
	}{
		{GEMMShape{M: 128, N: 4096, K: 11008}, true},
		{GEMMShape{M: 512, N: 4096, K: 4096}, true},
		{GEMMShape{M: 1024, N: 1024, K: 1024}, false}, // M too large
		{GEMMShape{M: 4, N: 16, K: 8}, false},         // one block
		{GEMMShape{M: 0, N: 16, K: 8000}, false},
	} {
		require.Equal(t, tc.want, StreamPays(tc.s), "%+v", tc.s)
	}
}
