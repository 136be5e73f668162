package perfmodel

// tiled charges CyclesPerTile for every tile of a TileM×TileN×TileK blocking of the GEMM,
// edge tiles included at full cost (padding), and bounds it by the traffic of an
// output-stationary tiling (A re-read for every column of tiles, B for every row):
//
//	tM, tN, tK     = ceil(M/TileM), ceil(N/TileN), ceil(K/TileK)
//	compute_cycles = tM·tN·tK · CyclesPerTile
//	memory_bytes   = (M·K·tN + K·N·tM + M·N) · dtype_size
//	memory_cycles  = floor(memory_bytes · ClockMHz / BandwidthMBps)
//	cycles         = max(compute_cycles, memory_cycles)
//
// Peak compute is 2·TileM·TileN·TileK / CyclesPerTile FLOP per cycle.
type tiled struct {
	tileM, tileN, tileK, cyclesPerTile uint64
	rates                              rates
	peak                               float64
}

func newTiled(p Params) (Model, error) {
	if err := positive(KindTiled,
		namedValue{"TileM", p.TileM}, namedValue{"TileN", p.TileN}, namedValue{"TileK", p.TileK},
		namedValue{"CyclesPerTile", p.CyclesPerTile}); err != nil {
		return nil, err
	}
	r, err := p.rates(KindTiled)
	if err != nil {
		return nil, err
	}
	peak := 2 * float64(p.TileM) * float64(p.TileN) * float64(p.TileK) / float64(p.CyclesPerTile)
	return tiled{tileM: p.TileM, tileN: p.TileN, tileK: p.TileK, cyclesPerTile: p.CyclesPerTile, rates: r, peak: peak}, nil
}

// Name returns "tiled".
func (tiled) Name() string { return KindTiled }

// Estimate applies the tiled formula above.
func (m tiled) Estimate(op Op) (Estimate, error) {
	if err := op.Validate(); err != nil {
		return Estimate{}, err
	}
	c := checked{model: KindTiled, op: op}
	tM, tN, tK := ceilDiv(op.M, m.tileM), ceilDiv(op.N, m.tileN), ceilDiv(op.K, m.tileK)
	var e Estimate
	e.FLOPs = c.gemmFLOPs(op)
	tiles := c.mul("tiles", c.mul("tiles", tM, tN), tK)
	e.ComputeCycles = c.mul("compute cycles", tiles, m.cyclesPerTile)
	const q = "memory bytes"
	a := c.mul(q, c.mul(q, op.M, op.K), tN)
	b := c.mul(q, c.mul(q, op.K, op.N), tM)
	elems := c.add(q, c.add(q, a, b), c.mul(q, op.M, op.N))
	e.MemoryBytes = c.mul(q, elems, op.DtypeSize)
	e.MemoryCycles = m.rates.memoryCycles(&c, e.MemoryBytes)
	if c.err != nil {
		return Estimate{}, c.err
	}
	return finish(e, m.peak), nil
}
