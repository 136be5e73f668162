package linalg

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// matmulShapeCases are torch.matmul shapes worked out by hand from its documented rules.
var matmulShapeCases = []struct {
	name       string
	a, b       []int
	out        []int
	gemm       GEMMShape // the per-batch GEMM
	gemmsCount int
}{
	{"dot", []int{3}, []int{3}, []int{}, GEMMShape{M: 1, N: 1, K: 3}, 1},
	{"matrix·vector", []int{3, 4}, []int{4}, []int{3}, GEMMShape{M: 3, N: 1, K: 4}, 1},
	{"vector·matrix", []int{4}, []int{4, 5}, []int{5}, GEMMShape{M: 1, N: 5, K: 4}, 1},
	{"matrix·matrix", []int{2, 3}, []int{3, 4}, []int{2, 4}, GEMMShape{M: 2, N: 4, K: 3}, 1},
	{"batched·vector", []int{10, 3, 4}, []int{4}, []int{10, 3}, GEMMShape{M: 3, N: 1, K: 4}, 10},
	{"batched·batched", []int{10, 3, 4}, []int{10, 4, 5}, []int{10, 3, 5}, GEMMShape{M: 3, N: 5, K: 4}, 10},
	{"batched·matrix", []int{10, 3, 4}, []int{4, 5}, []int{10, 3, 5}, GEMMShape{M: 3, N: 5, K: 4}, 10},
	{"matrix·batched", []int{3, 4}, []int{6, 4, 5}, []int{6, 3, 5}, GEMMShape{M: 3, N: 5, K: 4}, 6},
	{"vector·batched", []int{4}, []int{10, 4, 5}, []int{10, 5}, GEMMShape{M: 1, N: 5, K: 4}, 10},
	{"broadcast both", []int{2, 1, 3, 4}, []int{5, 4, 6}, []int{2, 5, 3, 6}, GEMMShape{M: 3, N: 6, K: 4}, 10},
	{"broadcast ones", []int{1, 3, 4}, []int{7, 4, 2}, []int{7, 3, 2}, GEMMShape{M: 3, N: 2, K: 4}, 7},
	{"broadcast interleaved", []int{3, 1, 2, 2, 3}, []int{1, 4, 1, 3, 2}, []int{3, 4, 2, 2, 2}, GEMMShape{M: 2, N: 2, K: 3}, 24},
	{"empty rows", []int{0, 3}, []int{3, 4}, []int{0, 4}, GEMMShape{M: 0, N: 4, K: 3}, 0},
	{"empty inner", []int{2, 0}, []int{0, 3}, []int{2, 3}, GEMMShape{M: 2, N: 3, K: 0}, 0},
	{"empty batch", []int{0, 2, 3}, []int{3, 4}, []int{0, 2, 4}, GEMMShape{M: 2, N: 4, K: 3}, 0},
	{"empty broadcast with 1", []int{1, 2, 3}, []int{0, 3, 4}, []int{0, 2, 4}, GEMMShape{M: 2, N: 4, K: 3}, 0},
	{"large-ish", []int{2, 70, 90}, []int{90, 130}, []int{2, 70, 130}, GEMMShape{M: 70, N: 130, K: 90}, 2},
	{"large-ish broadcast", []int{3, 1, 65, 66}, []int{2, 66, 67}, []int{3, 2, 65, 67}, GEMMShape{M: 65, N: 67, K: 66}, 6},
}

func TestMatmulShape(t *testing.T) {
	for _, tc := range matmulShapeCases {
		t.Run(tc.name, func(t *testing.T) {
			out, gemms, err := matmulShape(tc.a, tc.b)
			require.NoError(t, err)
			assert.Equal(t, tc.out, out)
			require.Len(t, gemms, tc.gemmsCount)
			for _, g := range gemms {
				assert.Equal(t, tc.gemm, g)
			}
		})
	}
}

// refMatmul is an independent float64 torch.matmul: it promotes 1-D operands, expands both
// operands' batch dimensions to the broadcast shape element by element, and multiplies with
// naive loops. It returns the reference values and Σ|a||b| per element.
func refMatmul(aShape, bShape, outBatch []int, a, b []float32) (ref, mag []float64, k int) {
	am, bm := append([]int{}, aShape...), append([]int{}, bShape...)
	if len(am) == 1 {
		am = []int{1, am[0]}
	}
	if len(bm) == 1 {
		bm = []int{bm[0], 1}
	}
	m, k, n := am[len(am)-2], am[len(am)-1], bm[len(bm)-1]
	batches := 1
	for _, d := range outBatch {
		batches *= d
	}
	// element returns x[batchIdx..., i, j] where x has shape dims, reading broadcast
	// (size-1 or missing) batch dimensions at index 0.
	element := func(x []float32, dims []int, batchIdx []int, i, j int) float64 {
		xb := dims[:len(dims)-2]
		off := 0
		for d := range xb {
			idx := batchIdx[len(batchIdx)-len(xb)+d]
			if xb[d] == 1 {
				idx = 0
			}
			off = off*xb[d] + idx
		}
		rows, cols := dims[len(dims)-2], dims[len(dims)-1]
		return float64(x[(off*rows+i)*cols+j])
	}
	ref = make([]float64, batches*m*n)
	mag = make([]float64, batches*m*n)
	idx := make([]int, len(outBatch))
	for bt := range batches {
		r := bt
		for d := len(outBatch) - 1; d >= 0; d-- {
			idx[d] = r % outBatch[d]
			r /= outBatch[d]
		}
		for i := range m {
			for j := range n {
				var s, t float64
				for p := range k {
					v := element(a, am, idx, i, p) * element(b, bm, idx, p, j)
					s += v
					t += math.Abs(v)
				}
				ref[(bt*m+i)*n+j] = s
				mag[(bt*m+i)*n+j] = t
			}
		}
	}
	return ref, mag, k
}

func TestMatmulAgainstFloat64Reference(t *testing.T) {
	for i, tc := range matmulShapeCases {
		t.Run(tc.name, func(t *testing.T) {
			a := randSlice(uint64(10+i), prod(tc.a))
			b := randSlice(uint64(50+i), prod(tc.b))
			out, got, err := matmul(tc.a, tc.b, a, b)
			require.NoError(t, err)
			assert.Equal(t, tc.out, out)
			require.Len(t, got, prod(tc.out))
			batchRank := len(tc.out) - btoi(len(tc.a) > 1) - btoi(len(tc.b) > 1)
			ref, mag, k := refMatmul(tc.a, tc.b, tc.out[:batchRank], a, b)
			requireClose(t, k, got, ref, mag)
		})
	}
}

func TestMatmulHandWorked(t *testing.T) {
	cases := []struct {
		name       string
		aS, bS     []int
		a, b       []float32
		wantShape  []int
		wantValues []float32
	}{
		{"dot", []int{3}, []int{3}, []float32{1, 2, 3}, []float32{4, 5, 6}, []int{}, []float32{32}},
		{
			// Batch 0: [1 2; 3 4]·[1 0; 1 1] = [3 2; 7 4]; batch 1: [5 6; 7 8]·B = [11 6; 15 8].
			"batched·matrix", []int{2, 2, 2}, []int{2, 2},
			[]float32{1, 2, 3, 4, 5, 6, 7, 8}, []float32{1, 0, 1, 1},
			[]int{2, 2, 2}, []float32{3, 2, 7, 4, 11, 6, 15, 8},
		},
		{
			// [1 2]·B₀ with B₀ = [1 2; 3 4] → [7 10]; with B₁ = [0 1; 1 0] → [2 1].
			"vector·batched", []int{2}, []int{2, 2, 2},
			[]float32{1, 2}, []float32{1, 2, 3, 4, 0, 1, 1, 0},
			[]int{2, 2}, []float32{7, 10, 2, 1},
		},
		{"empty inner gives zeros", []int{2, 0}, []int{0, 2}, nil, nil, []int{2, 2}, []float32{0, 0, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			shape, got, err := matmul(tc.aS, tc.bS, tc.a, tc.b)
			require.NoError(t, err)
			assert.Equal(t, tc.wantShape, shape)
			assert.Equal(t, tc.wantValues, got)
		})
	}
}

func TestMatmulErrors(t *testing.T) {
	tooMany := make([]int, MaxRank+1)
	for i := range tooMany {
		tooMany[i] = 1
	}
	cases := []struct {
		name   string
		aS, bS []int
		la, lb int // data lengths, -1 for the shape's product
		kind   error
		field  string
	}{
		{"0-D A", []int{}, []int{3}, -1, -1, ErrBadDim, "AShape"},
		{"0-D B", []int{3}, nil, -1, -1, ErrBadDim, "BShape"},
		{"negative dim", []int{2, -3}, []int{3, 2}, 0, 0, ErrBadDim, "AShape[1]"},
		{"rank too high", tooMany, []int{1}, -1, -1, ErrBadDim, "AShape"},
		{"dot length", []int{3}, []int{4}, -1, -1, ErrShapeMismatch, "BShape"},
		{"inner size", []int{2, 3}, []int{4, 5}, -1, -1, ErrShapeMismatch, "BShape"},
		{"vector inner", []int{2, 3}, []int{2}, -1, -1, ErrShapeMismatch, "BShape"},
		{"batch mismatch", []int{2, 3, 4}, []int{3, 4, 5}, -1, -1, ErrShapeMismatch, "BShape[0]"},
		{"inner batch mismatch", []int{5, 2, 3, 4}, []int{3, 4, 5}, -1, -1, ErrShapeMismatch, "BShape[0]"},
		{"operand overflow", []int{math.MaxInt / 2, 4}, []int{4, 1}, 0, 0, ErrOverflow, "AShape"},
		{"output overflow", []int{1 << 31, 1}, []int{1, 1 << 33}, 0, 0, ErrOverflow, "BShape"},
		{"A data short", []int{2, 3}, []int{3, 2}, 5, -1, ErrLength, "A"},
		{"B data long", []int{2, 3}, []int{3, 2}, -1, 7, ErrLength, "B"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			la, lb := tc.la, tc.lb
			if la < 0 {
				la = prod(tc.aS)
			}
			if lb < 0 {
				lb = prod(tc.bS)
			}
			_, _, err := matmul(tc.aS, tc.bS, make([]float32, la), make([]float32, lb))
			require.ErrorIs(t, err, tc.kind)
			var le *Error
			require.ErrorAs(t, err, &le)
			assert.Equal(t, "matmul", le.Op)
			assert.Equal(t, tc.field, le.Field)
			if tc.kind != ErrLength {
				_, _, serr := matmulShape(tc.aS, tc.bS)
				assert.ErrorIs(t, serr, tc.kind, "PlanMatmul must reject what Compute rejects")
			}
		})
	}
}

// TestMatmulManySmallBatches exercises the goroutine-parallel path with many small GEMMs
// and a broadcast A, checked against the reference.
func TestMatmulManySmallBatches(t *testing.T) {
	aS, bS := []int{1, 5, 7}, []int{3, 37, 7, 6}
	a, b := randSlice(7, prod(aS)), randSlice(8, prod(bS))
	out, got, err := matmul(aS, bS, a, b)
	require.NoError(t, err)
	require.Equal(t, []int{3, 37, 5, 6}, out)
	ref, mag, k := refMatmul(aS, bS, out[:2], a, b)
	requireClose(t, k, got, ref, mag)
}

func FuzzMatmulShape(f *testing.F) {
	f.Add(uint8(1), uint8(1), int64(3), int64(3), int64(0), int64(0), int64(0), int64(0))
	f.Add(uint8(3), uint8(2), int64(2), int64(3), int64(4), int64(4), int64(5), int64(0))
	f.Add(uint8(4), uint8(3), int64(2), int64(1), int64(3), int64(4), int64(5), int64(6))
	f.Add(uint8(2), uint8(2), int64(-1), int64(3), int64(3), int64(2), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, ra, rb uint8, d0, d1, d2, d3, d4, d5 int64) {
		dims := []int{int(d0), int(d1), int(d2), int(d3), int(d4), int(d5)}
		aS := fuzzShape(dims, int(ra%5))
		bS := fuzzShape(dims[2:], int(rb%5))
		out, gemms, err := matmulShape(aS, bS)
		if err != nil {
			var le *Error
			require.ErrorAs(t, err, &le)
			return
		}
		n := 1
		for _, d := range out {
			require.GreaterOrEqual(t, d, 0)
			n *= d
		}
		for _, g := range gemms {
			require.Equal(t, gemms[0], g)
			require.Positive(t, g.M*g.N*g.K)
		}
		if len(gemms) > 0 {
			require.Equal(t, n, len(gemms)*gemms[0].M*gemms[0].N, "output holds the GEMMs' results")
		}
		if prod(aS) > 1<<12 || prod(bS) > 1<<12 || n > 1<<12 {
			return
		}
		a, b := randSlice(1, prod(aS)), randSlice(2, prod(bS))
		_, got, err := matmul(aS, bS, a, b)
		require.NoError(t, err)
		batchRank := len(out) - btoi(len(aS) > 1) - btoi(len(bS) > 1)
		ref, mag, k := refMatmul(aS, bS, out[:batchRank], a, b)
		requireClose(t, k, got, ref, mag)
	})
}

// fuzzShape takes rank dimensions from dims, folded into [-1, 6] so shapes stay small and
// often broadcast; a large or negative input keeps its sign.
func fuzzShape(dims []int, rank int) []int {
	s := make([]int, 0, rank)
	for _, d := range dims[:min(rank, len(dims))] {
		switch {
		case d < 0:
			s = append(s, -1)
		default:
			s = append(s, d%7)
		}
	}
	return s
}

func prod(dims []int) int {
	p := 1
	for _, d := range dims {
		p *= d
	}
	return p
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func BenchmarkMatmulBatchedSmall(b *testing.B) {
	aS, bS := []int{64, 64, 64}, []int{64, 64, 64}
	x, y := randSlice(1, prod(aS)), randSlice(2, prod(bS))
	flops := 2.0 * 64 * 64 * 64 * 64
	b.Run(fmt.Sprintf("%v·%v", aS, bS), func(b *testing.B) {
		for b.Loop() {
			if _, _, err := matmul(aS, bS, x, y); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOPS")
	})
}

func TestBatchesCountInsteadOfListing(t *testing.T) {
	out, batches, err := matmulBatches([]int{16000, 1, 1, 1}, []int{1, 16000, 1, 1})
	require.NoError(t, err)
	assert.Equal(t, []int{16000, 16000, 1, 1}, out)
	assert.Equal(t, []GEMMBatch{{Shape: GEMMShape{M: 1, N: 1, K: 1}, Count: 16000 * 16000}}, batches)

	_, batches, err = matmulBatches([]int{3, 0, 4}, []int{4, 5})
	require.NoError(t, err)
	assert.Empty(t, batches, "an empty output has no GEMM")

	out4, batches, err := conv2DBatches(ConvParams{InputShape: [4]int{2, 6, 5, 5}, WeightShape: [4]int{6, 1, 3, 3},
		Stride: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 6})
	require.NoError(t, err)
	assert.Equal(t, [4]int{2, 6, 3, 3}, out4)
	// Depthwise: per group M = 1 filter, N = 2 images · 3·3 pixels, K = 1·3·3.
	assert.Equal(t, []GEMMBatch{{Shape: GEMMShape{M: 1, N: 18, K: 9}, Count: 6}}, batches)
}
