package perfmodel

// systolic (kind "systolic") reproduces what SCALE-Sim v2's code reports for a GEMM layer
// (scalesim-project/scale-sim-v2 at 22f88b1, `-i gemm`), which differs from the paper's
// formula that "systolic-paper" keeps. The operands map onto the R×C array as in
// Dataflow.Mapping. v2 pads every partial fold to the full array, so every fold streams
// the same number of demand rows:
//
//	os: R + C + T − 2        ws, is: 2R + C + T − 2
//
// and, in CALC mode, its Total Cycles is the index of the last demand row,
// folds·rows_per_fold − 1: ScaleSim gives it and the access counts in closed form.
// With SRAM sizes or USER mode set, ScaleSimReplay replays v2's memory system instead.
//
// Estimate: ComputeCycles is v2's stall-free Total Cycles and MemoryBytes its DRAM
// traffic (reads + writes) times dtype_size. In CALC mode MemoryCycles is that traffic
// over BandwidthGBps, a bound v2 itself does not apply; in USER mode it is v2's Total
// Cycles when the replay stalls (0 otherwise), so Cycles is exactly v2's Total Cycles.
// Beyond MaxReplayWork the estimate does not replay: CALC mode takes the closed-form
// (compulsory) DRAM counts, USER mode bounds MemoryCycles by those counts over
// DRAMWordsPerCycle, a lower bound on v2's answer (docs/models.md). Peak compute is
// 2·R·C FLOP per cycle.
type systolic struct {
	cfg   ScaleSimConfig
	rates rates
	peak  float64
}

func newSystolic(p Params) (Model, error) {
	cfg := ScaleSimConfig{Rows: p.ArrayRows, Cols: p.ArrayCols, Dataflow: p.Dataflow,
		IfmapKB: p.IfmapSRAMKB, FilterKB: p.FilterSRAMKB, OfmapKB: p.OfmapSRAMKB,
		Mode: p.InterfaceBandwidth, WordsPerCycle: p.DRAMWordsPerCycle}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r, err := p.rates(KindSystolic)
	if err != nil {
		return nil, err
	}
	peak := 2 * float64(p.ArrayRows) * float64(p.ArrayCols)
	return systolic{cfg: cfg, rates: r, peak: peak}, nil
}

// Name returns "systolic".
func (systolic) Name() string { return KindSystolic }

// Mapping returns the spatial rows, spatial columns and temporal depth of the op under
// the dataflow d, as SCALE-Sim's systolic_compute_{os,ws,is} derive them from the
// operand matrices (ifmap = A[M,K], filter = B[K,N], ofmap = C[M,N]).
func (d Dataflow) Mapping(op Op) (sr, sc, t uint64) {
	switch d {
	case WeightStationary:
		return op.K, op.N, op.M
	case InputStationary:
		return op.K, op.M, op.N
	}
	return op.M, op.N, op.K
}

// ScaleSimCounts is one GEMM layer's line of SCALE-Sim v2's COMPUTE_REPORT (Total and
// Stall Cycles) and DETAILED_ACCESS_REPORT (the access counts, in elements), as v2
// reports them, quirks included (see docs/models.md).
type ScaleSimCounts struct {
	TotalCycles, StallCycles                         uint64
	SRAMIfmapReads, SRAMFilterReads, SRAMOfmapWrites uint64
	DRAMIfmapReads, DRAMFilterReads, DRAMOfmapWrites uint64
}

// dramElements is the DRAM traffic v2 counts: reads of both operands plus output writes.
func (s ScaleSimCounts) dramElements(c *checked) uint64 {
	const q = "memory bytes"
	return c.add(q, c.add(q, s.DRAMIfmapReads, s.DRAMFilterReads), s.DRAMOfmapWrites)
}

// ScaleSim returns what SCALE-Sim v2 reports for the op on an R×C array with the given
// dataflow in CALC mode with SRAMs that hold each operand (see docs/models.md for the
// exact condition), or an *InvalidOpError, *InvalidParamError or *OverflowError.
func ScaleSim(rows, cols uint64, d Dataflow, op Op) (ScaleSimCounts, error) {
	if err := op.Validate(); err != nil {
		return ScaleSimCounts{}, err
	}
	if err := positive(KindSystolic, namedValue{"ArrayRows", rows}, namedValue{"ArrayCols", cols}); err != nil {
		return ScaleSimCounts{}, err
	}
	if !d.valid() {
		return ScaleSimCounts{}, &InvalidParamError{Kind: KindSystolic, Param: "Dataflow", Value: d.String(), Reason: "must be os, ws or is"}
	}
	c := checked{model: KindSystolic, op: op}
	sram := checked{model: KindSystolic, op: op}
	s := scaleSimCalc(&c, &sram, rows, cols, d, op)
	if c.err != nil {
		return ScaleSimCounts{}, c.err
	}
	return s, sram.err
}

// scaleSimCalc is ScaleSim on validated arguments. Overflows of the cycles and DRAM
// counts are recorded in c, of the SRAM counts (which an estimate does not report) in
// sram.
func scaleSimCalc(c, sram *checked, rows, cols uint64, d Dataflow, op Op) ScaleSimCounts {
	sr, sc, t := d.Mapping(op)
	rowFolds, colFolds := ceilDiv(sr, rows), ceilDiv(sc, cols)
	const cc = "compute cycles"
	folds := c.mul(cc, rowFolds, colFolds)
	// Demand rows per fold (the create_*_demand_mat shapes): os streams T operand rows
	// plus C−1 drain rows, skewed over R more; ws and is first load R stationary rows.
	// The sum is at least 1+1+1, so the subtraction is safe.
	perFold := c.add(cc, c.add(cc, rows, cols), t) - 2
	if d != OutputStationary {
		perFold = c.add(cc, perFold, rows)
	}
	var s ScaleSimCounts
	// folds·perFold ≥ 1, so the last row's index is one less.
	s.TotalCycles = c.mul(cc, folds, perFold) - 1

	const q, qs = "memory bytes", "sram accesses"
	a, b, out := c.mul(q, op.M, op.K), c.mul(q, op.K, op.N), c.mul(q, op.M, op.N)
	s.DRAMIfmapReads, s.DRAMFilterReads, s.DRAMOfmapWrites = a, b, out
	switch d {
	case OutputStationary: // rowFolds over M, colFolds over N
		s.SRAMIfmapReads = sram.mul(qs, a, colFolds)
		s.SRAMFilterReads = sram.mul(qs, b, rowFolds)
		// v2's os ofmap counter also adds the padded fold's height plus width, R + C,
		// once per fold (systolic_compute_os.create_ofmap_demand_mat).
		s.SRAMOfmapWrites = sram.add(qs, out, sram.mul(qs, folds, sram.add(qs, rows, cols)))
	case WeightStationary: // rowFolds over K, colFolds over N
		s.SRAMIfmapReads = sram.mul(qs, a, colFolds)
		s.SRAMFilterReads = b
		s.DRAMOfmapWrites = c.mul(q, out, rowFolds)
		s.SRAMOfmapWrites = s.DRAMOfmapWrites
	case InputStationary: // rowFolds over K, colFolds over M
		s.SRAMIfmapReads = a
		s.SRAMFilterReads = sram.mul(qs, b, colFolds)
		s.DRAMOfmapWrites = c.mul(q, out, rowFolds)
		s.SRAMOfmapWrites = s.DRAMOfmapWrites
	}
	return s
}

// Estimate returns v2's Total Cycles and DRAM traffic as described on systolic.
func (m systolic) Estimate(op Op) (Estimate, error) {
	if err := op.Validate(); err != nil {
		return Estimate{}, err
	}
	c := checked{model: KindSystolic, op: op}
	var e Estimate
	e.FLOPs = c.gemmFLOPs(op)
	sram := checked{}
	closed := scaleSimCalc(&c, &sram, m.cfg.Rows, m.cfg.Cols, m.cfg.Dataflow, op)
	if c.err != nil {
		return Estimate{}, c.err
	}
	s, replayed := closed, false
	if m.cfg.replays() && sram.err == nil && replayWork(m.cfg, op, closed) <= MaxReplayWork {
		s, replayed = replay(m.cfg, op, closed), true
	}
	e.ComputeCycles = closed.TotalCycles
	e.MemoryBytes = c.mul("memory bytes", s.dramElements(&c), op.DtypeSize)
	switch {
	case m.cfg.Mode == BandwidthCalc:
		e.MemoryCycles = m.rates.memoryCycles(&c, e.MemoryBytes)
	case replayed:
		if s.StallCycles > 0 {
			e.MemoryCycles = s.TotalCycles
		}
	default:
		e.MemoryCycles = ceilDiv(max(s.dramElements(&c), 1), m.cfg.WordsPerCycle)
	}
	if c.err != nil {
		return Estimate{}, c.err
	}
	return finish(e, m.peak), nil
}
