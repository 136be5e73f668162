package perfmodel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tinyGPU is a GPU small enough to work by hand: 4 SMs, 2 FP32 / 8 tensor FLOP per SM
// per cycle, a 100-byte L2, only 32×32 tiles, 0.5 cycle of staging per element and step,
// a 1 ns fixed cost at 1 GHz (1 cycle) and 1 GB/s (1 byte per cycle).
func tinyGPU(t *testing.T) Params {
	t.Helper()
	mask, err := GPUTileMask("32x32")
	require.NoError(t, err)
	return Params{BandwidthGBps: 1, ClockGHz: 1, GPU: GPUParams{
		SMs: 4, FP32FLOPsPerSM: 2, TensorFLOPsPerSM: 8, L2Bytes: 100,
		Tiles: mask, BatchedTiles: mask, StageMilli: 500, KernelNs: 1,
	}}
}

type batchedCase struct {
	name  string
	op    Op
	batch uint64
	want  Estimate
}

func runBatchedCases(t *testing.T, m Model, cases []batchedCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EstimateBatched(m, tc.op, tc.batch)
			require.NoError(t, err)
			assertEstimate(t, tc.want, got)
			if tc.batch == 1 {
				single, err := m.Estimate(tc.op)
				require.NoError(t, err)
				assert.Equal(t, single, got, "Estimate = EstimateBatched(op, 1)")
			}
		})
	}
}

func TestGPUTiny(t *testing.T) {
	m := mustNew(t, KindGPU, tinyGPU(t))
	assert.Equal(t, "gpu", m.Name())
	runBatchedCases(t, m, []batchedCase{
		{
			// 32×32 tiles: tM = 2, tN = 4, 8 tiles on 4 SMs = 2 waves, 2·10 = 20 k steps.
			// mma = 20·2·32·32/2 = 20480; stage = 20·64·500/1000 = 640; fixed = 1 ns · 1000 MHz = 1.
			// (M·K + K·N)·4 = 7680 > 100 bytes of L2: waves of wc = min(4, isqrt 4) = 2 tile
			// columns by wr = min(2, 4/2) = 2 rows: A read ceil(4/2) = 2 times, B once:
			// (640·2 + 1280 + 8192)·4 = 43008 bytes, one per cycle, + 1.
			name: "fp32, L2 overflow", op: Op{M: 64, N: 128, K: 10, DtypeSize: 4}, batch: 1,
			want: Estimate{FLOPs: 163840, ComputeCycles: 21121, MemoryBytes: 43008, MemoryCycles: 43009,
				Cycles: 43009, Bound: BoundMemory, Utilization: 163840.0 / (43009 * 8)},
		},
		{
			// 2-byte elements use the tensor rate and no staging: mma = 20·2048/8 = 5120.
			name: "bf16, L2 overflow", op: Op{M: 64, N: 128, K: 10, DtypeSize: 2}, batch: 1,
			want: Estimate{FLOPs: 163840, ComputeCycles: 5121, MemoryBytes: 21504, MemoryCycles: 21505,
				Cycles: 21505, Bound: BoundMemory, Utilization: 163840.0 / (21505 * 32)},
		},
		{
			// One 32×32 tile per GEMM, 3 GEMMs: 3 tiles in 1 wave (not 3 kernels): 5 k steps,
			// mma = 5·1024 = 5120, stage = ceil(5·64·0.5) = 160. (32·5 + 5·32)·4 = 1280 > 100:
			// wc = min(1, 2) = 1, wr = min(1, 4) = 1, no re-reads: (160+160+1024)·3·4 = 16128.
			name: "batch of 3 shares one wave", op: Op{M: 32, N: 32, K: 5, DtypeSize: 4}, batch: 3,
			want: Estimate{FLOPs: 3 * 10240, ComputeCycles: 5281, MemoryBytes: 16128, MemoryCycles: 16129,
				Cycles: 16129, Bound: BoundMemory, Utilization: 30720.0 / (16129 * 8)},
		},
		{
			// Edge tiles are whole tiles: 33×1×1 takes 2 tiles (1 wave), 1 k step:
			// mma = 2048/2 = 1024, stage = ceil(64·0.5) = 32. (33 + 1)·4 = 136 > 100 bytes of L2,
			// but wc = min(1, 2) = 1, wr = min(2, 4) = 2 cover the grid: no re-reads; (33 + 1 + 33)·4 = 268.
			name: "edge tiles", op: Op{M: 33, N: 1, K: 1, DtypeSize: 4}, batch: 1,
			want: Estimate{FLOPs: 66, ComputeCycles: 1057, MemoryBytes: 268, MemoryCycles: 269,
				Cycles: 1057, Bound: BoundCompute, Utilization: 66.0 / (1057 * 8)},
		},
	})
}

func TestGPUA100(t *testing.T) {
	m := mustNew(t, KindGPU, presetParams(t, "a100-pcie-40gb"))
	// fixed = ceil(3000 ns · 1410 MHz / 1000) = 4230 cycles; 1555 GB/s at 1410 MHz.
	runBatchedCases(t, m, []batchedCase{
		{
			// NeuSight's smallest A100 bmm. Batched tiles: 128×128 only. 12·2·2 = 48 tiles,
			// 1 wave of 108 SMs, 64 k steps: mma = 64·2·128²/128 = 16384, stage =
			// ceil(64·256·0.110) = ceil(1802.24) = 1803; 4230 + 18187 = 22417.
			// Operands 25088·4 bytes fit in 40 MiB: 12·(12544+12544+38416)·4 = 3048192 bytes,
			// floor(3048192·1410/1555000) = 2763, + 4230 = 6993.
			name: "bmm 12×196×196×64", op: Op{M: 196, N: 196, K: 64, DtypeSize: 4}, batch: 12,
			want: Estimate{FLOPs: 59006976, ComputeCycles: 22417, MemoryBytes: 3048192, MemoryCycles: 6993,
				Cycles: 22417, Bound: BoundCompute, Utilization: 59006976.0 / (22417 * 13824)},
		},
		{
			// NeuSight's smallest A100 linear. Candidates (catalogue order) and cycles:
			// 128×128: 24 tiles, 768·256 + ceil(768·256·0.11) = 196608 + 21627 = 218235;
			// 64×128: 48 tiles, 98304 + 16221 = 114525; 64×64: 96 tiles, 49152 + 10814 = 59966;
			// 128×32 and 32×128: 96 tiles, 49152 + 13517 = 62669; 32×64: 192 tiles = 2 waves,
			// 49152 + 16221 = 65373; 32×32: 384 tiles = 4 waves, 49152 + 21627 = 70779.
			// 64×64 wins: 4230 + 59966 = 64196 cycles = 45.5 µs (measured 94.8 µs − 48 µs offset = 46.8).
			// Bytes (393216 + 589824 + 393216)·4 = 5505024 → 4991 + 4230.
			name: "linear 512×768×768", op: Op{M: 512, N: 768, K: 768, DtypeSize: 4}, batch: 1,
			want: Estimate{FLOPs: 603979776, ComputeCycles: 64196, MemoryBytes: 5505024, MemoryCycles: 9221,
				Cycles: 64196, Bound: BoundCompute, Utilization: 603979776.0 / (64196 * 13824)},
		},
	})
}

// A batched GEMM is one kernel: its tiles share waves and it pays the fixed cost once, so
// on the gpu model it is cheaper than batch separate GEMMs; other models answer batch × single.
func TestEstimateBatchedEveryModel(t *testing.T) {
	op := Op{M: 196, N: 196, K: 64, DtypeSize: 4}
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			m := mustNew(t, kind, presetParams(t, "a100-pcie-40gb"))
			single, err := m.Estimate(op)
			require.NoError(t, err)
			got, err := EstimateBatched(m, op, 12)
			require.NoError(t, err)
			assert.Equal(t, 12*single.FLOPs, got.FLOPs)
			if kind == KindGPU {
				assert.Less(t, got.Cycles, 12*single.Cycles)
				return
			}
			want := single
			want.FLOPs, want.MemoryBytes = 12*single.FLOPs, 12*single.MemoryBytes
			want.ComputeCycles, want.MemoryCycles, want.Cycles = 12*single.ComputeCycles, 12*single.MemoryCycles, 12*single.Cycles
			assert.Equal(t, want, got)
		})
	}
}

func TestEstimateBatchedErrors(t *testing.T) {
	for _, kind := range Kinds() {
		m := mustNew(t, kind, presetParams(t, "h100-sxm"))
		_, err := EstimateBatched(m, Op{M: 4, N: 16, K: 8, DtypeSize: 4}, 0)
		require.ErrorIs(t, err, ErrInvalidOp, kind)
		var ie *InvalidOpError
		require.ErrorAs(t, err, &ie)
		assert.Equal(t, "Batch", ie.Field)
		_, err = EstimateBatched(m, Op{M: 0, N: 16, K: 8, DtypeSize: 4}, 2)
		require.ErrorIs(t, err, ErrInvalidOp, kind)
		// 2·2^32·2^31 FLOPs = 2^64: fits for no model once batched by 2.
		_, err = EstimateBatched(m, Op{M: 1 << 31, N: 1 << 31, K: 1, DtypeSize: 1}, 2)
		require.ErrorIs(t, err, ErrOverflow, kind)
		assert.Contains(t, err.Error(), "of batch 2", kind)
	}
}

func TestGPUPresets(t *testing.T) {
	for _, tc := range []struct {
		name         string
		kind         string
		sms, fp32    uint64
		tensor       uint64
		bwGBps       float64
		clockGHz     float64
		l2           uint64
		fp32TFLOPS   float64
		tensorTFLOPS float64
	}{
		{"a100-pcie-40gb", KindGPU, 108, 128, 2048, 1555, 1.41, 40 << 20, 19.5, 312},
		{"a100-80gb-pcie", KindGPU, 108, 128, 2048, 1935, 1.41, 40 << 20, 19.5, 312},
		{"h100-sxm", KindRoofline, 132, 256, 3786, 3350, 1.98, 50 << 20, 66.9, 989.4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := LookupPreset(tc.name)
			require.NoError(t, err)
			assert.Equal(t, tc.kind, pr.Model)
			g := pr.Params.GPU
			assert.Equal(t, [4]uint64{tc.sms, tc.fp32, tc.tensor, tc.l2}, [4]uint64{g.SMs, g.FP32FLOPsPerSM, g.TensorFLOPsPerSM, g.L2Bytes})
			assert.Equal(t, tc.bwGBps, pr.Params.BandwidthGBps)
			assert.Equal(t, tc.clockGHz, pr.Params.ClockGHz)
			// The datasheet peaks, within rounding: SMs · rate · clock.
			assert.InDelta(t, tc.fp32TFLOPS, float64(g.SMs*g.FP32FLOPsPerSM)*tc.clockGHz/1000, 0.1)
			assert.InDelta(t, tc.tensorTFLOPS, float64(g.SMs*g.TensorFLOPsPerSM)*tc.clockGHz/1000, 0.5)
			m := mustNew(t, KindGPU, pr.Params)
			assert.Equal(t, KindGPU, m.Name())
		})
	}
	// --model roofline --preset h100-sxm is unchanged: the preset's default is still the roofline.
	m, err := FromPreset("h100-sxm")
	require.NoError(t, err)
	assert.Equal(t, KindRoofline, m.Name())
}

func TestGPUParamErrors(t *testing.T) {
	base := tinyGPU(t)
	for _, tc := range []struct {
		name  string
		edit  func(p *Params)
		param string
	}{
		{"zero SMs", func(p *Params) { p.GPU.SMs = 0 }, "GPU.SMs"},
		{"zero FP32 rate", func(p *Params) { p.GPU.FP32FLOPsPerSM = 0 }, "GPU.FP32FLOPsPerSM"},
		{"zero tensor rate", func(p *Params) { p.GPU.TensorFLOPsPerSM = 0 }, "GPU.TensorFLOPsPerSM"},
		{"zero L2", func(p *Params) { p.GPU.L2Bytes = 0 }, "GPU.L2Bytes"},
		{"zero staging", func(p *Params) { p.GPU.StageMilli = 0 }, "GPU.StageMilli"},
		{"zero fixed cost", func(p *Params) { p.GPU.KernelNs = 0 }, "GPU.KernelNs"},
		{"no tiles", func(p *Params) { p.GPU.Tiles = 0 }, "GPU.Tiles"},
		{"tile beyond the catalogue", func(p *Params) { p.GPU.BatchedTiles = 1 << 11 }, "GPU.BatchedTiles"},
		{"bad clock", func(p *Params) { p.ClockGHz = 1.0005 }, "ClockGHz"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base
			tc.edit(&p)
			_, err := New(KindGPU, p)
			require.ErrorIs(t, err, ErrInvalidParam)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.param, pe.Param)
			assert.Equal(t, KindGPU, pe.Kind)
		})
	}
	_, err := GPUTileMask("128x128", "16x16")
	require.ErrorIs(t, err, ErrInvalidParam)
	assert.Contains(t, err.Error(), "16x16")
	assert.Equal(t, []string{"256x128", "128x256", "128x128", "128x64", "64x128", "64x64", "128x32", "32x128", "64x32", "32x64", "32x32"}, GPUTileCatalogue())
}

func TestGPUSetParams(t *testing.T) {
	p := presetParams(t, "a100-pcie-40gb")
	for _, tc := range []struct {
		id    ParamID
		value uint64
		got   func(p Params) uint64
	}{
		{ParamGPUSMs, 132, func(p Params) uint64 { return p.GPU.SMs }},
		{ParamGPUFP32FLOPsPerSM, 256, func(p Params) uint64 { return p.GPU.FP32FLOPsPerSM }},
		{ParamGPUTensorFLOPsPerSM, 4096, func(p Params) uint64 { return p.GPU.TensorFLOPsPerSM }},
		{ParamGPUL2Bytes, 50 << 20, func(p Params) uint64 { return p.GPU.L2Bytes }},
		{ParamGPUTiles, 1, func(p Params) uint64 { return p.GPU.Tiles }},
		{ParamGPUBatchedTiles, 1<<11 - 1, func(p Params) uint64 { return p.GPU.BatchedTiles }},
		{ParamGPUStageMilli, 7, func(p Params) uint64 { return p.GPU.StageMilli }},
		{ParamGPUKernelNs, 2500, func(p Params) uint64 { return p.GPU.KernelNs }},
	} {
		t.Run(tc.id.String(), func(t *testing.T) {
			q := p
			require.NoError(t, q.Set(tc.id, tc.value))
			assert.Equal(t, tc.value, tc.got(q))
			back, err := q.Get(tc.id)
			require.NoError(t, err)
			assert.Equal(t, tc.value, back)
			_, err = New(KindGPU, q)
			require.NoError(t, err)
			before := q
			require.ErrorIs(t, q.Set(tc.id, 0), ErrInvalidParam)
			assert.Equal(t, before, q, "a failed Set changes nothing")
		})
	}
	for _, id := range []ParamID{ParamGPUTiles, ParamGPUBatchedTiles} {
		q := p
		require.ErrorIs(t, q.Set(id, 1<<11), ErrInvalidParam, id.String())
		assert.Equal(t, p, q)
	}
}

func TestISqrt(t *testing.T) {
	for _, tc := range [][2]uint64{{0, 0}, {1, 1}, {3, 1}, {4, 2}, {108, 10}, {132, 11}, {1<<64 - 1, 1<<32 - 1}, {1 << 62, 1 << 31}} {
		assert.Equal(t, tc[1], isqrt(tc[0]), "isqrt(%d)", tc[0])
	}
}

func BenchmarkGPU(b *testing.B) { benchmarkModel(b, "a100-pcie-40gb") }

// BenchmarkGPUBatched times one batched estimate with the H100's eight candidate tiles.
func BenchmarkGPUBatched(b *testing.B) {
	m, err := New(KindGPU, presetParams(b, "h100-sxm"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sink uint64
	for b.Loop() {
		e, err := EstimateBatched(m, Op{M: 196, N: 196, K: 64, DtypeSize: 4}, 384)
		if err != nil {
			b.Fatal(err)
		}
		sink += e.Cycles
	}
	_ = sink
}
