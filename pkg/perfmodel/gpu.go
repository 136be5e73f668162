package perfmodel

import (
	"fmt"
	"math/bits"
	"strconv"
)

// gpu models one GEMM (or one batched GEMM) as a single kernel on a GPU: the output is cut
// into threadblock tiles, the tiles run in waves of one tile per SM, and each tile's
// main loop costs its multiply-adds plus the staging of its operands (docs/models.md,
// "GPU"):
//
//	rate           = FLOP per SM-cycle: GPU.TensorFLOPsPerSM when dtype_size = 2 (bf16/fp16
//	                 tensor cores), GPU.FP32FLOPsPerSM otherwise (FP32 SIMT)
//	for every tile tm×tn of the candidate set (GPU.Tiles; GPU.BatchedTiles when batch > 1):
//	  tiles        = batch · ceil(M/tm) · ceil(N/tn)
//	  waves        = ceil(tiles / GPU.SMs)
//	  mma          = ceil(waves · K · 2·tm·tn / rate)
//	  stage        = ceil(waves · K · (tm+tn) · GPU.StageMilli / 1000)   (0 when dtype_size = 2)
//	  tile_cycles  = mma + stage
//	kernel_cycles  = the smallest tile_cycles (the first candidate on a tie)
//	fixed          = ceil(GPU.KernelNs · ClockMHz / 1000)
//	compute_cycles = fixed + kernel_cycles
//	memory_bytes   = batch · (M·K + K·N + M·N) · dtype_size                if (M·K + K·N)·dtype_size ≤ GPU.L2Bytes
//	               = batch · (M·K·ceil(tN/wc) + K·N·ceil(tM/wr) + M·N) · dtype_size   otherwise
//	memory_cycles  = fixed + floor(memory_bytes · ClockMHz / BandwidthMBps)
//	cycles         = max(compute_cycles, memory_cycles)
//	peak           = GPU.SMs · rate
//
// where tM = ceil(M/tm), tN = ceil(N/tn) for the chosen tile and a wave is a block of
// wc = min(tN, isqrt(GPU.SMs)) tile columns by wr = min(tM, ceil(GPU.SMs/wc)) tile rows: when
// the operands do not fit in L2, every wave re-reads the A and B panels of its block.
// Every candidate is evaluated, so an estimate fails with ErrOverflow when any candidate's
// quantities do not fit in 64 bits.
type gpu struct {
	sms, fp32Rate, tensorRate, l2Bytes uint64
	tiles, batchedTiles                []gpuTile
	stageMilli, kernelNs               uint64
	waveCols                           uint64 // isqrt(sms)
	rates                              rates
}

// gpuTile is one threadblock tile shape, C[TM,TN] per threadblock.
type gpuTile struct{ TM, TN uint64 }

// String returns "TMxTN".
func (t gpuTile) String() string {
	return strconv.FormatUint(t.TM, 10) + "x" + strconv.FormatUint(t.TN, 10)
}

// gpuTileCatalogue is the fixed list of threadblock tiles the GPU.Tiles and GPU.BatchedTiles
// bitmasks select from: bit i selects entry i. The shapes (M×N per threadblock) are those
// of CUTLASS's SM80 SIMT SGEMM configurations (tools/library/scripts/generator.py,
// GenerateSM80_Simt_f32: the first eight) and of the cuBLAS ampere_sgemm kernels, which add
// 32×64 and 32×32 (and 64×32, their transpose). The order is a wire contract.
var gpuTileCatalogue = [...]gpuTile{
	{256, 128}, {128, 256}, {128, 128}, {128, 64}, {64, 128}, {64, 64}, {128, 32}, {32, 128}, {64, 32}, {32, 64}, {32, 32},
}

// gpuTileMaskAll has one bit per catalogue entry.
const gpuTileMaskAll = 1<<len(gpuTileCatalogue) - 1

// GPUTileCatalogue returns the names ("256x128", …) of the tiles GPU.Tiles and
// GPU.BatchedTiles select from, bit 0 first.
func GPUTileCatalogue() []string {
	names := make([]string, len(gpuTileCatalogue))
	for i, t := range gpuTileCatalogue {
		names[i] = t.String()
	}
	return names
}

// GPUTileMask returns the bitmask of the named tiles ("128x64", …), for GPU.Tiles and
// GPU.BatchedTiles. A name not in GPUTileCatalogue wraps ErrInvalidParam.
func GPUTileMask(names ...string) (uint64, error) {
	var mask uint64
	for _, n := range names {
		i := -1
		for j, t := range gpuTileCatalogue {
			if t.String() == n {
				i = j
			}
		}
		if i < 0 {
			return 0, &InvalidParamError{Kind: KindGPU, Param: "GPU.Tiles", Value: n, Reason: "not a tile of GPUTileCatalogue"}
		}
		mask |= 1 << i
	}
	return mask, nil
}

// gpuTilesOf expands a validated mask into its tiles, in catalogue order.
func gpuTilesOf(mask uint64) []gpuTile {
	var ts []gpuTile
	for i, t := range gpuTileCatalogue {
		if mask&(1<<i) != 0 {
			ts = append(ts, t)
		}
	}
	return ts
}

// validGPUTileMask reports why a tile mask is unusable, or "" when it is fine.
func validGPUTileMask(mask uint64) string {
	switch {
	case mask == 0:
		return "must select at least one tile"
	case mask&^gpuTileMaskAll != 0:
		return fmt.Sprintf("selects a tile beyond the %d of GPUTileCatalogue", len(gpuTileCatalogue))
	}
	return ""
}

// isqrt returns floor(sqrt(x)).
func isqrt(x uint64) uint64 {
	r := uint64(0)
	for bit := uint64(1) << 62; bit != 0; bit >>= 2 {
		if x >= r+bit {
			x -= r + bit
			r = r>>1 + bit
		} else {
			r >>= 1
		}
	}
	return r
}

func newGPU(p Params) (Model, error) {
	if err := positive(KindGPU,
		namedValue{"GPU.SMs", p.GPU.SMs}, namedValue{"GPU.FP32FLOPsPerSM", p.GPU.FP32FLOPsPerSM},
		namedValue{"GPU.TensorFLOPsPerSM", p.GPU.TensorFLOPsPerSM}, namedValue{"GPU.L2Bytes", p.GPU.L2Bytes},
		namedValue{"GPU.StageMilli", p.GPU.StageMilli}, namedValue{"GPU.KernelNs", p.GPU.KernelNs}); err != nil {
		return nil, err
	}
	for _, f := range []namedValue{{"GPU.Tiles", p.GPU.Tiles}, {"GPU.BatchedTiles", p.GPU.BatchedTiles}} {
		if why := validGPUTileMask(f.v); why != "" {
			return nil, &InvalidParamError{Kind: KindGPU, Param: f.name, Value: strconv.FormatUint(f.v, 10), Reason: why}
		}
	}
	r, err := p.rates(KindGPU)
	if err != nil {
		return nil, err
	}
	return gpu{
		sms: p.GPU.SMs, fp32Rate: p.GPU.FP32FLOPsPerSM, tensorRate: p.GPU.TensorFLOPsPerSM, l2Bytes: p.GPU.L2Bytes,
		tiles: gpuTilesOf(p.GPU.Tiles), batchedTiles: gpuTilesOf(p.GPU.BatchedTiles),
		stageMilli: p.GPU.StageMilli, kernelNs: p.GPU.KernelNs, waveCols: isqrt(p.GPU.SMs), rates: r,
	}, nil
}

// Name returns "gpu".
func (gpu) Name() string { return KindGPU }

// Estimate times op as a single-GEMM kernel: EstimateBatched(op, 1).
func (m gpu) Estimate(op Op) (Estimate, error) { return m.EstimateBatched(op, 1) }

// gpuChoice is one candidate tile's grid (tiles along M and N) and main-loop cycles.
type gpuChoice struct {
	tilesM, tilesN uint64
	cycles         uint64
}

// EstimateBatched times batch independent GEMMs of shape op as one kernel whose tiles share
// the waves, with the formula above.
func (m gpu) EstimateBatched(op Op, batch uint64) (Estimate, error) {
	if err := validateBatched(op, batch); err != nil {
		return Estimate{}, err
	}
	c := checked{model: KindGPU, op: op}
	rate, stage, cands := m.fp32Rate, m.stageMilli, m.tiles
	if op.DtypeSize == 2 {
		rate, stage = m.tensorRate, 0
	}
	if batch > 1 {
		cands = m.batchedTiles
	}
	var best gpuChoice
	for i, t := range cands {
		ch := m.tileCycles(&c, op, batch, t, rate, stage)
		if i == 0 || ch.cycles < best.cycles {
			best = ch
		}
	}

	var e Estimate
	e.FLOPs = c.mul("flops", c.gemmFLOPs(op), batch)
	fixed := c.mulDivCeil("fixed cycles", m.kernelNs, m.rates.clockMHz, 1000)
	e.ComputeCycles = c.add("compute cycles", fixed, best.cycles)

	const q = "memory bytes"
	a, b, out := c.mul(q, op.M, op.K), c.mul(q, op.K, op.N), c.mul(q, op.M, op.N)
	if c.mul(q, c.add(q, a, b), op.DtypeSize) > m.l2Bytes {
		wc := max(min(best.tilesN, m.waveCols), 1)
		wr := min(best.tilesM, ceilDiv(m.sms, wc))
		a, b = c.mul(q, a, ceilDiv(best.tilesN, wc)), c.mul(q, b, ceilDiv(best.tilesM, wr))
	}
	elems := c.mul(q, c.add(q, c.add(q, a, b), out), batch)
	e.MemoryBytes = c.mul(q, elems, op.DtypeSize)
	e.MemoryCycles = c.add("memory cycles", fixed, m.rates.memoryCycles(&c, e.MemoryBytes))
	if c.err != nil {
		if batch > 1 {
			if oe, ok := c.err.(*OverflowError); ok {
				oe.Quantity += " of batch " + strconv.FormatUint(batch, 10)
			}
		}
		return Estimate{}, c.err
	}
	return finish(e, float64(m.sms)*float64(rate)), nil
}

// mulDivCeil returns ceil(a·b/d) exactly through a 128-bit product; d must not be zero.
func (c *checked) mulDivCeil(quantity string, a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= d {
		return c.overflow(quantity)
	}
	q, rem := bits.Div64(hi, lo, d)
	if rem != 0 {
		if q == ^uint64(0) {
			return c.overflow(quantity)
		}
		q++
	}
	return q
}

// tileCycles returns the main-loop cycles of the kernel with tile t.
func (m gpu) tileCycles(c *checked, op Op, batch uint64, t gpuTile, rate, stage uint64) gpuChoice {
	const cc = "compute cycles"
	ch := gpuChoice{tilesM: ceilDiv(op.M, t.TM), tilesN: ceilDiv(op.N, t.TN)}
	tiles := c.mul("tiles", c.mul("tiles", ch.tilesM, ch.tilesN), batch)
	steps := c.mul(cc, ceilDiv(tiles, m.sms), op.K) // waves · K
	mma := c.mulDivCeil(cc, steps, 2*t.TM*t.TN, rate)
	stg := c.mulDivCeil(cc, c.mul(cc, steps, t.TM+t.TN), stage, 1000)
	ch.cycles = c.add(cc, mma, stg)
	return ch
}
