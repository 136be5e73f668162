package perfmodel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tiled-256: 256³ tiles at 524288 cycles each (peak 2·256³/524288 = 64 FLOP/cycle),
// memory = floor(bytes·1410/900000), bytes = (M·K·tN + K·N·tM + M·N)·dtype.
func TestTiledTutorial(t *testing.T) {
	m := mustNew(t, KindTiled, presetParams(t, "tiled-256"))
	assert.Equal(t, "tiled", m.Name())
	runEstimateCases(t, m, []estimateCase{
		{
			// One full tile: 524288 cycles; bytes = 3·65536·4 = 786432 → ·1410/900000 = 1232.08 → 1232;
			// flops = 2·256³ = 33554432 = 524288·64, so utilization 1.
			name: "one full tile",
			op:   Op{M: 256, N: 256, K: 256, DtypeSize: 4},
			want: Estimate{FLOPs: 33554432, ComputeCycles: 524288, MemoryBytes: 786432, MemoryCycles: 1232,
				Cycles: 524288, Bound: BoundCompute, Utilization: 1},
		},
		{
			// M = 257 needs tM = 2 tiles, the second holding one row but costing a full tile:
			// compute = 2·524288 = 1048576; util = 2·257·256·256/(1048576·64) = 33685504/67108864.
			// bytes = (257·256·1 + 256·256·2 + 257·256)·4 = (65792 + 131072 + 65792)·4 = 1050624
			//   → ·1410/900000 = 1645.98 → 1645.
			name: "M=257 partial edge tile",
			op:   Op{M: 257, N: 256, K: 256, DtypeSize: 4},
			want: Estimate{FLOPs: 33685504, ComputeCycles: 1048576, MemoryBytes: 1050624, MemoryCycles: 1645,
				Cycles: 1048576, Bound: BoundCompute, Utilization: 33685504.0 / 67108864},
		},
		{
			// M = 1: tiles = 1·16·16 = 256 → 134217728 cycles; util = 33554432/(134217728·64) = 1/256.
			// bytes = (1·4096·16 + 4096·4096·1 + 1·4096)·4 = (65536 + 16777216 + 4096)·4 = 67387392
			//   → ·1410/900000 = 105573.58 → 105573.
			name: "M=1 GEMV",
			op:   Op{M: 1, N: 4096, K: 4096, DtypeSize: 4},
			want: Estimate{FLOPs: 33554432, ComputeCycles: 134217728, MemoryBytes: 67387392, MemoryCycles: 105573,
				Cycles: 134217728, Bound: BoundCompute, Utilization: 1.0 / 256},
		},
		{
			// tM = ceil((2^32-1)/256) = 2^24, tN = tK = 1 → compute = 2^24·2^19 = 2^43 = 8796093022208.
			// bytes = ((2^32-1) + 2^24 + (2^32-1))·4 = 8606711806·4 = 34426847224
			//   → ·1410/900000 = 53935393.98 → 53935393.
			// util = 2·(2^32-1)/(2^43·64) = 8589934590/562949953421312.
			name: "M=2^32-1",
			op:   Op{M: max32, N: 1, K: 1, DtypeSize: 4},
			want: Estimate{FLOPs: 8589934590, ComputeCycles: 8796093022208, MemoryBytes: 34426847224, MemoryCycles: 53935393,
				Cycles: 8796093022208, Bound: BoundCompute, Utilization: 8589934590.0 / 562949953421312},
		},
	})
}

// Small tiles and 1 byte/cycle (1 GB/s at 1 GHz) make the memory bound visible.
func TestTiledSmallTilesMemoryBound(t *testing.T) {
	p := Params{TileM: 4, TileN: 4, TileK: 4, CyclesPerTile: 8, BandwidthGBps: 1, ClockGHz: 1}
	runEstimateCases(t, mustNew(t, KindTiled, p), []estimateCase{
		{
			// 5×6×7 does not divide 4: tM = tN = tK = 2 → 8 tiles → 64 cycles.
			// bytes = (5·7·2 + 7·6·2 + 5·6)·2 = (70 + 84 + 30)·2 = 368 → 368 cycles at 1 byte/cycle.
			// flops = 2·5·6·7 = 420; peak = 2·4³/8 = 16 FLOP/cycle; util = 420/(368·16).
			name: "5x6x7 bf16",
			op:   Op{M: 5, N: 6, K: 7, DtypeSize: 2},
			want: Estimate{FLOPs: 420, ComputeCycles: 64, MemoryBytes: 368, MemoryCycles: 368, Cycles: 368,
				Bound: BoundMemory, Utilization: 420.0 / (368 * 16)},
		},
		{
			// 8×8×8 is exactly 2·2·2 = 8 tiles → 64 cycles; bytes = (64·2 + 64·2 + 64)·1 = 320.
			name: "8 cube int8",
			op:   Op{M: 8, N: 8, K: 8, DtypeSize: 1},
			want: Estimate{FLOPs: 1024, ComputeCycles: 64, MemoryBytes: 320, MemoryCycles: 320, Cycles: 320,
				Bound: BoundMemory, Utilization: 1024.0 / (320 * 16)},
		},
	})
}

func TestTiledOverflow(t *testing.T) {
	huge := presetParams(t, "tiled-256")
	huge.CyclesPerTile = 1 << 63
	ones := presetParams(t, "tiled-256")
	ones.TileM, ones.TileN, ones.TileK, ones.CyclesPerTile = 1, 1, 1, 1
	for _, tc := range []struct {
		name     string
		p        Params
		op       Op
		quantity string
	}{
		// 2 tiles of 2^63 cycles = 2^64.
		{"compute cycles", huge, Op{M: 257, N: 1, K: 1, DtypeSize: 4}, "compute cycles"},
		{"flops", ones, Op{M: max32, N: max32, K: max32, DtypeSize: 4}, "flops"},
		// 1-wide tiles at 1 cycle: compute = (2^32-1)·2^31 fits, but A is read tN = 2^31 times: (2^32-1)·2^31 + 2^31·(2^32-1) + (2^32-1)·2^31 > 2^64.
		{"memory bytes", ones, Op{M: max32, N: 1 << 31, K: 1, DtypeSize: 1}, "memory bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := mustNew(t, KindTiled, tc.p).Estimate(tc.op)
			require.ErrorIs(t, err, ErrOverflow)
			var oe *OverflowError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.quantity, oe.Quantity)
			assert.Equal(t, KindTiled, oe.Model)
		})
	}
}

func TestTiledInvalidParams(t *testing.T) {
	base := presetParams(t, "tiled-256")
	for _, tc := range []struct {
		param  string
		mutate func(*Params)
	}{
		{"TileM", func(p *Params) { p.TileM = 0 }},
		{"TileN", func(p *Params) { p.TileN = 0 }},
		{"TileK", func(p *Params) { p.TileK = 0 }},
		{"CyclesPerTile", func(p *Params) { p.CyclesPerTile = 0 }},
		{"BandwidthGBps", func(p *Params) { p.BandwidthGBps = 0 }},
		{"ClockGHz", func(p *Params) { p.ClockGHz = -1 }},
	} {
		t.Run(tc.param, func(t *testing.T) {
			p := base
			tc.mutate(&p)
			_, err := New(KindTiled, p)
			require.ErrorIs(t, err, ErrInvalidParam)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.param, pe.Param)
			assert.Equal(t, KindTiled, pe.Kind)
			assert.Contains(t, err.Error(), "tiled")
		})
	}
}
