package deviceserver

import (
	"context"
	"time"

	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// OpType is the operator code carried in byte 8 of a DeviceGEMM frame.
type OpType uint8

// Operator codes of the DeviceGEMM protocol (docs/wire.md §Request frame).
const (
	OpGEMM   OpType = 0x01
	OpConv   OpType = 0x02
	OpMatmul OpType = 0x03
)

// String names the operator for logs.
func (t OpType) String() string {
	switch t {
	case OpGEMM:
		return "GEMM"
	case OpConv:
		return "CONV"
	case OpMatmul:
		return "MATMUL"
	default:
		return "UNKNOWN"
	}
}

// Name is the op's lower-case name, as logs and timing records write it: "gemm", "conv",
// "matmul" or "unknown".
func (t OpType) Name() string {
	switch t {
	case OpGEMM:
		return "gemm"
	case OpConv:
		return "conv"
	case OpMatmul:
		return "matmul"
	default:
		return "unknown"
	}
}

// GEMM is C[M,N] = A[M,K] × B[K,N] on row-major float32 matrices.
type GEMM struct {
	M, N, K int
	A       []float32 // M×K, row-major
	B       []float32 // K×N, row-major
}

// Matmul is torch.matmul(A, B) with its shape rules: 1-D operands are promoted and the
// promoted dimension removed again, leading (batch) dimensions broadcast.
type Matmul struct {
	AShape, BShape []int
	A, B           []float32 // row-major, len = product of the shape
}

// Conv2D is a 2-D convolution of an NCHW input with an OIHW weight (PyTorch's conv2d
// without bias): weight is [O, C/Groups, KH, KW].
type Conv2D struct {
	InputShape  [4]int // N, C, H, W
	WeightShape [4]int // O, C/Groups, KH, KW
	Stride      [2]int // H, W; each ≥ 1
	Padding     [2]int // H, W; each ≥ 0
	Dilation    [2]int // H, W; each ≥ 1
	Groups      int    // ≥ 1, divides C and O
	Input       []float32
	Weight      []float32
}

// Op is one operator as decoded by the front end. Exactly one of GEMM, Matmul and Conv is
// set, matching Type.
type Op struct {
	ID     int64 // op_id from the client's JSON, for logs
	Type   OpType
	GEMM   *GEMM
	Matmul *Matmul
	Conv   *Conv2D
	// Plan is the op's validated shapes, if the caller has planned it (the front end
	// always has, before reading the tensors): the server then computes and times the op
	// from it without planning again, and the shape fields above are not read. Nil: the
	// server plans the op from them.
	Plan *linalg.Plan
	// Out, if its capacity holds the op's output, is where the server writes it
	// (Result.Data is then Out's storage); otherwise the server allocates the output.
	// It lets a caller that serves one op after another reuse one buffer.
	Out []float32
}

// Timing is the simulated cost of one op as the device reported it. An op whose timing
// could not be obtained (device absent, timeout) has Timed false, Untimed saying why, and
// its result is still returned to the client.
type Timing struct {
	Timed bool
	// Requests counts the timing requests the device answered for this op, whatever
	// the status (a GEMM refused before the COMPUTE fallback included);
	// ComputeRequests those of them that were COMPUTE.
	Requests        int
	ComputeRequests int
	// Kind is the request that timed the op (protocol.ReqGEMM; protocol.ReqBatchedGEMM
	// when at least one batch of equal GEMMs went as one BATCHED_GEMM; or
	// protocol.ReqCompute when the device does not know GEMM: see TimingRequest); the timing record's
	// "which request kind timed it". Zero when no request was answered.
	Kind   protocol.RequestType
	Cycles uint64 // sum over the op's timing requests
	// ComputeCycles, MemoryCycles and MemoryBytes are the device's split of Cycles; a
	// COMPUTE answer has cycles only, counted as compute cycles, with no memory figures.
	ComputeCycles uint64
	MemoryCycles  uint64
	MemoryBytes   uint64
	Untimed       UntimedCause // why Timed is false; UntimedNone when it is true
	UntimedErr    error        // the detail of Untimed, for logs; nil when timed
}

// Result is an op's output: a row-major float32 tensor and its timing.
type Result struct {
	Shape  []int
	Data   []float32
	Timing Timing
	// Device is the index of the device the op was timed on; -1 when there is none.
	Device int
	// ComputeTime and TimingTime are the wall-clock time spent computing the result on the
	// host and timing the op through the device.
	ComputeTime, TimingTime time.Duration

	shape [linalg.MaxRank]int // Shape's storage
}

// newResult is the result data of an op planned by p, with its shape.
func newResult(p *linalg.Plan, data []float32) *Result {
	r := &Result{Data: data}
	r.Shape = p.AppendOutShape(r.shape[:0])
	return r
}

// Executor is what layer 2 offers the front end: run one op, return its numeric result and
// its simulated timing. It is safe for concurrent use, and keeps no reference to the op,
// its tensors or its Out after Execute returns (the front end reuses their storage for
// the next op).
type Executor interface {
	Execute(ctx context.Context, op *Op) (*Result, error)
}

// GEMMStreamer is an Executor that can compute a GEMM while its B is still arriving (B
// comes row by row, i.e. K-block by K-block, so C += A[:, kb]·B[kb, :] can run meanwhile).
// The front end, having read A, calls StartGEMM, adds B's rows in order and then calls
// Finish, or Abort if B never arrives whole. It is optional: the front end falls back to
// Execute when its Executor does not implement it.
type GEMMStreamer interface {
	StartGEMM(ctx context.Context, op *Op) (GEMMStream, error)
}

// GEMMStream is one GEMM being computed as its B arrives. Its methods are called one at a
// time (Add possibly on another goroutine than Start and Finish, ordered by the caller).
type GEMMStream interface {
	// BlockRows is how many rows of B the stream wants per Add.
	BlockRows() int
	// Add accumulates the next rows of B (row-major, whole rows of N); b is not kept
	// after Add returns.
	Add(b []float32) error
	// Finish returns the op's result and timing once all K rows have been added; it
	// waits for the timing request, which StartGEMM's context bounds.
	Finish() (*Result, error)
	// Abort ends the stream without a result; it returns once nothing started for the
	// op is still running.
	Abort()
}
