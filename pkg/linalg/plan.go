package linalg

import (
	"fmt"
	"math/bits"
)

// MaxRank is the largest rank of a matmul operand. PyTorch allows more, but no model sends
// them, and the bound keeps a Plan small and of fixed size: its shapes are arrays, not
// slices, so planning a GEMM allocates nothing and a matmul or convolution one small
// layout.
const MaxRank = 8

// Kind is the operator a Plan is for.
type Kind uint8

// The operators this package plans and computes.
const (
	KindGEMM   Kind = iota + 1 // C[M,N] = A[M,K]·B[K,N]
	KindMatmul                 // torch.matmul(A, B)
	KindConv2D                 // conv2d(input, weight), no bias
)

// String returns the operator's name as used in Error.Op: "gemm", "matmul" or "conv2d".
func (k Kind) String() string {
	switch k {
	case KindGEMM:
		return "gemm"
	case KindMatmul:
		return "matmul"
	case KindConv2D:
		return "conv2d"
	default:
		return "unplanned"
	}
}

// GEMMBatch is Count GEMMs of one shape.
type GEMMBatch struct {
	Shape GEMMShape
	Count int
}

// Plan is a validated operator without its data: the shape rules applied once, with
// everything a caller needs to size, admit, time and compute the op. It is made by
// PlanGEMM, PlanMatmul or PlanConv2D, which check shapes only; how large an op a caller
// accepts is the caller's decision, made from InputElems, OutElems and Workspace. The
// zero Plan is not valid. A Plan is immutable and safe for concurrent use.
type Plan struct {
	kind      Kind
	out       [MaxRank]int // output shape, first outRank entries
	outRank   int
	inputs    [2]int // elements of the two operands (A and B, or input and weight)
	outLen    int    // elements of the output
	workspace int    // elements of scratch memory Compute allocates besides the output
	gemm      GEMMShape
	count     int           // GEMMs of shape gemm that carry multiply–adds (0: none)
	mm        *matmulLayout // set for a matmul: how to compute it
	conv      *convLayout   // set for a convolution
}

// Kind returns the operator the plan is for.
func (p *Plan) Kind() Kind { return p.kind }

// OutShape returns a copy of the output shape (empty for a 0-D result, the dot product of
// two vectors).
func (p *Plan) OutShape() []int { return p.AppendOutShape(make([]int, 0, p.outRank)) }

// AppendOutShape appends the output shape to dst and returns the result, for a caller
// that keeps its own storage for it.
func (p *Plan) AppendOutShape(dst []int) []int { return append(dst, p.out[:p.outRank]...) }

// InputElems returns the element counts of the two operands, in argument order.
func (p *Plan) InputElems() [2]int { return p.inputs }

// OutElems returns the element count of the output (1 for a 0-D result).
func (p *Plan) OutElems() int { return p.outLen }

// Workspace returns the elements of scratch memory Compute allocates besides its output:
// a convolution's im2col buffer for one image and group, (C/Groups)·KH·KW·OH·OW, or 0
// for a 1×1 convolution with stride 1 and no padding, a GEMM and a matmul. (A convolution
// whose per-group GEMM is small runs on several goroutines with a buffer each; each such
// buffer then holds at most 64³ elements.)
func (p *Plan) Workspace() int { return p.workspace }

// Batches returns the GEMMs the op lowers to, counted rather than listed, so that a
// broadcast of millions of tiny products costs nothing to describe: one GEMMBatch for every
// plan with any multiply–add, none when the output is empty or all zeros (a zero M, N or
// K). A matmul is one GEMM per output batch element; a convolution one per group,
// {M: O/Groups, N: N·OH·OW, K: (C/Groups)·KH·KW}, the batch folded into N.
func (p *Plan) Batches() []GEMMBatch {
	if p.count == 0 {
		return nil
	}
	return []GEMMBatch{{Shape: p.gemm, Count: p.count}}
}

// FLOPs returns the op's floating-point operations, 2·M·N·K summed over its GEMMs, or an
// *Error of kind ErrOverflow if the sum does not fit in a uint64: valid shapes, but far
// beyond any op that can be computed, which a caller timing shapes alone can still meet.
func (p *Plan) FLOPs() (uint64, error) {
	g := p.gemm
	total := uint64(2)
	for _, f := range [...]int{g.M, g.N, g.K, p.count} {
		hi, lo := bits.Mul64(total, uint64(f))
		if hi != 0 {
			return 0, newError(p.kind.String(), "FLOPs", ErrOverflow,
				"2·%d·%d·%d × %d GEMMs does not fit in 64 bits", g.M, g.N, g.K, p.count)
		}
		total = lo
	}
	return total, nil
}

// Compute runs the op on its two operands, row-major (A and B, or input and weight), which
// must hold exactly InputElems elements (ErrLength otherwise), and returns the freshly
// allocated row-major output of OutElems elements.
func (p *Plan) Compute(x, y []float32) ([]float32, error) { return p.ComputeInto(x, y, nil) }

// ComputeInto is Compute writing the result into dst when dst's capacity holds it (the
// result is then dst[:OutElems()], whatever dst held before), and into new memory
// otherwise: for a caller that reuses the storage of its results.
func (p *Plan) ComputeInto(x, y, dst []float32) ([]float32, error) {
	if p.kind == 0 {
		return nil, newError("plan", "Kind", ErrBadDim, "the zero Plan; make one with PlanGEMM, PlanMatmul or PlanConv2D")
	}
	names := [2]string{"A", "B"}
	if p.kind == KindConv2D {
		names = [2]string{"Input", "Weight"}
	}
	for i, v := range [2][]float32{x, y} {
		if len(v) != p.inputs[i] {
			return nil, newError(p.kind.String(), names[i], ErrLength, "len = %d, %s holds %d",
				len(v), p.inputShape(i), p.inputs[i])
		}
	}
	var out []float32
	if cap(dst) >= p.outLen {
		out = dst[:p.outLen]
		if p.kind != KindGEMM { // Sgemm overwrites C; a matmul or conv with K = 0 writes nothing
			clear(out)
		}
	} else {
		out = make([]float32, p.outLen)
	}
	switch p.kind {
	case KindGEMM:
		Sgemm(p.gemm.M, p.gemm.N, p.gemm.K, x, y, out)
	case KindMatmul:
		p.computeMatmul(x, y, out)
	case KindConv2D:
		p.computeConv(x, y, out)
	}
	return out, nil
}

// inputShape describes operand i for error messages: its shape where the plan keeps it.
func (p *Plan) inputShape(i int) string {
	switch {
	case p.kind == KindGEMM && i == 0:
		return fmt.Sprint([]int{p.gemm.M, p.gemm.K})
	case p.kind == KindGEMM:
		return fmt.Sprint([]int{p.gemm.K, p.gemm.N})
	case p.kind == KindConv2D && i == 0:
		return fmt.Sprint(p.conv.InputShape)
	case p.kind == KindConv2D:
		return fmt.Sprint(p.conv.WeightShape)
	default:
		return "the operand's shape"
	}
}

// PlanGEMM validates one GEMM: M, N and K non-negative (ErrBadDim), M·K, K·N and M·N
// within an int (ErrOverflow). The output is [M, N].
func PlanGEMM(s GEMMShape) (Plan, error) {
	if err := s.validate("gemm", -1, -1, -1); err != nil {
		return Plan{}, err
	}
	p := Plan{kind: KindGEMM, gemm: s, outRank: 2, outLen: s.M * s.N}
	p.out[0], p.out[1] = s.M, s.N
	p.inputs = [2]int{s.M * s.K, s.K * s.N}
	if s.M > 0 && s.N > 0 && s.K > 0 {
		p.count = 1
	}
	return p, nil
}
