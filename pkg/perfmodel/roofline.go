package perfmodel

// roofline is the tutorial's model (docs/models.md §Roofline):
//
//	flops          = 2·M·N·K
//	memory_bytes   = (M·K + K·N + M·N) · dtype_size
//	compute_cycles = floor(flops / FLOPsPerCycle)
//	memory_cycles  = floor(memory_bytes · ClockMHz / BandwidthMBps)
//	cycles         = max(compute_cycles, memory_cycles)
//
// The reference computes the two quotients in double precision; the exact integer
// quotients here equal the double ones for every flops < 2^53 and memory_bytes < 2^48 with
// the default preset (tested), and stay exact beyond, where double rounding does not.
type roofline struct {
	flopsPerCycle uint64
	rates         rates
}

func newRoofline(p Params) (Model, error) {
	if err := positive(KindRoofline, namedValue{"FLOPsPerCycle", p.FLOPsPerCycle}); err != nil {
		return nil, err
	}
	r, err := p.rates(KindRoofline)
	if err != nil {
		return nil, err
	}
	return roofline{flopsPerCycle: p.FLOPsPerCycle, rates: r}, nil
}

// Name returns "roofline".
func (roofline) Name() string { return KindRoofline }

// Estimate applies the roofline formula above.
func (m roofline) Estimate(op Op) (Estimate, error) {
	if err := op.Validate(); err != nil {
		return Estimate{}, err
	}
	c := checked{model: KindRoofline, op: op}
	var e Estimate
	e.FLOPs = c.gemmFLOPs(op)
	elems := c.add("memory bytes",
		c.add("memory bytes", c.mul("memory bytes", op.M, op.K), c.mul("memory bytes", op.K, op.N)),
		c.mul("memory bytes", op.M, op.N))
	e.MemoryBytes = c.mul("memory bytes", elems, op.DtypeSize)
	e.ComputeCycles = e.FLOPs / m.flopsPerCycle
	e.MemoryCycles = m.rates.memoryCycles(&c, e.MemoryBytes)
	if c.err != nil {
		return Estimate{}, c.err
	}
	return finish(e, float64(m.flopsPerCycle)), nil
}
