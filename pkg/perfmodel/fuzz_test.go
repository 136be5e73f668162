package perfmodel

import (
	"errors"
	"fmt"
	"testing"
)

// FuzzEstimate drives every model with fuzzed shapes and parameters (set through the
// CONFIGURE encoding, as the SST layer will) and compares each answer with the
// arbitrary-precision oracle: same numbers when everything fits, ErrOverflow exactly when
// something does not, and never a panic.
func FuzzEstimate(f *testing.F) {
	f.Add(uint8(0), uint8(0), uint64(4), uint64(16), uint64(8), uint64(4), uint32(0), uint64(0), uint32(0), uint64(0))
	f.Add(uint8(1), uint8(3), uint64(257), uint64(256), uint64(256), uint64(4), uint32(4), uint64(3), uint32(7), uint64(5))
	f.Add(uint8(2), uint8(2), uint64(max32), uint64(1), uint64(1), uint64(2), uint32(10), uint64(2), uint32(8), uint64(3))
	f.Add(uint8(0), uint8(1), uint64(max32), uint64(1<<31), uint64(1), uint64(2), uint32(3), uint64(MaxRateMilli), uint32(2), uint64(1))
	f.Add(uint8(2), uint8(0), uint64(200), uint64(130), uint64(50), uint64(2), uint32(10), uint64(0), uint32(9), uint64(1))
	f.Add(uint8(3), uint8(4), uint64(196), uint64(196), uint64(64), uint64(4), uint32(32), uint64(3), uint32(36), uint64(1024))
	f.Add(uint8(3), uint8(1), uint64(max32), uint64(4096), uint64(4096), uint64(2), uint32(35), uint64(1), uint32(39), uint64(1<<63))
	// The systolic model replaying v2: USER mode (id 14) with an 8 kB ofmap SRAM (id 13),
	// and CALC mode with a 1 kB ifmap SRAM (id 11) on tpu-128.
	f.Add(uint8(2), uint8(4), uint64(300), uint64(200), uint64(100), uint64(1), uint32(14), uint64(1), uint32(13), uint64(8))
	f.Add(uint8(2), uint8(4), uint64(300), uint64(200), uint64(100), uint64(1), uint32(11), uint64(1), uint32(15), uint64(3))
	f.Fuzz(func(t *testing.T, kindSel, presetSel uint8, m, n, k, d uint64, id1 uint32, v1 uint64, id2 uint32, v2 uint64) {
		all := Presets()
		preset := all[int(presetSel)%len(all)]
		kind := Kinds()[int(kindSel)%len(Kinds())]
		p := preset.Params
		_ = p.Set(ParamID(id1), v1)
		_ = p.Set(ParamID(id2), v2)
		model, err := New(kind, p)
		if err != nil {
			t.Fatalf("%s from Set-only params %+v: %v", kind, p, err)
		}
		op := Op{M: m, N: n, K: k, DtypeSize: d}
		got, err := model.Estimate(op)
		if m == 0 || n == 0 || k == 0 || d == 0 {
			if !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("%v: want ErrInvalidOp, got %v", op, err)
			}
			return
		}
		want := oracleEstimate(kind, p, op)
		if kind == KindSystolic && systolicConfig(p).replays() {
			checkReplayedEstimate(t, p, op, got, err, want)
			return
		}
		if !matchesOracle(t, fmt.Sprintf("%s %v %+v", kind, op, p), got, err, want) {
			return
		}
		if (got.Bound == BoundCompute) != (got.ComputeCycles > got.MemoryCycles) {
			t.Fatalf("Bound %v for compute %d memory %d", got.Bound, got.ComputeCycles, got.MemoryCycles)
		}
		u := float64(got.FLOPs) / (float64(max(got.Cycles, 1)) * want.peak)
		u = min(max(u, 0), 1)
		if got.Utilization < 0 || got.Utilization > 1 || got.Utilization != u {
			t.Fatalf("Utilization %v, want %v", got.Utilization, u)
		}
	})
}

// FuzzSet feeds Params.Set arbitrary CONFIGURE (param_id, value) pairs: it must either
// accept the value, which Get then returns unchanged, or reject it with a typed error and
// leave the parameters as they were.
func FuzzSet(f *testing.F) {
	f.Add(uint32(2), uint64(900000))
	f.Add(uint32(3), uint64(1410))
	f.Add(uint32(10), uint64(3))
	f.Add(uint32(0), uint64(1))
	f.Add(uint32(3), uint64(MaxRateMilli+1))
	f.Add(uint32(36), uint64(1<<11))
	f.Add(uint32(38), uint64(110))
	f.Add(uint32(11), uint64(0))
	f.Add(uint32(14), uint64(2))
	f.Add(uint32(15), uint64(MaxDRAMWordsPerCycle))
	f.Fuzz(func(t *testing.T, id uint32, value uint64) {
		p, err := LookupPreset(DefaultPreset)
		if err != nil {
			t.Fatal(err)
		}
		before := p.Params
		params := p.Params
		if err := params.Set(ParamID(id), value); err != nil {
			if !errors.Is(err, ErrInvalidParam) && !errors.Is(err, ErrUnknownParam) {
				t.Fatalf("untyped error %v", err)
			}
			if params != before {
				t.Fatalf("Set(%d, %d) failed but changed the params", id, value)
			}
			return
		}
		back, err := params.Get(ParamID(id))
		if err != nil || back != value {
			t.Fatalf("Set(%d, %d) then Get = %d, %v", id, value, back, err)
		}
	})
}

func systolicConfig(p Params) ScaleSimConfig {
	return ScaleSimConfig{Rows: p.ArrayRows, Cols: p.ArrayCols, Dataflow: p.Dataflow,
		IfmapKB: p.IfmapSRAMKB, FilterKB: p.FilterSRAMKB, OfmapKB: p.OfmapSRAMKB,
		Mode: p.InterfaceBandwidth, WordsPerCycle: p.DRAMWordsPerCycle}
}

// checkReplayedEstimate checks a systolic estimate whose memory side comes from a replay
// (or its fallback), which the oracle does not re-derive: the compute side still must
// agree, errors must be typed, and Cycles must be the larger side.
func checkReplayedEstimate(t *testing.T, p Params, op Op, got Estimate, err error, want oracle) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, ErrOverflow) {
			t.Fatalf("%v %+v: %v", op, p, err)
		}
		return
	}
	if want.flops.Cmp(bi(got.FLOPs)) != 0 || want.compute.Cmp(bi(got.ComputeCycles)) != 0 {
		t.Fatalf("%v %+v: flops %d compute %d, oracle %v %v", op, p, got.FLOPs, got.ComputeCycles, want.flops, want.compute)
	}
	if got.Cycles != max(got.ComputeCycles, got.MemoryCycles) {
		t.Fatalf("Cycles %d is not the max of %d and %d", got.Cycles, got.ComputeCycles, got.MemoryCycles)
	}
}

// FuzzScaleSimReplay replays small fuzzed configurations: never a panic or a hang, the
// SRAM counts of the closed form, CALC mode's Total Cycles without stalls, and at least
// the compulsory DRAM traffic.
func FuzzScaleSimReplay(f *testing.F) {
	f.Add(uint16(40), uint16(30), uint16(50), uint8(8), uint8(8), uint8(0), uint8(1), uint8(1), uint8(1), uint8(1), uint32(3))
	f.Add(uint16(64), uint16(64), uint16(64), uint8(16), uint8(8), uint8(1), uint8(2), uint8(1), uint8(1), uint8(1), uint32(9))
	f.Add(uint16(100), uint16(37), uint16(53), uint8(8), uint8(16), uint8(2), uint8(1), uint8(2), uint8(4), uint8(0), uint32(0))
	f.Add(uint16(1), uint16(1), uint16(1), uint8(1), uint8(1), uint8(0), uint8(0), uint8(0), uint8(1), uint8(1), uint32(0))
	f.Add(uint16(299), uint16(299), uint16(299), uint8(3), uint8(5), uint8(0), uint8(1), uint8(1), uint8(1), uint8(1), uint32(MaxDRAMWordsPerCycle-1))
	f.Fuzz(func(t *testing.T, m, n, k uint16, rows, cols, d, ikb, fkb, okb, mode uint8, bw uint32) {
		op := Op{M: uint64(m%300) + 1, N: uint64(n%300) + 1, K: uint64(k%300) + 1, DtypeSize: 1}
		cfg := ScaleSimConfig{Rows: uint64(rows%64) + 1, Cols: uint64(cols%64) + 1, Dataflow: Dataflow(d % 3),
			IfmapKB: uint64(ikb % 8), FilterKB: uint64(fkb % 8), OfmapKB: uint64(okb % 8),
			Mode: BandwidthMode(mode % 2), WordsPerCycle: uint64(bw%MaxDRAMWordsPerCycle) + 1}
		got, err := ScaleSimReplay(cfg, op)
		if err != nil {
			t.Fatalf("%+v %v: %v", cfg, op, err)
		}
		closed, err := ScaleSim(cfg.Rows, cfg.Cols, cfg.Dataflow, op)
		if err != nil {
			t.Fatal(err)
		}
		if got.SRAMIfmapReads != closed.SRAMIfmapReads || got.SRAMFilterReads != closed.SRAMFilterReads || got.SRAMOfmapWrites != closed.SRAMOfmapWrites {
			t.Fatalf("%+v %v: SRAM counts %+v, closed form %+v", cfg, op, got, closed)
		}
		if got.StallCycles > got.TotalCycles || got.TotalCycles < closed.TotalCycles {
			t.Fatalf("%+v %v: total %d stall %d, stall-free %d", cfg, op, got.TotalCycles, got.StallCycles, closed.TotalCycles)
		}
		if cfg.Mode == BandwidthCalc && (got.StallCycles != 0 || got.TotalCycles != closed.TotalCycles) {
			t.Fatalf("%+v %v: CALC mode stalls: %+v", cfg, op, got)
		}
		if got.DRAMOfmapWrites < closed.DRAMOfmapWrites ||
			(cfg.Mode == BandwidthCalc && (got.DRAMIfmapReads < closed.DRAMIfmapReads || got.DRAMFilterReads < closed.DRAMFilterReads)) {
			t.Fatalf("%+v %v: DRAM counts %+v below the compulsory %+v", cfg, op, got, closed)
		}
	})
}
