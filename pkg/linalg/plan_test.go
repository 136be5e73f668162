package linalg

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gemm plans and computes one GEMM, as the device server does.
func gemm(s GEMMShape, a, b []float32) ([]float32, error) {
	p, err := PlanGEMM(s)
	if err != nil {
		return nil, err
	}
	return p.Compute(a, b)
}

// matmul plans and computes torch.matmul(A, B).
func matmul(aShape, bShape []int, a, b []float32) ([]int, []float32, error) {
	p, err := PlanMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	out, err := p.Compute(a, b)
	if err != nil {
		return nil, nil, err
	}
	return p.OutShape(), out, nil
}

// conv2D plans and computes a convolution.
func conv2D(cp ConvParams, input, weight []float32) ([4]int, []float32, error) {
	p, err := PlanConv2D(cp)
	if err != nil {
		return [4]int{}, nil, err
	}
	out, err := p.Compute(input, weight)
	if err != nil {
		return [4]int{}, nil, err
	}
	return [4]int(p.OutShape()), out, nil
}

// listGEMMs expands a plan's batches into one GEMMShape per GEMM, for the tests that
// enumerate them.
func listGEMMs(p *Plan) []GEMMShape {
	var gemms []GEMMShape
	for _, b := range p.Batches() {
		for range b.Count {
			gemms = append(gemms, b.Shape)
		}
	}
	return gemms
}

func matmulShape(aShape, bShape []int) ([]int, []GEMMShape, error) {
	p, err := PlanMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	return p.OutShape(), listGEMMs(&p), nil
}

func matmulBatches(aShape, bShape []int) ([]int, []GEMMBatch, error) {
	p, err := PlanMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	return p.OutShape(), p.Batches(), nil
}

func conv2DShape(cp ConvParams) ([4]int, []GEMMShape, error) {
	p, err := PlanConv2D(cp)
	if err != nil {
		return [4]int{}, nil, err
	}
	return [4]int(p.OutShape()), listGEMMs(&p), nil
}

func conv2DBatches(cp ConvParams) ([4]int, []GEMMBatch, error) {
	p, err := PlanConv2D(cp)
	if err != nil {
		return [4]int{}, nil, err
	}
	return [4]int(p.OutShape()), p.Batches(), nil
}

// TestPlanSizes checks every count a Plan reports against sizes worked out by hand.
func TestPlanSizes(t *testing.T) {
	mustPlan := func(p Plan, err error) Plan {
		t.Helper()
		require.NoError(t, err)
		return p
	}
	tests := []struct {
		name      string
		plan      Plan
		kind      Kind
		out       []int
		inputs    [2]int
		outElems  int
		workspace int
		batches   []GEMMBatch
		flops     uint64
	}{
		{"gemm", mustPlan(PlanGEMM(GEMMShape{M: 4, N: 16, K: 8})), KindGEMM,
			[]int{4, 16}, [2]int{32, 128}, 64, 0, []GEMMBatch{{GEMMShape{M: 4, N: 16, K: 8}, 1}}, 2 * 4 * 16 * 8},
		{"gemm empty", mustPlan(PlanGEMM(GEMMShape{M: 4, N: 16, K: 0})), KindGEMM,
			[]int{4, 16}, [2]int{0, 0}, 64, 0, nil, 0},
		// LLaMA-70B's MLP up-projection for 8192 tokens: no tensor is needed to plan it.
		{"gemm llama-70b mlp", mustPlan(PlanGEMM(GEMMShape{M: 8192, N: 28672, K: 8192})), KindGEMM,
			[]int{8192, 28672}, [2]int{8192 * 8192, 8192 * 28672}, 8192 * 28672, 0,
			[]GEMMBatch{{GEMMShape{M: 8192, N: 28672, K: 8192}, 1}}, 2 * 8192 * 28672 * 8192},
		// Attention scores of 64 heads over 2048 tokens: 64 GEMMs of 2048×2048×128.
		{"matmul attention", mustPlan(PlanMatmul([]int{64, 2048, 128}, []int{64, 128, 2048})), KindMatmul,
			[]int{64, 2048, 2048}, [2]int{64 * 2048 * 128, 64 * 128 * 2048}, 64 * 2048 * 2048, 0,
			[]GEMMBatch{{GEMMShape{M: 2048, N: 2048, K: 128}, 64}}, 64 * 2 * 2048 * 2048 * 128},
		{"matmul dot", mustPlan(PlanMatmul([]int{3}, []int{3})), KindMatmul,
			[]int{}, [2]int{3, 3}, 1, 0, []GEMMBatch{{GEMMShape{M: 1, N: 1, K: 3}, 1}}, 6},
		{"matmul empty batch", mustPlan(PlanMatmul([]int{0, 2, 3}, []int{3, 4})), KindMatmul,
			[]int{0, 2, 4}, [2]int{0, 12}, 0, 0, nil, 0},
		// ResNet-50's stem: im2col of 3·7·7 rows by 112·112 columns.
		{"conv resnet stem", mustPlan(PlanConv2D(conv([4]int{1, 3, 224, 224}, [4]int{64, 3, 7, 7}, [2]int{2, 2}, [2]int{3, 3}, [2]int{1, 1}, 1))), KindConv2D,
			[]int{1, 64, 112, 112}, [2]int{3 * 224 * 224, 64 * 3 * 7 * 7}, 64 * 112 * 112, 147 * 12544,
			[]GEMMBatch{{GEMMShape{M: 64, N: 12544, K: 147}, 1}}, 2 * 64 * 12544 * 147},
		{"conv 1x1 needs no im2col", mustPlan(PlanConv2D(conv([4]int{2, 6, 5, 4}, [4]int{9, 2, 1, 1}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 3))), KindConv2D,
			[]int{2, 9, 5, 4}, [2]int{2 * 6 * 5 * 4, 9 * 2}, 2 * 9 * 5 * 4, 0,
			[]GEMMBatch{{GEMMShape{M: 3, N: 40, K: 2}, 3}}, 3 * 2 * 3 * 40 * 2},
		{"conv 1x1 padded", mustPlan(PlanConv2D(conv([4]int{1, 3, 3, 3}, [4]int{2, 3, 1, 1}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 1))), KindConv2D,
			[]int{1, 2, 5, 5}, [2]int{27, 6}, 50, 3 * 25,
			[]GEMMBatch{{GEMMShape{M: 2, N: 25, K: 3}, 1}}, 2 * 2 * 25 * 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.plan
			assert.Equal(t, tt.kind, p.Kind())
			assert.Equal(t, tt.out, p.OutShape())
			assert.Equal(t, tt.inputs, p.InputElems())
			assert.Equal(t, tt.outElems, p.OutElems())
			assert.Equal(t, tt.workspace, p.Workspace())
			assert.Equal(t, tt.batches, p.Batches())
			flops, err := p.FLOPs()
			require.NoError(t, err)
			assert.Equal(t, tt.flops, flops)
		})
	}
}

func TestPlanFLOPsOverflow(t *testing.T) {
	// 2·(2³¹−1)³ ≈ 2⁹⁴: a valid shape whose FLOPs no uint64 holds.
	p, err := PlanGEMM(GEMMShape{M: math.MaxInt32, N: math.MaxInt32, K: math.MaxInt32})
	require.NoError(t, err)
	_, err = p.FLOPs()
	require.ErrorIs(t, err, ErrOverflow)
	var le *Error
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "FLOPs", le.Field)

	// 2⁶³ exactly: 2·2²⁰·2²¹·2²¹ fits in a uint64; twice as many do not.
	p, err = PlanMatmul([]int{1 << 20, 1 << 21}, []int{1 << 21, 1 << 21})
	require.NoError(t, err)
	flops, err := p.FLOPs()
	require.NoError(t, err)
	assert.Equal(t, uint64(1)<<63, flops)
	p, err = PlanMatmul([]int{2, 1 << 20, 1 << 21}, []int{1 << 21, 1 << 21})
	require.NoError(t, err)
	_, err = p.FLOPs()
	require.ErrorIs(t, err, ErrOverflow)
}

func TestPlanComputeChecksOperands(t *testing.T) {
	var zero Plan
	_, err := zero.Compute(nil, nil)
	require.ErrorIs(t, err, ErrBadDim, "the zero Plan")

	p, err := PlanConv2D(conv([4]int{1, 4, 5, 5}, [4]int{2, 2, 3, 3}, [2]int{1, 1}, [2]int{0, 0}, [2]int{1, 1}, 2))
	require.NoError(t, err)
	_, err = p.Compute(make([]float32, 100), make([]float32, 35))
	require.ErrorIs(t, err, ErrLength)
	var le *Error
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "conv2d", le.Op)
	assert.Equal(t, "Weight", le.Field)

	p, err = PlanGEMM(GEMMShape{M: 2, N: 3, K: 4})
	require.NoError(t, err)
	_, err = p.Compute(make([]float32, 8), make([]float32, 13))
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "B", le.Field)
	assert.Contains(t, le.Detail, "[4 3]")
}

// ComputeInto gives Compute's result whatever dst held, in dst's storage when it is
// large enough and in new memory when not, for every kind of plan.
func TestPlanComputeInto(t *testing.T) {
	plan := func(p Plan, err error) Plan {
		require.NoError(t, err)
		return p
	}
	for _, tt := range []struct {
		name string
		p    Plan
	}{
		{"gemm", plan(PlanGEMM(GEMMShape{M: 5, N: 7, K: 3}))},
		{"matmul", plan(PlanMatmul([]int{2, 5, 3}, []int{3, 7}))},
		{"matmul K=0", plan(PlanMatmul([]int{2, 5, 0}, []int{0, 7}))},
		{"conv2d", plan(PlanConv2D(conv([4]int{2, 4, 6, 6}, [4]int{6, 2, 3, 3}, [2]int{1, 1}, [2]int{1, 1}, [2]int{1, 1}, 2)))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.p.InputElems()
			x, y := randSlice(1, in[0]), randSlice(2, in[1])
			require.NotZero(t, tt.p.OutElems())
			want, err := tt.p.Compute(x, y)
			require.NoError(t, err)

			dirty := make([]float32, tt.p.OutElems()+3)
			for i := range dirty {
				dirty[i] = float32(math.NaN())
			}
			got, err := tt.p.ComputeInto(x, y, dirty)
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.Same(t, &dirty[0], &got[0], "the result is in dst's storage")

			small := make([]float32, tt.p.OutElems()-1)
			got, err = tt.p.ComputeInto(x, y, small)
			require.NoError(t, err)
			assert.Equal(t, want, got)
			assert.NotSame(t, &small[0], &got[0], "a dst too small is not used")
		})
	}
}

// Planning is cheap: a Plan is a value with its shapes in arrays, so planning a GEMM
// allocates nothing, and a matmul or a convolution only its layout.
func TestPlanningDoesNotAllocate(t *testing.T) {
	a, b, v := []int{64, 2048, 128}, []int{64, 128, 2048}, []int{128}
	cp := conv([4]int{1, 3, 224, 224}, [4]int{64, 3, 7, 7}, [2]int{2, 2}, [2]int{3, 3}, [2]int{1, 1}, 1)
	for _, tt := range []struct {
		name   string
		allocs float64
		fn     func()
	}{
		{"gemm", 0, func() { _, _ = PlanGEMM(GEMMShape{M: 8192, N: 28672, K: 8192}) }},
		{"matmul", 1, func() { _, _ = PlanMatmul(a, b) }},
		{"vector", 1, func() { _, _ = PlanMatmul(v, b) }},
		{"conv2d", 1, func() { _, _ = PlanConv2D(cp) }},
	} {
		assert.Equal(t, tt.allocs, testing.AllocsPerRun(100, tt.fn), tt.name)
	}
}

func BenchmarkPlan(b *testing.B) {
	b.Run("gemm", func(b *testing.B) {
		for b.Loop() {
			if _, err := PlanGEMM(GEMMShape{M: 8192, N: 28672, K: 8192}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("matmul", func(b *testing.B) {
		x, y := []int{64, 2048, 128}, []int{64, 128, 2048}
		for b.Loop() {
			if _, err := PlanMatmul(x, y); err != nil {
				b.Fatal(err)
			}
		}
	})
}
