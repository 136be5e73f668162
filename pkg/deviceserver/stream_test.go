package deviceserver

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStreamedGEMMMatchesExecute streams B in the stream's blocks (K not a multiple of
// them) and checks the result against float64 and the timing against Execute's.
func TestStreamedGEMMMatchesExecute(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	const m, n, k = 9, 2048, 1100
	a, b := randomMatrix(r, m*k), randomMatrix(r, k*n)
	var streamer GEMMStreamer = s
	st, err := streamer.StartGEMM(context.Background(), &Op{ID: 7, Type: OpGEMM, GEMM: &GEMM{M: m, N: n, K: k, A: a}})
	require.NoError(t, err)
	rows := st.BlockRows()
	require.Less(t, rows, k)
	for k0 := 0; k0 < k; k0 += rows {
		k1 := min(k0+rows, k)
		require.NoError(t, st.Add(b[k0*n:k1*n]))
	}
	res, err := st.Finish()
	require.NoError(t, err)
	st.Abort() // harmless after Finish
	checkAgainstFloat64(t, m, n, k, a, b, res.Data)
	assert.Equal(t, []int{m, n}, res.Shape)
	assert.True(t, res.Timing.Timed)
	assert.Equal(t, uint64(m*n*k), res.Timing.Cycles)
	assert.Equal(t, uint64(1), s.Stats().GEMM)
}

func TestStreamedGEMMErrors(t *testing.T) {
	dev := &fakeDevice{}
	s := New(Config{Devices: []Opener{dev.open}, Logger: zerolog.Nop()})
	defer s.Close()
	ctx := context.Background()
	_, err := s.StartGEMM(ctx, &Op{ID: 1, Type: OpConv, Conv: &Conv2D{}})
	require.Error(t, err)
	_, err = s.StartGEMM(ctx, &Op{ID: 2, Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 2, A: make([]float32, 3)}})
	require.Error(t, err)

	st, err := s.StartGEMM(ctx, &Op{ID: 3, Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 2, A: make([]float32, 4)}})
	require.NoError(t, err)
	require.NoError(t, st.Add(make([]float32, 2)))
	_, err = st.Finish() // one row of two missing
	require.Error(t, err)
	st.Abort()

	st, err = s.StartGEMM(ctx, &Op{ID: 4, Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 2, A: make([]float32, 4)}})
	require.NoError(t, err)
	st.Abort() // the client went away: the timing request is waited for, nothing counted
	assert.Equal(t, uint64(0), s.Stats().GEMM)
}
