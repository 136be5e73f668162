package linalg

// Streaming GEMM: the front end receives B row by row, i.e. K-block by K-block, so the
// product can be accumulated as C += A[:, k0:k1]·B[k0:k1, :] while the rest of B is still
// arriving. Rounding: every element of C is still a float32 sum of K products, only
// associated differently (one partial sum per block, added in order), so the bound of
// docs/gemm.md (γₖ·Σ|a||b|, valid for any order of summation) holds unchanged.

// Streamed K-blocks: about streamBlockBytes of B per block, at least streamMinRows rows
// (fewer rows make each partial product too thin for the BLAS kernels to run at speed),
// and at least min(M, streamMaxCRows) rows: every block reads and writes all of C again,
// 8·M·N bytes for 2·M·N·rows FLOPs.
const (
	streamBlockBytes = 1 << 20
	streamMinRows    = 128
	streamMaxCRows   = 512
)

// GEMMStream accumulates one GEMM C = A·B from B's rows as they arrive, in order. It is
// not safe for concurrent use.
type GEMMStream struct {
	s    GEMMShape
	a, c []float32
	rows int // rows of B added so far
}

// StreamGEMM starts the streaming computation of a GEMM plan: a holds A (M·K elements,
// row-major) and stays untouched until the stream is done. ErrBadDim if p is not a GEMM,
// ErrLength if a is not M·K long.
func (p *Plan) StreamGEMM(a []float32) (*GEMMStream, error) {
	if p.kind != KindGEMM {
		return nil, newError("stream", "Kind", ErrBadDim, "a %s plan, want a GEMM", p.kind)
	}
	if len(a) != p.inputs[0] {
		return nil, newError("stream", "A", ErrLength, "len = %d, %s holds %d", len(a), p.inputShape(0), p.inputs[0])
	}
	return &GEMMStream{s: p.gemm, a: a, c: make([]float32, p.outLen)}, nil
}

// BlockRows is the number of B rows the stream wants per Add (the last block may be
// shorter): StreamBlockRows of its shape.
func (g *GEMMStream) BlockRows() int {
	return StreamBlockRows(g.s)
}

// streamMaxM is the largest M worth streaming: a GEMM does 2·M FLOPs per 4-byte element
// of B, so the larger M, the less of its time is B's transfer; beyond it the reading
// goroutine only competes with OpenBLAS's threads for the cores (measured on 2 cores:
// 1024³ slower streamed, 2048³ even, 512×4096×4096 and 128×11008×4096 faster;
// docs/gemm.md).
const streamMaxM = 512

// StreamPays reports whether streaming a GEMM of shape s is worth it: B spans more than
// one block and M is at most streamMaxM.
func StreamPays(s GEMMShape) bool {
	return s.M > 0 && s.N > 0 && s.M <= streamMaxM && s.K > StreamBlockRows(s)
}

// StreamBlockRows is the K-block size, in rows of B, a stream of shape s uses.
func StreamBlockRows(s GEMMShape) int {
	rows := max(streamMinRows, min(s.M, streamMaxCRows))
	if s.N > 0 {
		rows = max(streamBlockBytes/(4*s.N), rows)
	}
	return max(min(rows, s.K), 1)
}

// Rows is how many rows of B have been added.
func (g *GEMMStream) Rows() int { return g.rows }

// Add accumulates the next rows of B, which b holds row-major (a whole number of rows of
// N elements, at most the K−Rows still missing). The rows may come in any sizes.
func (g *GEMMStream) Add(b []float32) error {
	n := g.s.N
	if n == 0 {
		if len(b) != 0 {
			return newError("stream", "B", ErrLength, "len = %d, B has no columns", len(b))
		}
		return nil
	}
	if len(b)%n != 0 {
		return newError("stream", "B", ErrLength, "len = %d is not a whole number of rows of %d", len(b), n)
	}
	kb := len(b) / n
	if kb > g.s.K-g.rows {
		return newError("stream", "B", ErrLength, "%d rows after %d, B has %d", kb, g.rows, g.s.K)
	}
	if kb == 0 {
		return nil
	}
	if g.s.M > 0 {
		var beta float32 = 1
		if g.rows == 0 {
			beta = 0
		}
		sgemmAcc(g.s.M, n, kb, g.a[g.rows:], g.s.K, b, g.c, beta)
	}
	g.rows += kb
	return nil
}

// Result returns C once all K rows of B have been added (ErrLength before). The slice is
// the stream's; the stream must not be used afterwards.
func (g *GEMMStream) Result() ([]float32, error) {
	if g.rows != g.s.K {
		return nil, newError("stream", "B", ErrLength, "%d of %d rows added", g.rows, g.s.K)
	}
	if g.s.K == 0 {
		clear(g.c)
	}
	return g.c, nil
}
