package perfmodel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tpuParams is tpu-128 (R = C = 128, 700 MHz, 350 GB/s = 500 bytes/cycle, so
// memory = floor(bytes·700/350000) = floor(bytes/500)) with the given dataflow.
// Peak = 2·128·128 = 32768 FLOP/cycle.
func tpuParams(t testing.TB, d Dataflow) Params {
	p := presetParams(t, "tpu-128")
	p.Dataflow = d
	return p
}

const tpuPeak = 2 * 128 * 128

func TestSystolicPaperMapping(t *testing.T) {
	op := Op{M: 2, N: 3, K: 5, DtypeSize: 1}
	for _, tc := range []struct {
		d          Dataflow
		sr, sc, tt uint64
	}{
		{OutputStationary, 2, 3, 5}, // Sr = M, Sc = N, T = K
		{WeightStationary, 5, 3, 2}, // Sr = K, Sc = N, T = M
		{InputStationary, 5, 2, 3},  // Sr = K, Sc = M, T = N
	} {
		t.Run(tc.d.String(), func(t *testing.T) {
			sr, sc, tt := tc.d.Mapping(op)
			assert.Equal(t, [3]uint64{tc.sr, tc.sc, tc.tt}, [3]uint64{sr, sc, tt})
		})
	}
}

func TestSystolicPaperOutputStationary(t *testing.T) {
	m := mustNew(t, KindSystolicPaper, tpuParams(t, OutputStationary))
	assert.Equal(t, "systolic-paper", m.Name())
	runEstimateCases(t, m, []estimateCase{
		{
			// Fits the array: Sr = 4, Sc = 4, T = 4, one fold of 2·4 + 4 + 4 - 2 = 14 cycles
			// (the paper's 2·Sr + Sc + T - 2). bytes = 3·16·4 = 192 → 192/500 = 0.
			name: "4 cube fits",
			op:   Op{M: 4, N: 4, K: 4, DtypeSize: 4},
			want: Estimate{FLOPs: 128, ComputeCycles: 14, MemoryBytes: 192, MemoryCycles: 0, Cycles: 14,
				Bound: BoundCompute, Utilization: 128.0 / (14 * tpuPeak)},
		},
		{
			// 200×130×50: Sr = 200, Sc = 130, T = 50; folds = ceil(200/128)·ceil(130/128) = 2·2 = 4,
			// each 2·128 + 128 + 50 - 2 = 432 → 1728. flops = 2·200·130·50 = 2600000.
			// bytes = (A·colFolds + B·rowFolds + C)·2 = (10000·2 + 6500·2 + 26000)·2 = 59000·2 = 118000 → 236.
			name: "200x130x50 folds on both axes",
			op:   Op{M: 200, N: 130, K: 50, DtypeSize: 2},
			want: Estimate{FLOPs: 2600000, ComputeCycles: 1728, MemoryBytes: 118000, MemoryCycles: 236, Cycles: 1728,
				Bound: BoundCompute, Utilization: 2600000.0 / (1728 * tpuPeak)},
		},
		{
			// Sr = Sc = 1, T = 1000: one fold of 2 + 1 + 1000 - 2 = 1001 cycles;
			// bytes = (1000 + 1000 + 1)·1000 = 2001000 → 4002 cycles: memory-bound.
			name: "M=N=1 memory-bound",
			op:   Op{M: 1, N: 1, K: 1000, DtypeSize: 1000},
			want: Estimate{FLOPs: 2000, ComputeCycles: 1001, MemoryBytes: 2001000, MemoryCycles: 4002, Cycles: 4002,
				Bound: BoundMemory, Utilization: 2000.0 / (4002 * tpuPeak)},
		},
		{
			// Sr = 2^32-1 → rowFolds = ceil((2^32-1)/128) = 2^25, colFolds = 1, T = 1;
			// per fold 2·128 + 1 + 1 - 2 = 256 → compute = 2^25·2^8 = 2^33 = 8589934592.
			// bytes = ((2^32-1)·1 + 1·2^25 + (2^32-1))·2 = 8623489022·2 = 17246978044 → /500 = 34493956.
			name: "M=2^32-1",
			op:   Op{M: max32, N: 1, K: 1, DtypeSize: 2},
			want: Estimate{FLOPs: 8589934590, ComputeCycles: 8589934592, MemoryBytes: 17246978044, MemoryCycles: 34493956,
				Cycles: 8589934592, Bound: BoundCompute, Utilization: 8589934590.0 / (8589934592.0 * tpuPeak)},
		},
	})
}

func TestSystolicPaperWeightStationary(t *testing.T) {
	runEstimateCases(t, mustNew(t, KindSystolicPaper, tpuParams(t, WeightStationary)), []estimateCase{
		{
			// 128³ bf16: Sr = K = 128, Sc = N = 128, T = M = 128; one fold of
			// 2·128 + 128 + 128 - 2 = 510 cycles; bytes = 3·16384·2 = 98304 → 196.
			// util = 2·128³/(510·32768) = 128/510.
			name: "128 cube exactly one fold",
			op:   Op{M: 128, N: 128, K: 128, DtypeSize: 2},
			want: Estimate{FLOPs: 4194304, ComputeCycles: 510, MemoryBytes: 98304, MemoryCycles: 196, Cycles: 510,
				Bound: BoundCompute, Utilization: 128.0 / 510},
		},
		{
			// M = 1 (GEMV): Sr = K = 4096, Sc = N = 4096, T = 1; folds = 32·32 = 1024, each
			// 2·128 + 128 + 1 - 2 = 383 → 392192. bytes = (A·ceil(N/C) + B + C·ceil(K/R))·2
			// = (4096·32 + 16777216 + 4096·32)·2 = 17039360·2 = 34078720 → 68157.
			name: "M=1 GEMV",
			op:   Op{M: 1, N: 4096, K: 4096, DtypeSize: 2},
			want: Estimate{FLOPs: 33554432, ComputeCycles: 392192, MemoryBytes: 34078720, MemoryCycles: 68157,
				Cycles: 392192, Bound: BoundCompute, Utilization: 33554432.0 / (392192 * tpuPeak)},
		},
		{
			// Sr = K = 50 (fits), Sc = N = 130 → 2 column folds, T = M = 200;
			// per fold 2·50 + 128 + 200 - 2 = 426 → 852.
			// bytes = (10000·2 + 6500 + 26000·1)·2 = 52500·2 = 105000 → 210.
			name: "200x130x50",
			op:   Op{M: 200, N: 130, K: 50, DtypeSize: 2},
			want: Estimate{FLOPs: 2600000, ComputeCycles: 852, MemoryBytes: 105000, MemoryCycles: 210, Cycles: 852,
				Bound: BoundCompute, Utilization: 2600000.0 / (852 * tpuPeak)},
		},
		{
			// T = M = 2^32-1, one fold of 2·1 + 1 + (2^32-1) - 2 = 2^32 cycles.
			// bytes = ((2^32-1) + 1 + (2^32-1))·2 = (2^33-1)·2 = 17179869182 → 34359738.
			name: "M=2^32-1 streams as T",
			op:   Op{M: max32, N: 1, K: 1, DtypeSize: 2},
			want: Estimate{FLOPs: 8589934590, ComputeCycles: 1 << 32, MemoryBytes: 17179869182, MemoryCycles: 34359738,
				Cycles: 1 << 32, Bound: BoundCompute, Utilization: 8589934590.0 / (4294967296.0 * tpuPeak)},
		},
	})
}

func TestSystolicPaperInputStationary(t *testing.T) {
	runEstimateCases(t, mustNew(t, KindSystolicPaper, tpuParams(t, InputStationary)), []estimateCase{
		{
			// Sr = K = 50 (fits), Sc = M = 200 → 2 column folds, T = N = 130;
			// per fold 2·50 + 128 + 130 - 2 = 356 → 712.
			// bytes = (10000 + 6500·2 + 26000·1)·2 = 49000·2 = 98000 → 196.
			name: "200x130x50",
			op:   Op{M: 200, N: 130, K: 50, DtypeSize: 2},
			want: Estimate{FLOPs: 2600000, ComputeCycles: 712, MemoryBytes: 98000, MemoryCycles: 196, Cycles: 712,
				Bound: BoundCompute, Utilization: 2600000.0 / (712 * tpuPeak)},
		},
		{
			// Sc = M = 2^32-1 → 2^25 column folds of 2·1 + 128 + 1 - 2 = 129 → 4328521728.
			// bytes = ((2^32-1) + 1·2^25 + (2^32-1))·2 = 17246978044 → 34493956.
			name: "M=2^32-1 folds over columns",
			op:   Op{M: max32, N: 1, K: 1, DtypeSize: 2},
			want: Estimate{FLOPs: 8589934590, ComputeCycles: 4328521728, MemoryBytes: 17246978044, MemoryCycles: 34493956,
				Cycles: 4328521728, Bound: BoundCompute, Utilization: 8589934590.0 / (4328521728.0 * tpuPeak)},
		},
	})
	small := Params{ArrayRows: 8, ArrayCols: 4, Dataflow: InputStationary, BandwidthGBps: 1, ClockGHz: 1}
	runEstimateCases(t, mustNew(t, KindSystolicPaper, small), []estimateCase{{
		// 129×1×129 on an 8×4 array at 1 byte/cycle: Sr = K = 129 → 17 row folds,
		// Sc = M = 129 → 33 column folds, T = N = 1; per fold 2·8 + 4 + 1 - 2 = 19 → 561·19 = 10659.
		// bytes = A + B·33 + C·17 = 16641 + 129·33 + 129·17 = 16641 + 4257 + 2193 = 23091 → 23091 cycles.
		// Peak 2·8·4 = 64 FLOP/cycle; flops = 2·129·129 = 33282.
		name: "non-square array, neither axis divides",
		op:   Op{M: 129, N: 1, K: 129, DtypeSize: 1},
		want: Estimate{FLOPs: 33282, ComputeCycles: 10659, MemoryBytes: 23091, MemoryCycles: 23091, Cycles: 23091,
			Bound: BoundMemory, Utilization: 33282.0 / (23091 * 64)},
	}})
}

func TestSystolicPaperOverflow(t *testing.T) {
	one := tpuParams(t, OutputStationary)
	one.ArrayRows, one.ArrayCols = 1, 1
	for _, tc := range []struct {
		name     string
		p        Params
		op       Op
		quantity string
	}{
		{"flops", tpuParams(t, WeightStationary), Op{M: max32, N: max32, K: max32, DtypeSize: 2}, "flops"},
		// On a 1×1 array flops = 2^64 - 2^32 and compute = (2^32-1)·2^31·2 fit, but A is
		// re-read 2^31 times and B 2^32-1 times: about 3·2^63 bytes.
		{"memory bytes", one, Op{M: max32, N: 1 << 31, K: 1, DtypeSize: 1}, "memory bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustNew(t, KindSystolicPaper, tc.p).Estimate(tc.op)
			require.ErrorIs(t, err, ErrOverflow)
			var oe *OverflowError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.quantity, oe.Quantity)
			assert.Equal(t, KindSystolicPaper, oe.Model)
		})
	}
}

func TestSystolicPaperInvalidParams(t *testing.T) {
	base := tpuParams(t, WeightStationary)
	for _, tc := range []struct {
		param  string
		mutate func(*Params)
	}{
		{"ArrayRows", func(p *Params) { p.ArrayRows = 0 }},
		{"ArrayCols", func(p *Params) { p.ArrayCols = 0 }},
		{"Dataflow", func(p *Params) { p.Dataflow = 3 }},
		{"BandwidthGBps", func(p *Params) { p.BandwidthGBps = 2e9 }}, // above MaxRateMilli MB/s
		{"ClockGHz", func(p *Params) { p.ClockGHz = 0.0001 }},        // below 1 MHz
	} {
		t.Run(tc.param, func(t *testing.T) {
			p := base
			tc.mutate(&p)
			_, err := New(KindSystolicPaper, p)
			require.ErrorIs(t, err, ErrInvalidParam)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.param, pe.Param)
			assert.Equal(t, KindSystolicPaper, pe.Kind)
		})
	}
}
