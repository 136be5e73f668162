package perfmodel

import (
	"slices"
	"testing"
)

// benchOps mixes a square GEMM, a GEMV and shapes that divide neither tiles nor arrays.
var benchOps = []Op{
	{M: 1024, N: 1024, K: 1024, DtypeSize: 4},
	{M: 1, N: 4096, K: 4096, DtypeSize: 2},
	{M: 257, N: 130, K: 999, DtypeSize: 4},
	{M: max32, N: 1, K: 1, DtypeSize: 4},
}

func benchmarkModel(b *testing.B, preset string) {
	m, err := FromPreset(preset)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		e, err := m.Estimate(benchOps[i%len(benchOps)])
		if err != nil {
			b.Fatal(err)
		}
		sink += e.Cycles
	}
	_ = sink
}

func BenchmarkRoofline(b *testing.B) { benchmarkModel(b, DefaultPreset) }
func BenchmarkTiled(b *testing.B)    { benchmarkModel(b, "tiled-256") }
func BenchmarkSystolic(b *testing.B) { benchmarkModel(b, "tpu-128") }

// BenchmarkScaleSim times the closed form on the same ops as the other models, and on
// LLaMA's 8192×28672×8192 FFN GEMM.
func BenchmarkScaleSim(b *testing.B) {
	ops := append(slices.Clone(benchOps), Op{M: 8192, N: 28672, K: 8192, DtypeSize: 2})
	b.ReportAllocs()
	var sink uint64
	for i := 0; b.Loop(); i++ {
		s, err := ScaleSim(128, 128, WeightStationary, ops[i%len(ops)])
		if err != nil {
			b.Fatal(err)
		}
		sink += s.TotalCycles
	}
	_ = sink
}

// BenchmarkScaleSimReplay times replays of runs that v2 also made (testdata); b.N counts
// replays, steps/s the replay steps (replayWork) per second.
func BenchmarkScaleSimReplay(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  ScaleSimConfig
		op   Op
	}{
		{"64cube-8x8-os-USER", ScaleSimConfig{Rows: 8, Cols: 8, Dataflow: OutputStationary, IfmapKB: 1, FilterKB: 1, OfmapKB: 1, Mode: BandwidthUser, WordsPerCycle: 4}, Op{M: 64, N: 64, K: 64, DtypeSize: 1}},
		{"512cube-128x128-ws-USER", ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: WeightStationary, IfmapKB: 64, FilterKB: 64, OfmapKB: 64, Mode: BandwidthUser, WordsPerCycle: 32}, Op{M: 512, N: 512, K: 512, DtypeSize: 1}},
		{"1024cube-128x128-os-USER", ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: OutputStationary, IfmapKB: 256, FilterKB: 256, OfmapKB: 256, Mode: BandwidthUser, WordsPerCycle: 64}, Op{M: 1024, N: 1024, K: 1024, DtypeSize: 1}},
		{"1024cube-128x128-ws-CALC4096KB", ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: WeightStationary, IfmapKB: 4096, FilterKB: 4096, OfmapKB: 4096}, Op{M: 1024, N: 1024, K: 1024, DtypeSize: 1}},
		{"1x4096x4096-128x128-is-CALC4096KB", ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: InputStationary, IfmapKB: 4096, FilterKB: 4096, OfmapKB: 4096}, Op{M: 1, N: 4096, K: 4096, DtypeSize: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			closed, err := ScaleSim(bc.cfg.Rows, bc.cfg.Cols, bc.cfg.Dataflow, bc.op)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ScaleSimReplay(bc.cfg, bc.op); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(replayWork(bc.cfg, bc.op, closed))*float64(b.N)/b.Elapsed().Seconds(), "steps/s")
		})
	}
}

// BenchmarkScaleSimTestdata replays every run of each test-data file (b.N passes over the
// file) and reports sstemu's time per run beside v2's wall time per run, as recorded in
// the file when scripts/scalesim_runs.py made it.
func BenchmarkScaleSimTestdata(b *testing.B) {
	for _, file := range []string{"calc", "calc_sram", "user", "large", "random"} {
		b.Run(file, func(b *testing.B) {
			runs := loadScaleSimRuns(b, "testdata/scalesim_v2_"+file+".csv")
			cfgs := make([]ScaleSimConfig, len(runs))
			var v2 float64
			for i, r := range runs {
				cfgs[i] = r.configOf(b)
				v2 += r.wallSeconds
			}
			for b.Loop() {
				for i, r := range runs {
					if _, err := ScaleSimReplay(cfgs[i], r.op); err != nil {
						b.Fatal(err)
					}
				}
			}
			perRun := b.Elapsed().Seconds() / float64(b.N*len(runs))
			b.ReportMetric(perRun*1e6, "µs/run")
			b.ReportMetric(v2/float64(len(runs)), "v2-s/run")
			b.ReportMetric(v2/float64(len(runs))/perRun, "speedup")
		})
	}
}

// BenchmarkLLaMAReplay replays LLaMA's 8192×28672×8192 FFN GEMM on 128×128 ws with 64 kB
// SRAMs and 32 words per cycle exactly (ScaleSimReplayWithin, past MaxReplayWork): tens of
// seconds per replay. Run it alone, with -benchtime 1x.
func BenchmarkLLaMAReplay(b *testing.B) {
	op := Op{M: 8192, N: 28672, K: 8192, DtypeSize: 2}
	cfg := ScaleSimConfig{Rows: 128, Cols: 128, Dataflow: WeightStationary, IfmapKB: 64, FilterKB: 64, OfmapKB: 64,
		Mode: BandwidthUser, WordsPerCycle: 32}
	for b.Loop() {
		s, err := ScaleSimReplayWithin(cfg, op, 1<<30)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.TotalCycles), "v2-cycles")
		b.ReportMetric(float64(s.StallCycles), "v2-stalls")
	}
}
