package perfmodel

import "math/big"

// bceilBig is ceil(a/b) for big a ≥ 0 and b ≥ 1.
func bceilBig(a, b *big.Int) *big.Int {
	q, m := new(big.Int).QuoRem(a, b, new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

// oracleGPU is the gpu model's formula (gpu.go) in arbitrary precision. A candidate tile
// whose quantities exceed 64 bits makes the whole estimate overflow, as in the model.
func oracleGPU(p Params, op Op, batch, clk, bw uint64) oracle {
	g := p.GPU
	M, N, K, D, B := bi(op.M), bi(op.N), bi(op.K), bi(op.DtypeSize), bi(batch)
	o := oracle{flops: bmul(big.NewInt(2), M, N, K, B)}
	rate, stage, mask := g.FP32FLOPsPerSM, g.StageMilli, g.Tiles
	if op.DtypeSize == 2 {
		rate, stage = g.TensorFLOPsPerSM, 0
	}
	if batch > 1 {
		mask = g.BatchedTiles
	}
	var best, bestTM, bestTN *big.Int
	tooBig := false
	for i, t := range gpuTileCatalogue {
		if mask&(1<<i) == 0 {
			continue
		}
		tM, tN := bceil(op.M, t.TM), bceil(op.N, t.TN)
		tiles := bmul(tM, tN, B)
		steps := bmul(bceilBig(tiles, bi(g.SMs)), K)
		mma := bceilBig(bmul(steps, bi(2*t.TM*t.TN)), bi(rate))
		stg := bceilBig(bmul(steps, bi(t.TM+t.TN), bi(stage)), big.NewInt(1000))
		cyc := badd(mma, stg)
		for _, x := range []*big.Int{tiles, steps, mma, bmul(steps, bi(t.TM+t.TN)), cyc} {
			tooBig = tooBig || x.Cmp(maxU64) > 0
		}
		if best == nil || cyc.Cmp(best) < 0 {
			best, bestTM, bestTN = cyc, tM, tN
		}
	}
	fixed := bceilBig(bmul(bi(g.KernelNs), bi(clk)), big.NewInt(1000))
	o.compute = badd(fixed, best)
	a, b, c := bmul(M, K), bmul(K, N), bmul(M, N)
	if bmul(badd(a, b), D).Cmp(bi(g.L2Bytes)) > 0 {
		wc := bi(max(min(bestTN.Uint64(), isqrt(g.SMs)), 1))
		wr := new(big.Int).Set(bestTM)
		if r := bceilBig(bi(g.SMs), wc); r.Cmp(wr) < 0 {
			wr = r
		}
		a, b = bmul(a, bceilBig(bestTN, wc)), bmul(b, bceilBig(bestTM, wr))
	}
	o.bytes = bmul(badd(a, b, c), B, D)
	o.memory = badd(fixed, memCycles(o.bytes, clk, bw))
	o.peak = float64(g.SMs) * float64(rate)
	if tooBig {
		o.compute = new(big.Int).Add(maxU64, big.NewInt(1)) // any overflowing candidate fails the estimate
	}
	return o
}
