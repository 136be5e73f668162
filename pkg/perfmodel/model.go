package perfmodel

import (
	"fmt"
	"math/bits"
	"strconv"
)

// Op is one GEMM, C[M,N] = A[M,K]·B[K,N], with elements of DtypeSize bytes (4 for float32).
// Every field must be at least 1; any value up to 2^64-1 is accepted, and an estimate whose
// quantities do not fit in 64 bits fails with ErrOverflow.
type Op struct {
	M, N, K   uint64
	DtypeSize uint64
}

// String formats the op as in the reference component's log line.
func (o Op) String() string {
	return fmt.Sprintf("C[%d,%d]=A[%d,%d]·B[%d,%d] dtype_size=%d", o.M, o.N, o.M, o.K, o.K, o.N, o.DtypeSize)
}

// Validate returns an *InvalidOpError when a dimension or the element size is zero.
func (o Op) Validate() error {
	for _, f := range []struct {
		name string
		v    uint64
	}{{"M", o.M}, {"N", o.N}, {"K", o.K}, {"DtypeSize", o.DtypeSize}} {
		if f.v == 0 {
			return &InvalidOpError{Op: o, Field: f.name, Reason: "must be at least 1"}
		}
	}
	return nil
}

// Bound names the resource that limits an estimate.
type Bound uint8

// The two bounds. As in the reference component, an op is compute-bound only when its
// compute cycles strictly exceed its memory cycles; a tie is memory-bound.
const (
	BoundCompute Bound = iota
	BoundMemory
)

// String returns "compute" or "memory".
func (b Bound) String() string {
	switch b {
	case BoundCompute:
		return "compute"
	case BoundMemory:
		return "memory"
	}
	return fmt.Sprintf("Bound(%d)", uint8(b))
}

// Estimate is a model's answer for one op. Cycles = max(ComputeCycles, MemoryCycles).
type Estimate struct {
	Cycles, ComputeCycles, MemoryCycles, MemoryBytes, FLOPs uint64
	// Utilization is the achieved fraction of the model's peak compute rate,
	// FLOPs / (max(Cycles,1) · peak FLOP per cycle), clamped to [0, 1].
	Utilization float64
	Bound       Bound
}

// Model estimates the cost of GEMMs. Implementations are immutable and safe for
// concurrent use; Estimate is a pure function of the op and the model's parameters.
type Model interface {
	// Name returns the model kind, one of Kinds().
	Name() string
	// Estimate returns the op's cost, or an *InvalidOpError or *OverflowError.
	Estimate(op Op) (Estimate, error)
}

// Model kinds accepted by New.
const (
	KindRoofline = "roofline"
	KindTiled    = "tiled"
	KindSystolic = "systolic"
	KindGPU      = "gpu"
	// KindSystolicPaper is the SCALE-Sim paper's formula, kept beside v2's code ("systolic").
	KindSystolicPaper = "systolic-paper"
)

// Kinds returns the model kinds New accepts, in a fixed order.
func Kinds() []string {
	return []string{KindRoofline, KindTiled, KindSystolic, KindGPU, KindSystolicPaper}
}

// New validates the parameters the kind uses and returns the model. Parameters the kind
// does not use are ignored. Errors wrap ErrUnknownKind or ErrInvalidParam.
func New(kind string, p Params) (Model, error) {
	switch kind {
	case KindRoofline:
		return newRoofline(p)
	case KindTiled:
		return newTiled(p)
	case KindSystolic:
		return newSystolic(p)
	case KindGPU:
		return newGPU(p)
	case KindSystolicPaper:
		return newSystolicPaper(p)
	}
	return nil, fmt.Errorf("%w %q (want one of %v)", ErrUnknownKind, kind, Kinds())
}

// BatchedEstimator is implemented by models that time a batch of independent GEMMs of one
// shape as a single kernel (the gpu model: the batch's tiles share the waves and pay the
// fixed cost once), rather than as batch separate GEMMs.
type BatchedEstimator interface {
	// EstimateBatched returns the cost of batch GEMMs of shape op, or an *InvalidOpError
	// (also for batch = 0) or *OverflowError.
	EstimateBatched(op Op, batch uint64) (Estimate, error)
}

// EstimateBatched answers a batched GEMM (batch ≥ 1 GEMMs of shape op, as torch.bmm) with
// any model: a BatchedEstimator answers it itself; every other model answers batch × its
// single-GEMM estimate, exactly: FLOPs, bytes and cycles are multiplied by batch (an
// overflow is an *OverflowError), Bound and Utilization are the single GEMM's.
func EstimateBatched(m Model, op Op, batch uint64) (Estimate, error) {
	if b, ok := m.(BatchedEstimator); ok {
		return b.EstimateBatched(op, batch)
	}
	if err := validateBatched(op, batch); err != nil {
		return Estimate{}, err
	}
	e, err := m.Estimate(op)
	if err != nil || batch == 1 {
		return e, err
	}
	c := checked{model: m.Name(), op: op}
	q := func(name string) string { return name + " of batch " + strconv.FormatUint(batch, 10) }
	e.FLOPs = c.mul(q("flops"), e.FLOPs, batch)
	e.MemoryBytes = c.mul(q("memory bytes"), e.MemoryBytes, batch)
	e.ComputeCycles = c.mul(q("compute cycles"), e.ComputeCycles, batch)
	e.MemoryCycles = c.mul(q("memory cycles"), e.MemoryCycles, batch)
	e.Cycles = c.mul(q("cycles"), e.Cycles, batch)
	if c.err != nil {
		return Estimate{}, c.err
	}
	return e, nil
}

// validateBatched checks op and a batch count of at least 1.
func validateBatched(op Op, batch uint64) error {
	if err := op.Validate(); err != nil {
		return err
	}
	if batch == 0 {
		return &InvalidOpError{Op: op, Field: "Batch", Reason: "must be at least 1"}
	}
	return nil
}

// checked does 64-bit arithmetic for one estimate and remembers the first overflow, so a
// formula reads as a straight sequence of operations followed by one error check.
type checked struct {
	model string
	op    Op
	err   error
}

func (c *checked) overflow(quantity string) uint64 {
	if c.err == nil {
		c.err = &OverflowError{Model: c.model, Quantity: quantity, Op: c.op}
	}
	return 0
}

// mul returns a·b, or records an overflow of the named quantity.
func (c *checked) mul(quantity string, a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return c.overflow(quantity)
	}
	return lo
}

// add returns a+b, or records an overflow of the named quantity.
func (c *checked) add(quantity string, a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return c.overflow(quantity)
	}
	return s
}

// mulDiv returns floor(a·b/d) exactly through a 128-bit product; d must not be zero.
func (c *checked) mulDiv(quantity string, a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	if hi >= d { // the quotient would not fit in 64 bits (and bits.Div64 would panic)
		return c.overflow(quantity)
	}
	q, _ := bits.Div64(hi, lo, d)
	return q
}

// ceilDiv returns ceil(a/b) for a ≥ 1, b ≥ 1 without the overflow of (a+b-1)/b.
func ceilDiv(a, b uint64) uint64 { return (a-1)/b + 1 }

// finish fills Cycles, Bound and Utilization from the other fields of e.
func finish(e Estimate, peakFLOPsPerCycle float64) Estimate {
	e.Cycles = max(e.ComputeCycles, e.MemoryCycles)
	e.Bound = BoundMemory
	if e.ComputeCycles > e.MemoryCycles {
		e.Bound = BoundCompute
	}
	e.Utilization = Utilization(e.FLOPs, e.Cycles, peakFLOPsPerCycle)
	return e
}

// gemmFLOPs returns 2·M·N·K: one multiply and one add per term of every dot product.
func (c *checked) gemmFLOPs(op Op) uint64 {
	return c.mul("flops", c.mul("flops", c.mul("flops", 2, op.M), op.N), op.K)
}
