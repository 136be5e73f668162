package stack_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/refsst"
	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/stack"
)

// bmm is torch.bmm of [batch,m,k]·[batch,k,n] with every element 1: batch equal GEMMs of
// m×n×k, each output element k.
func bmm(batch, m, n, k int) *deviceserver.Op {
	a := make([]float32, batch*m*k)
	b := make([]float32, batch*k*n)
	for i := range a {
		a[i] = 1
	}
	for i := range b {
		b[i] = 1
	}
	return &deviceserver.Op{Type: deviceserver.OpMatmul, Matmul: &deviceserver.Matmul{
		AShape: []int{batch, m, k}, BShape: []int{batch, k, n}, A: a, B: b}}
}

// TestBatchedMatmulGPU: a batched matmul on the gpu model is one BATCHED_GEMM through
// layers 2–5, answered with perfmodel.EstimateBatched, cheaper than batch GEMMs.
func TestBatchedMatmulGPU(t *testing.T) {
	preset, err := perfmodel.LookupPreset("h100-sxm")
	require.NoError(t, err)
	st := build(t, stack.Options{Model: perfmodel.KindGPU, Params: preset.Params, Preset: preset.Name})
	ready(t, st)
	model, err := perfmodel.New(perfmodel.KindGPU, preset.Params)
	require.NoError(t, err)

	const batch, m, n, k = 12, 64, 48, 32
	res, err := st.Server().Execute(context.Background(), bmm(batch, m, n, k))
	require.NoError(t, err)
	assert.Equal(t, []int{batch, m, n}, res.Shape)
	assert.Equal(t, float32(k), res.Data[len(res.Data)-1])
	op := perfmodel.Op{M: m, N: n, K: k, DtypeSize: 4}
	want, err := perfmodel.EstimateBatched(model, op, batch)
	require.NoError(t, err)
	one, err := model.Estimate(op)
	require.NoError(t, err)
	tm := res.Timing
	require.True(t, tm.Timed, "%v", tm.UntimedErr)
	assert.Equal(t, 1, tm.Requests, "one request for the batch")
	assert.Equal(t, protocol.ReqBatchedGEMM, tm.Kind)
	assert.Equal(t, want.Cycles, tm.Cycles)
	assert.Equal(t, want.ComputeCycles, tm.ComputeCycles)
	assert.Equal(t, want.MemoryCycles, tm.MemoryCycles)
	assert.Equal(t, want.MemoryBytes, tm.MemoryBytes)
	assert.Less(t, tm.Cycles, batch*one.Cycles, "one kernel, the fixed cost paid once")
	s := st.Stats().SST
	assert.Equal(t, uint64(1), s.Requests[protocol.ReqBatchedGEMM])
	assert.Zero(t, s.Requests[protocol.ReqGEMM])
	assert.Equal(t, uint64(batch), s.GEMM.Batched.Sum)
}

// TestBatchedEqualsCountTimesSingle: for every model but gpu, the batched answer through
// the stack is exactly count × one GEMM's.
func TestBatchedEqualsCountTimesSingle(t *testing.T) {
	for _, p := range perfmodel.Presets() {
		for _, kind := range perfmodel.Kinds() {
			if kind == perfmodel.KindGPU {
				continue
			}
			t.Run(p.Name+"/"+kind, func(t *testing.T) {
				if _, err := perfmodel.New(kind, p.Params); err != nil {
					t.Skipf("%s does not build on %s: %v", kind, p.Name, err)
				}
				st := build(t, stack.Options{Model: kind, Params: p.Params})
				ready(t, st)
				g := linalg.GEMMShape{M: 33, N: 70, K: 129}
				single := st.Server().Time(context.Background(), []linalg.GEMMShape{g})
				const count = 7
				gemms := make([]linalg.GEMMShape, count)
				for i := range gemms {
					gemms[i] = g
				}
				batched := st.Server().Time(context.Background(), gemms)
				require.True(t, single.Timed && batched.Timed)
				assert.Equal(t, 1, batched.Requests)
				assert.Equal(t, protocol.ReqBatchedGEMM, batched.Kind)
				assert.Equal(t, count*single.Cycles, batched.Cycles)
				assert.Equal(t, count*single.ComputeCycles, batched.ComputeCycles)
				assert.Equal(t, count*single.MemoryCycles, batched.MemoryCycles)
				assert.Equal(t, count*single.MemoryBytes, batched.MemoryBytes)
			})
		}
	}
}

// TestBatchedFallbackAgainstRealSST: the fakes of the real component refuse BATCHED_GEMM;
// the tutorial's has its batches timed as GEMM × count, the shipped one as COMPUTE ×
// count, and no op is lost in the switch.
func TestBatchedFallbackAgainstRealSST(t *testing.T) {
	const count, m, n, k = 5, 4, 16, 8
	for _, tt := range []struct {
		kind      refsst.Kind
		cycles    uint64 // of one GEMM
		want      protocol.RequestType
		firstSent int // requests of the op that finds out
	}{
		{refsst.Tutorial, func() uint64 { c, _, _, _ := refsst.TutorialGEMMCycles(m, n, k, 4); return c }(), protocol.ReqGEMM, 2},
		{refsst.Shipped, refsst.ComputeCost * 2 * m * n * k, protocol.ReqCompute, 3},
	} {
		t.Run(tt.kind.String(), func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "sst.sock")
			fake, err := refsst.Listen(sock, tt.kind)
			require.NoError(t, err)
			t.Cleanup(func() { _ = fake.Close() })
			st := build(t, stack.Options{SSTSocket: sock})
			ready(t, st)
			gemms := make([]linalg.GEMMShape, count)
			for i := range gemms {
				gemms[i] = linalg.GEMMShape{M: m, N: n, K: k}
			}
			for i, sent := range []int{tt.firstSent, 1} {
				tm := st.Server().Time(context.Background(), gemms)
				require.True(t, tm.Timed, "op %d: %v", i, tm.UntimedErr)
				assert.Equal(t, count*tt.cycles, tm.Cycles, "op %d", i)
				assert.Equal(t, tt.want, tm.Kind, "op %d", i)
				assert.Equal(t, sent, tm.Requests, fmt.Sprintf("op %d: the refusals count as sent", i))
			}
		})
	}
}
