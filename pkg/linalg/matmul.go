package linalg

import "fmt"

// MaxMatmulRank bounds the rank of a Matmul operand. PyTorch itself stops at 25 dimensions
// in most kernels; the bound only keeps hostile shapes from costing unbounded work.
const MaxMatmulRank = 64

// matmulPlan is a validated torch.matmul: the batch broadcast, the per-batch GEMM and where
// each batch's operands start.
type matmulPlan struct {
	outShape []int
	batch    []int // broadcast batch dimensions of the output
	aStride  []int // element stride of A per batch dimension, 0 where A is broadcast
	bStride  []int // likewise for B
	gemm     GEMMShape
	batches  int // product of batch
	aLen     int // elements of A
	bLen     int // elements of B
	outLen   int // elements of the output
	aDense   bool
	bSingle  bool
}

// MatmulShape validates torch.matmul(A, B) for operands of the given shapes and returns the
// output shape and the GEMMs it amounts to, without touching data.
//
// The rules are torch.matmul's: two 1-D operands give their dot product (a 0-D result,
// outShape empty); a 1-D A is treated as a row [1,K] and a 1-D B as a column [K,1], and
// that dimension is removed from the result; otherwise the last two dimensions are matrices
// and the leading (batch) dimensions broadcast NumPy-style, aligned from the right, each
// pair equal or one of them 1. Every output batch element is one GEMM {M, N, K}, listed in
// row-major order of the batch index; GEMMs with no multiply–add (a zero M, N or K, or an
// empty batch) are left out, so an empty list means the output is all zeros or empty.
// Dimensions may be zero (empty tensors), as in PyTorch.
//
// Errors are *Error: ErrBadDim for a 0-D operand, a negative dimension or a rank above
// MaxMatmulRank; ErrShapeMismatch when the inner sizes differ or batch dimensions do not
// broadcast; ErrOverflow when an element count does not fit in an int.
func MatmulShape(aShape, bShape []int) (outShape []int, gemms []GEMMShape, err error) {
	p, err := planMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	if p.gemm.M == 0 || p.gemm.N == 0 || p.gemm.K == 0 {
		return p.outShape, nil, nil
	}
	gemms = make([]GEMMShape, p.batches)
	for i := range gemms {
		gemms[i] = p.gemm
	}
	return p.outShape, gemms, nil
}

// GEMMBatch is Count GEMMs of one shape.
type GEMMBatch struct {
	Shape GEMMShape
	Count int
}

// MatmulBatches is MatmulShape with the GEMMs counted instead of listed: a broadcast of
// millions of tiny products is described in one GEMMBatch rather than a slice as long as
// the output, which a few kilobytes of request could otherwise make gigabytes long. The
// list is empty when the output is all zeros or empty.
func MatmulBatches(aShape, bShape []int) (outShape []int, batches []GEMMBatch, err error) {
	p, err := planMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	if p.gemm.M == 0 || p.gemm.N == 0 || p.gemm.K == 0 || p.batches == 0 {
		return p.outShape, nil, nil
	}
	return p.outShape, []GEMMBatch{{Shape: p.gemm, Count: p.batches}}, nil
}

// Matmul computes torch.matmul(A, B) on row-major operands of the given shapes (rules in
// MatmulShape) and returns the output shape and a freshly allocated row-major result. The
// slices must hold exactly the product of their shapes (ErrLength otherwise).
func Matmul(aShape, bShape []int, a, b []float32) (outShape []int, out []float32, err error) {
	p, err := planMatmul(aShape, bShape)
	if err != nil {
		return nil, nil, err
	}
	if len(a) != p.aLen {
		return nil, nil, newError("matmul", "A", ErrLength, "len = %d, shape %v holds %d", len(a), aShape, p.aLen)
	}
	if len(b) != p.bLen {
		return nil, nil, newError("matmul", "B", ErrLength, "len = %d, shape %v holds %d", len(b), bShape, p.bLen)
	}
	out = make([]float32, p.outLen)
	g := p.gemm
	if p.outLen == 0 || g.K == 0 {
		return p.outShape, out, nil
	}
	if p.bSingle && p.aDense {
		// One B for every batch and A's batches laid out back to back: the batches are
		// the row blocks of one (batches·M)×K by K×N GEMM.
		Sgemm(p.batches*g.M, g.N, g.K, a, b, out)
		return p.outShape, out, nil
	}
	mk, kn, mn := g.M*g.K, g.K*g.N, g.M*g.N
	run := func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			ao, bo := p.offsets(i)
			Sgemm(g.M, g.N, g.K, a[ao:ao+mk], b[bo:bo+kn], out[i*mn:(i+1)*mn])
		}
	}
	if g.isSmall() {
		parallelFor(workerCount(p.batches), p.batches, run)
	} else {
		run(0, 0, p.batches)
	}
	return p.outShape, out, nil
}

// offsets returns where output batch i's A and B matrices start.
func (p *matmulPlan) offsets(i int) (aOff, bOff int) {
	for d := len(p.batch) - 1; d >= 0; d-- {
		idx := i % p.batch[d]
		i /= p.batch[d]
		aOff += idx * p.aStride[d]
		bOff += idx * p.bStride[d]
	}
	return aOff, bOff
}

func planMatmul(aShape, bShape []int) (*matmulPlan, error) {
	const op = "matmul"
	p := &matmulPlan{}
	for _, s := range []struct {
		name  string
		shape []int
		size  *int
	}{{"AShape", aShape, &p.aLen}, {"BShape", bShape, &p.bLen}} {
		if len(s.shape) == 0 {
			return nil, newError(op, s.name, ErrBadDim, "0-D operand; matmul needs at least 1-D")
		}
		if len(s.shape) > MaxMatmulRank {
			return nil, newError(op, s.name, ErrBadDim, "rank %d exceeds %d", len(s.shape), MaxMatmulRank)
		}
		for i, d := range s.shape {
			if d < 0 {
				return nil, newError(op, fmt.Sprintf("%s[%d]", s.name, i), ErrBadDim, "dimension %d is negative", d)
			}
		}
		n, ok := product(s.shape...)
		if !ok {
			return nil, newError(op, s.name, ErrOverflow, "%v has more elements than an int holds", s.shape)
		}
		*s.size = n
	}

	// Promote 1-D operands to matrices: A to a row [1,K], B to a column [K,1].
	am, bm := aShape, bShape
	if len(aShape) == 1 {
		am = []int{1, aShape[0]}
	}
	if len(bShape) == 1 {
		bm = []int{bShape[0], 1}
	}
	ra, rb := len(am), len(bm)
	p.gemm = GEMMShape{M: am[ra-2], N: bm[rb-1], K: am[ra-1]}
	if kb := bm[rb-2]; kb != p.gemm.K {
		return nil, newError(op, "BShape", ErrShapeMismatch,
			"A %v has inner size %d but B %v has %d", aShape, p.gemm.K, bShape, kb)
	}

	// Broadcast the batch dimensions, aligned from the right.
	aBatch, bBatch := am[:ra-2], bm[:rb-2]
	rank := max(len(aBatch), len(bBatch))
	p.batch = make([]int, rank)
	p.aStride = make([]int, rank)
	p.bStride = make([]int, rank)
	aStride, bStride := p.gemm.M*p.gemm.K, p.gemm.K*p.gemm.N // cannot overflow: ≤ aLen, bLen
	p.aDense, p.bSingle = true, true
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
			p.batch[d] = da
		case da == 1:
			p.batch[d] = db
		default:
			return nil, newError(op, fmt.Sprintf("BShape[%d]", ib), ErrShapeMismatch,
				"batch dimension %d of B %v does not broadcast with dimension %d of A %v", db, bShape, da, aShape)
		}
		if da != 1 {
			p.aStride[d] = aStride
			aStride *= da
		}
		if db != 1 {
			p.bStride[d] = bStride
			bStride *= db
			p.bSingle = false
		}
		if da != p.batch[d] {
			p.aDense = false
		}
	}

	batches, ok := product(p.batch...)
	if !ok {
		return nil, newError(op, "BShape", ErrOverflow, "broadcast batch %v has more elements than an int holds", p.batch)
	}
	p.batches = batches
	p.outLen, ok = product(batches, p.gemm.M, p.gemm.N)
	if !ok {
		return nil, newError(op, "BShape", ErrOverflow, "output of %v·%v has more elements than an int holds", aShape, bShape)
	}
	p.outShape = append([]int{}, p.batch...)
	if len(aShape) > 1 {
		p.outShape = append(p.outShape, p.gemm.M)
	}
	if len(bShape) > 1 {
		p.outShape = append(p.outShape, p.gemm.N)
	}
	return p, nil
}
