package linalg

import "fmt"

// matmulLayout is the part of a matmul Plan that Compute needs: the broadcast batch and
// where each batch's operands start.
type matmulLayout struct {
	rank    int              // batch dimensions of the output
	batch   [MaxRank - 2]int // broadcast batch dimensions of the output
	aStride [MaxRank - 2]int // element stride of A per batch dimension, 0 where A is broadcast
	bStride [MaxRank - 2]int // likewise for B
	batches int              // product of batch
	aDense  bool             // A's batches are laid out back to back in output order
	bSingle bool             // B has no batch dimension other than 1
}

// PlanMatmul validates torch.matmul(A, B) for operands of the given shapes.
//
// The rules are torch.matmul's: two 1-D operands give their dot product (a 0-D result,
// OutShape empty); a 1-D A is treated as a row [1,K] and a 1-D B as a column [K,1], and
// that dimension is removed from the result; otherwise the last two dimensions are matrices
// and the leading (batch) dimensions broadcast NumPy-style, aligned from the right, each
// pair equal or one of them 1. Every output batch element is one GEMM {M, N, K}, counted in
// Batches. Dimensions may be zero (empty tensors), as in PyTorch.
//
// Errors are *Error: ErrBadDim for a 0-D operand, a negative dimension or a rank above
// MaxRank; ErrShapeMismatch when the inner sizes differ or batch dimensions do not
// broadcast; ErrOverflow when an element count does not fit in an int.
func PlanMatmul(aShape, bShape []int) (Plan, error) {
	const op = "matmul"
	p := Plan{kind: KindMatmul}
	mm := &matmulLayout{}
	for i, s := range [2]struct {
		name  string
		shape []int
	}{{"AShape", aShape}, {"BShape", bShape}} {
		if len(s.shape) == 0 {
			return Plan{}, newError(op, s.name, ErrBadDim, "0-D operand; matmul needs at least 1-D")
		}
		if len(s.shape) > MaxRank {
			return Plan{}, newError(op, s.name, ErrBadDim, "rank %d exceeds %d", len(s.shape), MaxRank)
		}
		for j, d := range s.shape {
			if d < 0 {
				return Plan{}, newError(op, fmt.Sprintf("%s[%d]", s.name, j), ErrBadDim, "dimension %d is negative", d)
			}
		}
		n, ok := product(s.shape...)
		if !ok {
			return Plan{}, newError(op, s.name, ErrOverflow, "%v has more elements than an int holds", s.shape)
		}
		p.inputs[i] = n
	}

	// Promote 1-D operands to matrices: A to a row [1,K], B to a column [K,1].
	var promoted [2][2]int
	am, bm := aShape, bShape
	if len(aShape) == 1 {
		promoted[0] = [2]int{1, aShape[0]}
		am = promoted[0][:]
	}
	if len(bShape) == 1 {
		promoted[1] = [2]int{bShape[0], 1}
		bm = promoted[1][:]
	}
	ra, rb := len(am), len(bm)
	g := GEMMShape{M: am[ra-2], N: bm[rb-1], K: am[ra-1]}
	if kb := bm[rb-2]; kb != g.K {
		return Plan{}, newError(op, "BShape", ErrShapeMismatch,
			"A %v has inner size %d but B %v has %d", aShape, g.K, bShape, kb)
	}

	// Broadcast the batch dimensions, aligned from the right.
	aBatch, bBatch := am[:ra-2], bm[:rb-2]
	rank := max(len(aBatch), len(bBatch))
	mm.rank = rank
	aStride, bStride := g.M*g.K, g.K*g.N // cannot overflow: ≤ the operands' element counts
	mm.aDense, mm.bSingle = true, true
	for d := rank - 1; d >= 0; d-- {
		da, db := 1, 1
		ia, ib := d-(rank-len(aBatch)), d-(rank-len(bBatch))
		if ia >= 0 {
			da = aBatch[ia]
		}
		if ib >= 0 {
			db = bBatch[ib]
		}
		switch {
		case da == db || db == 1:
			mm.batch[d] = da
		case da == 1:
			mm.batch[d] = db
		default:
			return Plan{}, newError(op, fmt.Sprintf("BShape[%d]", ib), ErrShapeMismatch,
				"batch dimension %d of B %v does not broadcast with dimension %d of A %v", db, bShape, da, aShape)
		}
		if da != 1 {
			mm.aStride[d] = aStride
			aStride *= da
		}
		if db != 1 {
			mm.bStride[d] = bStride
			bStride *= db
			mm.bSingle = false
		}
		if da != mm.batch[d] {
			mm.aDense = false
		}
	}

	batches, ok := product(mm.batch[:rank]...)
	if !ok {
		return Plan{}, newError(op, "BShape", ErrOverflow, "broadcast batch %v has more elements than an int holds", append([]int(nil), mm.batch[:rank]...))
	}
	mm.batches = batches
	p.outLen, ok = product(batches, g.M, g.N)
	if !ok {
		return Plan{}, newError(op, "BShape", ErrOverflow, "output of %v·%v has more elements than an int holds", aShape, bShape)
	}
	p.gemm, p.mm = g, mm
	if g.M > 0 && g.N > 0 && g.K > 0 {
		p.count = batches
	}
	p.outRank = copy(p.out[:], mm.batch[:rank])
	if len(aShape) > 1 {
		p.out[p.outRank] = g.M
		p.outRank++
	}
	if len(bShape) > 1 {
		p.out[p.outRank] = g.N
		p.outRank++
	}
	return p, nil
}

// computeMatmul writes A·B into out, which the caller has zeroed.
func (p *Plan) computeMatmul(a, b, out []float32) {
	g, mm := p.gemm, p.mm
	if p.outLen == 0 || g.K == 0 {
		return
	}
	if mm.bSingle && mm.aDense {
		// One B for every batch and A's batches laid out back to back: the batches are
		// the row blocks of one (batches·M)×K by K×N GEMM.
		Sgemm(mm.batches*g.M, g.N, g.K, a, b, out)
		return
	}
	mk, kn, mn := g.M*g.K, g.K*g.N, g.M*g.N
	run := func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			ao, bo := mm.offsets(i)
			Sgemm(g.M, g.N, g.K, a[ao:ao+mk], b[bo:bo+kn], out[i*mn:(i+1)*mn])
		}
	}
	if g.isSmall() {
		parallelFor(workerCount(mm.batches), mm.batches, run)
	} else {
		run(0, 0, mm.batches)
	}
}

// offsets returns where output batch i's A and B matrices start.
func (mm *matmulLayout) offsets(i int) (aOff, bOff int) {
	for d := mm.rank - 1; d >= 0; d-- {
		idx := i % mm.batch[d]
		i /= mm.batch[d]
		aOff += idx * mm.aStride[d]
		bOff += idx * mm.bStride[d]
	}
	return aOff, bOff
}
