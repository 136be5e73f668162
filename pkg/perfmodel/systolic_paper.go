package perfmodel

// systolicPaper (kind "systolic-paper") follows the SCALE-Sim paper's analytical runtime
// model (Samajdar et al., ISPASS 2020; see docs/models.md), not v2's code, which the
// default "systolic" model reproduces. The GEMM's operand matrices map onto an R×C array as spatial rows
// Sr, spatial columns Sc and temporal depth T, depending on the dataflow:
//
//	os: Sr=M, Sc=N, T=K    ws: Sr=K, Sc=N, T=M    is: Sr=K, Sc=M, T=N
//
// and the compute time is
//
//	folds          = ceil(Sr/R) · ceil(Sc/C)
//	per_fold       = 2·min(Sr,R) + min(Sc,C) + T − 2   (fill + stream + drain)
//	compute_cycles = folds · per_fold
//
// which is the paper's 2·Sr + Sc + T − 2 when the operands fit the array and its
// (2R + C + T − 2)·folds when they are folded; a partial edge fold costs a full fold, as
// SCALE-Sim pads it with idle rows and columns. The memory bound charges the operand
// traffic SCALE-Sim counts for the dataflow (the streamed operands are re-read for every
// fold of the other spatial dimension, partial outputs written per row fold):
//
//	os: A·ceil(N/C) + B·ceil(M/R) + C
//	ws: A·ceil(N/C) + B           + C·ceil(K/R)
//	is: A           + B·ceil(M/C) + C·ceil(K/R)
//
// with A = M·K, B = K·N, C = M·N elements, times dtype_size bytes. Peak compute is
// 2·R·C FLOP per cycle.
type systolicPaper struct {
	rows, cols uint64
	dataflow   Dataflow
	rates      rates
	peak       float64
}

func newSystolicPaper(p Params) (Model, error) {
	if err := positive(KindSystolicPaper, namedValue{"ArrayRows", p.ArrayRows}, namedValue{"ArrayCols", p.ArrayCols}); err != nil {
		return nil, err
	}
	if !p.Dataflow.valid() {
		return nil, &InvalidParamError{Kind: KindSystolicPaper, Param: "Dataflow", Value: p.Dataflow.String(), Reason: "must be os, ws or is"}
	}
	r, err := p.rates(KindSystolicPaper)
	if err != nil {
		return nil, err
	}
	peak := 2 * float64(p.ArrayRows) * float64(p.ArrayCols)
	return systolicPaper{rows: p.ArrayRows, cols: p.ArrayCols, dataflow: p.Dataflow, rates: r, peak: peak}, nil
}

// Name returns "systolic-paper".
func (systolicPaper) Name() string { return KindSystolicPaper }

// Estimate applies the paper's formula above.
func (m systolicPaper) Estimate(op Op) (Estimate, error) {
	if err := op.Validate(); err != nil {
		return Estimate{}, err
	}
	c := checked{model: KindSystolicPaper, op: op}
	sr, sc, t := m.dataflow.Mapping(op)
	rowFolds, colFolds := ceilDiv(sr, m.rows), ceilDiv(sc, m.cols)

	var e Estimate
	e.FLOPs = c.gemmFLOPs(op)
	const cc = "compute cycles"
	folds := c.mul(cc, rowFolds, colFolds)
	// 2·min(Sr,R) + min(Sc,C) + T − 2; the sum is at least 2+1+1, so the subtraction is safe.
	perFold := c.add(cc, c.add(cc, c.mul(cc, 2, min(sr, m.rows)), min(sc, m.cols)), t) - 2
	e.ComputeCycles = c.mul(cc, folds, perFold)

	const q = "memory bytes"
	a, b, out := c.mul(q, op.M, op.K), c.mul(q, op.K, op.N), c.mul(q, op.M, op.N)
	switch m.dataflow {
	case OutputStationary: // rowFolds over M, colFolds over N
		a, b = c.mul(q, a, colFolds), c.mul(q, b, rowFolds)
	case WeightStationary: // rowFolds over K, colFolds over N
		a, out = c.mul(q, a, colFolds), c.mul(q, out, rowFolds)
	case InputStationary: // rowFolds over K, colFolds over M
		b, out = c.mul(q, b, colFolds), c.mul(q, out, rowFolds)
	}
	elems := c.add(q, c.add(q, a, b), out)
	e.MemoryBytes = c.mul(q, elems, op.DtypeSize)
	e.MemoryCycles = m.rates.memoryCycles(&c, e.MemoryBytes)
	if c.err != nil {
		return Estimate{}, c.err
	}
	return finish(e, m.peak), nil
}
