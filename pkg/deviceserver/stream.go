package deviceserver

import (
	"context"
	"fmt"
	"time"

	"github.com/sstemu/sstemu/pkg/linalg"
)

// gemmStream is the Server's GEMMStream: linalg's K-blocked accumulation of the op's plan,
// and the op's timing request, sent when the stream starts (the shape is known from the
// JSON) so that it overlaps the transfer of B too.
type gemmStream struct {
	s       *Server
	op      *Op
	plan    *linalg.Plan
	gemm    *linalg.GEMMStream
	compute time.Duration // spent in Add
	timed   chan streamTiming
	answer  *streamTiming // the timing once received from timed
}

// streamTiming is the answer of the timing request a stream started.
type streamTiming struct {
	timing Timing
	device int
	took   time.Duration
}

// StartGEMM starts computing a GEMM op whose A is in op.GEMM.A and whose B is still to
// come (op.GEMM.B is not read), and sends its timing request meanwhile.
func (s *Server) StartGEMM(ctx context.Context, op *Op) (GEMMStream, error) {
	if op.Type != OpGEMM || op.GEMM == nil {
		s.stats.failed.Add(1)
		return nil, fmt.Errorf("deviceserver: op %d: a %s streamed as a GEMM", op.ID, op.Type)
	}
	plan := op.Plan
	if plan == nil {
		p, err := planOp(op)
		if err != nil {
			s.stats.failed.Add(1)
			return nil, err
		}
		plan = &p
	}
	g, err := plan.StreamGEMM(op.GEMM.A)
	if err != nil {
		s.stats.failed.Add(1)
		return nil, err
	}
	st := &gemmStream{s: s, op: op, plan: plan, gemm: g, timed: make(chan streamTiming, 1)}
	batches := plan.Batches()
	go func() {
		start := time.Now()
		t, dev := s.timeBatches(ctx, batches)
		st.timed <- streamTiming{timing: t, device: dev, took: time.Since(start)}
	}()
	return st, nil
}

// BlockRows is linalg's K-block for the op's shape.
func (st *gemmStream) BlockRows() int { return st.gemm.BlockRows() }

// Add accumulates the next rows of B.
func (st *gemmStream) Add(b []float32) error {
	start := time.Now()
	err := st.gemm.Add(b)
	st.compute += time.Since(start)
	return err
}

// Finish waits for the timing request and returns the result. The wait is bounded as the
// request is: by StartGEMM's context and the device timeout.
func (st *gemmStream) Finish() (*Result, error) {
	data, err := st.gemm.Result()
	if err != nil {
		st.wait()
		st.s.stats.failed.Add(1)
		return nil, err
	}
	t := st.wait()
	res := newResult(st.plan, data)
	res.Timing, res.Device, res.ComputeTime, res.TimingTime = t.timing, t.device, st.compute, t.took
	st.s.done(st.op, res)
	return res, nil
}

// Abort waits for the timing request, whose answer is dropped. It may be called more
// than once, also after Finish.
func (st *gemmStream) Abort() {
	st.wait()
}

// wait returns the timing request's answer, waiting for it the first time.
func (st *gemmStream) wait() streamTiming {
	if st.answer == nil {
		t := <-st.timed
		st.answer = &t
	}
	return *st.answer
}
