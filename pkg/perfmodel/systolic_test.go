package perfmodel

import (
	"encoding/csv"
	"os"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scaleSimRun is one row of testdata/scalesim_v2_*.csv: a GEMM run through SCALE-Sim v2
// by scripts/scalesim_runs.py (see testdata/README.md) and what v2 reported.
type scaleSimRun struct {
	op          Op
	rows, cols  uint64
	dataflow    Dataflow
	sramKB      [3]uint64 // ifmap, filter, ofmap
	mode        string
	bandwidth   uint64
	want        ScaleSimCounts
	wallSeconds float64
	line        int
}

// loadScaleSimRuns reads a CSV written by scripts/scalesim_runs.py.
func loadScaleSimRuns(t testing.TB, path string) []scaleSimRun {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	require.NoError(t, err)
	require.NotEmpty(t, recs)
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	var runs []scaleSimRun
	for li, r := range recs[1:] {
		u := func(name string) uint64 {
			i, ok := col[name]
			require.True(t, ok, "column %s", name)
			v, err := strconv.ParseUint(r[i], 10, 64)
			require.NoError(t, err, "%s line %d column %s", path, li+2, name)
			return v
		}
		d, err := ParseDataflow(r[col["dataflow"]])
		require.NoError(t, err)
		wall, err := strconv.ParseFloat(r[col["wall_seconds"]], 64)
		require.NoError(t, err)
		runs = append(runs, scaleSimRun{
			op:   Op{M: u("m"), N: u("n"), K: u("k"), DtypeSize: 1},
			rows: u("rows"), cols: u("cols"), dataflow: d,
			sramKB:    [3]uint64{u("ifmap_kb"), u("filter_kb"), u("ofmap_kb")},
			mode:      r[col["mode"]],
			bandwidth: u("bandwidth"),
			want: ScaleSimCounts{
				TotalCycles: u("total_cycles"), StallCycles: u("stall_cycles"),
				SRAMIfmapReads: u("sram_ifmap_reads"), SRAMFilterReads: u("sram_filter_reads"),
				SRAMOfmapWrites: u("sram_ofmap_writes"), DRAMIfmapReads: u("dram_ifmap_reads"),
				DRAMFilterReads: u("dram_filter_reads"), DRAMOfmapWrites: u("dram_ofmap_writes"),
			},
			wallSeconds: wall,
			line:        li + 2,
		})
	}
	return runs
}

func (r scaleSimRun) name() string {
	return strconv.Itoa(r.line) + ":" + r.op.String() + "/" + strconv.FormatUint(r.rows, 10) + "x" +
		strconv.FormatUint(r.cols, 10) + "/" + r.dataflow.String()
}

// TestScaleSimAnchors are the three runs quoted in issue 15.
func TestScaleSimAnchors(t *testing.T) {
	for _, tc := range []struct {
		rows, cols uint64
		d          Dataflow
		op         Op
		want       uint64
	}{
		{32, 32, OutputStationary, Op{M: 4, N: 16, K: 8, DtypeSize: 1}, 69},           // 1 fold of 32+32+8−2, minus 1
		{128, 128, WeightStationary, Op{M: 64, N: 64, K: 64, DtypeSize: 1}, 445},      // 1 fold of 256+128+64−2, minus 1
		{128, 128, InputStationary, Op{M: 1, N: 4096, K: 4096, DtypeSize: 1}, 143295}, // 32 folds of 256+128+4096−2, minus 1
	} {
		t.Run(tc.op.String(), func(t *testing.T) {
			s, err := ScaleSim(tc.rows, tc.cols, tc.d, tc.op)
			require.NoError(t, err)
			assert.Equal(t, tc.want, s.TotalCycles)
		})
	}
}

// TestScaleSimCalc compares the closed form with every CALC-mode run in the test data.
func TestScaleSimCalc(t *testing.T) {
	runs := loadScaleSimRuns(t, "testdata/scalesim_v2_calc.csv")
	require.NotEmpty(t, runs)
	for _, r := range runs {
		t.Run(r.name(), func(t *testing.T) {
			got, err := ScaleSim(r.rows, r.cols, r.dataflow, r.op)
			require.NoError(t, err)
			assert.Equal(t, r.want, got)
			p := Params{ArrayRows: r.rows, ArrayCols: r.cols, Dataflow: r.dataflow, BandwidthGBps: 1, ClockGHz: 1}
			e, err := mustNew(t, KindSystolic, p).Estimate(r.op)
			require.NoError(t, err)
			assert.Equal(t, r.want.TotalCycles, e.ComputeCycles)
			assert.Equal(t, r.want.DRAMIfmapReads+r.want.DRAMFilterReads+r.want.DRAMOfmapWrites, e.MemoryBytes)
		})
	}
}

// configOf is the SCALE-Sim config of a test-data run.
func (r scaleSimRun) configOf(t testing.TB) ScaleSimConfig {
	cfg := ScaleSimConfig{Rows: r.rows, Cols: r.cols, Dataflow: r.dataflow,
		IfmapKB: r.sramKB[0], FilterKB: r.sramKB[1], OfmapKB: r.sramKB[2], WordsPerCycle: r.bandwidth}
	switch r.mode {
	case "CALC":
		cfg.Mode = BandwidthCalc
	case "USER":
		cfg.Mode = BandwidthUser
	default:
		t.Fatalf("line %d: mode %q", r.line, r.mode)
	}
	return cfg
}

// TestScaleSimReplay replays every run, CALC with small SRAMs and USER mode, and checks
// Total and Stall Cycles and all six access counts.
func TestScaleSimReplay(t *testing.T) {
	for _, file := range []string{"testdata/scalesim_v2_calc.csv", "testdata/scalesim_v2_calc_sram.csv", "testdata/scalesim_v2_user.csv", "testdata/scalesim_v2_large.csv", "testdata/scalesim_v2_random.csv"} {
		t.Run(file, func(t *testing.T) {
			for _, r := range loadScaleSimRuns(t, file) {
				t.Run(r.name(), func(t *testing.T) {
					got, err := ScaleSimReplay(r.configOf(t), r.op)
					require.NoError(t, err)
					assert.Equal(t, r.want, got)
				})
			}
		})
	}
}

// TestSystolicEstimate works v2's closed form by hand on tpu-128 (128×128, 500 B/cycle).
func TestSystolicEstimate(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    Dataflow
		estimateCase
	}{
		// 1 fold of 2·128 + 128 + 128 − 2 = 510 rows → 509. DRAM 3·16384 elements · 2 B
		// = 98304 B → 196 cycles.
		{"128 cube", WeightStationary, estimateCase{op: Op{M: 128, N: 128, K: 128, DtypeSize: 2},
			want: Estimate{FLOPs: 4194304, ComputeCycles: 509, MemoryBytes: 98304, MemoryCycles: 196, Cycles: 509,
				Bound: BoundCompute, Utilization: 4194304.0 / (509 * tpuPeak)}}},
		// Sr = 200, Sc = 130, T = 50: 2·2 folds of 128 + 128 + 50 − 2 = 304 rows → 1215.
		// DRAM (10000 + 6500 + 26000)·2 = 85000 B → 170.
		{"200x130x50", OutputStationary, estimateCase{op: Op{M: 200, N: 130, K: 50, DtypeSize: 2},
			want: Estimate{FLOPs: 2600000, ComputeCycles: 1215, MemoryBytes: 85000, MemoryCycles: 170, Cycles: 1215,
				Bound: BoundCompute, Utilization: 2600000.0 / (1215 * tpuPeak)}}},
		// Sr = K = 4096, Sc = N = 4096, T = 1: 32·32 folds of 256 + 128 + 1 − 2 = 383 → 392191.
		// DRAM: A 4096 + B 16777216 + C 4096 written once per row fold (32) = 16912384
		// elements · 2 = 33824768 B → 67649.
		{"M=1 GEMV", WeightStationary, estimateCase{op: Op{M: 1, N: 4096, K: 4096, DtypeSize: 2},
			want: Estimate{FLOPs: 33554432, ComputeCycles: 392191, MemoryBytes: 33824768, MemoryCycles: 67649, Cycles: 392191,
				Bound: BoundCompute, Utilization: 33554432.0 / (392191 * tpuPeak)}}},
		// Sr = K = 1, Sc = M = 1, T = N = 1000: 1 fold of 256 + 128 + 1000 − 2 = 1382 → 1381.
		// DRAM (1 + 1000 + 1000)·1000 = 2001000 B → 4002: memory-bound.
		{"M=K=1 memory-bound", InputStationary, estimateCase{op: Op{M: 1, N: 1000, K: 1, DtypeSize: 1000},
			want: Estimate{FLOPs: 2000, ComputeCycles: 1381, MemoryBytes: 2001000, MemoryCycles: 4002, Cycles: 4002,
				Bound: BoundMemory, Utilization: 2000.0 / (4002 * tpuPeak)}}},
	} {
		tc.estimateCase.name = tc.name
		runEstimateCases(t, mustNew(t, KindSystolic, tpuParams(t, tc.d)), []estimateCase{tc.estimateCase})
	}
}

// TestSystolicUserEstimate builds the model through the CONFIGURE encoding, as the SST
// layer does, and checks that in USER mode its Cycles are v2's Total Cycles.
func TestSystolicUserEstimate(t *testing.T) {
	for _, r := range loadScaleSimRuns(t, "testdata/scalesim_v2_user.csv") {
		t.Run(r.name(), func(t *testing.T) {
			p := tpuParams(t, r.dataflow)
			for _, kv := range [][2]uint64{
				{uint64(ParamArrayRows), r.rows}, {uint64(ParamArrayCols), r.cols},
				{uint64(ParamIfmapSRAMKB), r.sramKB[0]}, {uint64(ParamFilterSRAMKB), r.sramKB[1]},
				{uint64(ParamOfmapSRAMKB), r.sramKB[2]}, {uint64(ParamInterfaceBandwidth), uint64(BandwidthUser)},
				{uint64(ParamDRAMWordsPerCycle), r.bandwidth},
			} {
				require.NoError(t, p.Set(ParamID(kv[0]), kv[1]))
			}
			e, err := mustNew(t, KindSystolic, p).Estimate(r.op)
			require.NoError(t, err)
			assert.Equal(t, r.want.TotalCycles, e.Cycles)
			closed, err := ScaleSim(r.rows, r.cols, r.dataflow, r.op)
			require.NoError(t, err)
			assert.Equal(t, closed.TotalCycles, e.ComputeCycles, "the stall-free time")
			assert.Equal(t, r.want.DRAMIfmapReads+r.want.DRAMFilterReads+r.want.DRAMOfmapWrites, e.MemoryBytes)
			assert.Equal(t, r.want.StallCycles > 0, e.Bound == BoundMemory)
		})
	}
}

// TestScaleSimTooLarge: LLaMA's 8192×28672×8192 FFN GEMM on 128×128 ws with 64 kB SRAMs
// is beyond MaxReplayWork; ScaleSimReplay says so, and the estimate falls back.
func TestScaleSimTooLarge(t *testing.T) {
	op := Op{M: 8192, N: 28672, K: 8192, DtypeSize: 2}
	cfg := ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: WeightStationary, IfmapKB: 64, FilterKB: 64, OfmapKB: 64,
		Mode: BandwidthUser, WordsPerCycle: 32}
	_, err := ScaleSimReplay(cfg, op)
	require.ErrorIs(t, err, ErrReplayTooLarge)
	var te *ReplayTooLargeError
	require.ErrorAs(t, err, &te)
	assert.Greater(t, te.Work, uint64(MaxReplayWork))

	p := tpuParams(t, WeightStationary)
	p.IfmapSRAMKB, p.FilterSRAMKB, p.OfmapSRAMKB = 64, 64, 64
	p.InterfaceBandwidth, p.DRAMWordsPerCycle = BandwidthUser, 32
	e, err := mustNew(t, KindSystolic, p).Estimate(op)
	require.NoError(t, err)
	// 64·224 folds of 256 + 128 + 8192 − 2 = 8574 rows → 122916863. DRAM words (never
	// spilling): 8192·8192 + 8192·28672 + 64·8192·28672 = 15334375424, over 32 words per
	// cycle = 479199232 cycles; bytes · 2.
	assert.Equal(t, uint64(122916863), e.ComputeCycles)
	assert.Equal(t, uint64(479199232), e.MemoryCycles)
	assert.Equal(t, uint64(2*15334375424), e.MemoryBytes)
	assert.Equal(t, BoundMemory, e.Bound)

	p.InterfaceBandwidth = BandwidthCalc // the same DRAM bytes, over 500 B/cycle
	e, err = mustNew(t, KindSystolic, p).Estimate(op)
	require.NoError(t, err)
	assert.Equal(t, uint64(2*15334375424/500), e.MemoryCycles)
}

func TestScaleSimInvalidConfig(t *testing.T) {
	op := Op{M: 4, N: 4, K: 4, DtypeSize: 1}
	for _, tc := range []struct {
		name, param string
		cfg         ScaleSimConfig
	}{
		{"rows", "ArrayRows", ScaleSimConfig{Cols: 1}},
		{"dataflow", "Dataflow", ScaleSimConfig{Rows: 1, Cols: 1, Dataflow: 3}},
		{"mode", "InterfaceBandwidth", ScaleSimConfig{Rows: 1, Cols: 1, Mode: 2}},
		{"USER without bandwidth", "DRAMWordsPerCycle", ScaleSimConfig{Rows: 1, Cols: 1, Mode: BandwidthUser}},
		{"SRAM", "SRAM size", ScaleSimConfig{Rows: 1, Cols: 1, OfmapKB: MaxSRAMKB + 1}},
		{"bandwidth", "DRAMWordsPerCycle", ScaleSimConfig{Rows: 1, Cols: 1, Mode: BandwidthUser, WordsPerCycle: MaxDRAMWordsPerCycle + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ScaleSimReplay(tc.cfg, op)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.param, pe.Param)
		})
	}
	_, err := ScaleSimReplay(ScaleSimConfig{Rows: 1, Cols: 1}, Op{M: 1, N: 1, K: 0, DtypeSize: 1})
	require.ErrorIs(t, err, ErrInvalidOp)
	m, err := ParseBandwidthMode(" user ")
	require.NoError(t, err)
	assert.Equal(t, BandwidthUser, m)
	_, err = ParseBandwidthMode("fast")
	require.ErrorIs(t, err, ErrInvalidParam)
	assert.Equal(t, []string{"CALC", "USER", "BandwidthMode(2)"}, []string{BandwidthCalc.String(), BandwidthUser.String(), BandwidthMode(2).String()})
}

// TestPrefetchRank compares prefetchOrder.rank with a plain enumeration of v2's prefetch
// order (row by row, or along anti-diagonals from the lowest row up, skipping the padded
// columns of the last block) on every small shape.
func TestPrefetchRank(t *testing.T) {
	for blocks := int64(1); blocks <= 3; blocks++ {
		for blockRows := int64(1); blockRows <= 5; blockRows++ {
			for width := int64(1); width <= 5; width++ {
				for last := int64(1); last <= width; last++ {
					for _, diagonal := range []bool{false, true} {
						o := prefetchOrder{blocks: blocks, blockRows: blockRows, width: width, diagonal: diagonal,
							used: func(b int64) int64 {
								if b == blocks-1 {
									return last
								}
								return width
							}}
						var want int64
						visit := func(row, col int64) {
							b, r := row/blockRows, row%blockRows
							if col >= o.used(b) {
								return
							}
							if got := o.rank(b, r, col); got != want {
								t.Fatalf("%+v diagonal=%v (%d,%d,%d): rank %d, want %d", o, diagonal, b, r, col, got, want)
							}
							want++
						}
						rows := blocks * blockRows
						if diagonal {
							for d := range rows + width - 1 {
								for row := min(d, rows-1); row >= max(0, d-width+1); row-- {
									visit(row, d-row)
								}
							}
						} else {
							for row := range rows {
								for col := range width {
									visit(row, col)
								}
							}
						}
					}
				}
			}
		}
	}
}
