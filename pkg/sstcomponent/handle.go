package sstcomponent

import (
	"fmt"
	"math/bits"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// RequestError says why a request was answered INVALID. It is logged at debug level, never
// returned to the client beyond the status.
type RequestError struct {
	Type      protocol.RequestType
	RequestID uint64
	Reason    string
	Err       error // the model's or the decoder's error, if any
}

// Error implements error.
func (e *RequestError) Error() string {
	s := fmt.Sprintf("sstcomponent: %s request %d: %s", e.Type, e.RequestID, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *RequestError) Unwrap() error { return e.Err }

func invalid(req *protocol.Request, reason string, err error) error {
	return &RequestError{Type: req.Type, RequestID: req.RequestID, Reason: reason, Err: err}
}

// handle answers one request into resp and counts it in st.
func (c *Component) handle(req *protocol.Request, resp *reply, st *Stats, log *zerolog.Logger) {
	resp.start(req)
	st.Total++
	if req.Type.Known() {
		st.Requests[req.Type]++
	} else {
		st.Unknown++
	}
	var err error
	switch req.Type {
	case protocol.ReqNoop:
	case protocol.ReqEcho:
		resp.Payload = req.Payload
		resp.setUsed(protocol.MaxDataSize)
		resp.Result = protocol.MaxDataSize
	case protocol.ReqCompute:
		err = c.compute(req, resp, st)
	case protocol.ReqGEMM:
		err = c.gemm(req, resp, st)
	case protocol.ReqBatchedGEMM:
		err = c.batchedGEMM(req, resp, st)
	case protocol.ReqGEMMList:
		err = c.gemmList(req, resp, st)
	case protocol.ReqRead:
		err = c.read(req, resp, st)
	case protocol.ReqWrite:
		err = c.write(req, resp, st)
	case protocol.ReqConfigure:
		err = c.configure(req, resp)
	case protocol.ReqReset:
		c.reset()
	case protocol.ReqGetInfo:
		// As the QEMU device answers it without an event link.
		resp.SetInfo(protocol.DeviceInfo(protocol.BaseFeatures))
	default:
		err = invalid(req, "unknown request type", nil)
	}
	if err != nil {
		st.Invalid++
		resp.start(req)
		resp.Status = protocol.StatusInvalid
		if e := log.Debug(); e.Enabled() {
			e.Err(err).Msg("request answered INVALID")
		}
		return
	}
	if e := log.Debug(); e.Enabled() {
		e.Stringer("type", req.Type).Uint64("id", req.RequestID).Uint64("result", resp.Result)
		switch req.Type {
		case protocol.ReqGEMM:
			g, r := req.GEMM(), resp.GEMM()
			e.Uint32("M", g.M).Uint32("N", g.N).Uint32("K", g.K).Uint32("dtype_size", g.DtypeSize).
				Uint64("compute_cycles", r.ComputeCycles).Uint64("memory_cycles", r.MemoryCycles).Uint64("memory_bytes", r.MemoryBytes)
		case protocol.ReqBatchedGEMM:
			g, r := req.BatchedGEMM(), resp.GEMM()
			e.Uint32("M", g.M).Uint32("N", g.N).Uint32("K", g.K).Uint32("dtype_size", g.DtypeSize).Uint64("batch", g.Batch).
				Uint64("compute_cycles", r.ComputeCycles).Uint64("memory_cycles", r.MemoryCycles).Uint64("memory_bytes", r.MemoryBytes)
		case protocol.ReqGEMMList:
			e.Uint32("count", req.GEMMListHeader().Count)
		}
		e.Msg("request")
	}
}

// compute charges ReferenceComputeCost cycles per compute unit, or cost[latency_model]
// with a cost table.
func (c *Component) compute(req *protocol.Request, resp *reply, st *Stats) error {
	p := req.Compute()
	cost := uint64(ReferenceComputeCost)
	if c.costs != nil {
		if uint64(p.LatencyModel) >= uint64(len(c.costs)) {
			return invalid(req, fmt.Sprintf("unknown latency_model %d (want 0 to %d)", p.LatencyModel, len(c.costs)-1), nil)
		}
		cost = c.costs[p.LatencyModel]
	}
	hi, cycles := bits.Mul64(p.ComputeUnits, cost)
	if hi != 0 {
		return invalid(req, fmt.Sprintf("%d compute units × %d cycles overflows 64 bits", p.ComputeUnits, cost), nil)
	}
	start := c.clock.advance(cycles)
	resp.SetCompute(protocol.ComputeResult{Cycles: cycles, Timestamp: start})
	resp.Result = cycles
	st.Compute.Add(cycles)
	return nil
}

// gemm asks the model for the GEMM's cost.
func (c *Component) gemm(req *protocol.Request, resp *reply, st *Stats) error {
	g := req.GEMM()
	op := perfmodel.Op{M: uint64(g.M), N: uint64(g.N), K: uint64(g.K), DtypeSize: uint64(g.DtypeSize)}
	e, err := c.model.Load().model.Estimate(op)
	if err != nil {
		return invalid(req, "model", err)
	}
	c.answerGEMM(&e, resp, st)
	return nil
}

// answerGEMM simulates e and answers it in the GEMM result layout: the common tail of
// GEMM and BATCHED_GEMM.
func (c *Component) answerGEMM(e *perfmodel.Estimate, resp *reply, st *Stats) {
	resp.SetGEMM(c.simulate(e, st))
	resp.Result = e.Cycles
}

// simulate advances the clock by e's cycles and counts e in the GEMM statistics, as every
// GEMM, BATCHED_GEMM and GEMM_LIST entry is, and returns e's figures for the answer.
func (c *Component) simulate(e *perfmodel.Estimate, st *Stats) protocol.GEMMResult {
	c.clock.advance(e.Cycles)
	st.GEMM.add(e)
	return protocol.GEMMResult{Cycles: e.Cycles, ComputeCycles: e.ComputeCycles,
		MemoryCycles: e.MemoryCycles, MemoryBytes: e.MemoryBytes}
}

// batchedGEMM asks the model for a batch of equal GEMMs as one kernel
// (perfmodel.EstimateBatched: the gpu model shares the waves, the others answer batch ×
// one GEMM) and answers the batch's totals in the GEMM result layout.
func (c *Component) batchedGEMM(req *protocol.Request, resp *reply, st *Stats) error {
	g, err := req.CheckBatchedGEMM()
	if err != nil {
		return invalid(req, "payload", err)
	}
	op := perfmodel.Op{M: uint64(g.M), N: uint64(g.N), K: uint64(g.K), DtypeSize: uint64(g.DtypeSize)}
	e, err := perfmodel.EstimateBatched(c.model.Load().model, op, g.Batch)
	if err != nil {
		return invalid(req, "model", err)
	}
	c.answerGEMM(&e, resp, st)
	st.GEMM.Batched.Add(g.Batch)
	return nil
}

// gemmList answers the entries of a GEMM_LIST in order, each exactly as a GEMM (batch 1)
// or a BATCHED_GEMM (batch > 1) of its shape is answered, clock and statistics included,
// into the answer's payload, GEMMListResultSize bytes each. It stops at the first entry
// the model cannot answer (a zero field, or arithmetic beyond 64 bits); result is the
// number of entries answered, so the caller can send that entry alone for its own INVALID
// and the rest again. A bad header (count, dtype_size) makes the whole request INVALID.
func (c *Component) gemmList(req *protocol.Request, resp *reply, st *Stats) error {
	h, err := req.CheckGEMMList()
	if err != nil {
		return invalid(req, "payload", err)
	}
	model := c.model.Load().model
	n := 0
	for ; n < int(h.Count); n++ {
		g, err := req.CheckGEMMListEntry(n)
		if err != nil {
			break
		}
		op := perfmodel.Op{M: uint64(g.M), N: uint64(g.N), K: uint64(g.K), DtypeSize: uint64(h.DtypeSize)}
		e, err := perfmodel.EstimateBatched(model, op, g.Batch)
		if err != nil {
			break
		}
		resp.SetGEMMListResult(n, c.simulate(&e, st))
		if g.Batch > 1 {
			st.GEMM.Batched.Add(g.Batch)
		}
	}
	resp.setUsed(n * protocol.GEMMListResultSize)
	resp.Result = uint64(n)
	return nil
}

// read returns device memory at response offset 32.
func (c *Component) read(req *protocol.Request, resp *reply, st *Stats) error {
	m := req.Memory()
	if m.Size > protocol.MaxReadData {
		return invalid(req, fmt.Sprintf("size %d exceeds the %d bytes a READ returns", m.Size, protocol.MaxReadData), nil)
	}
	if !inRange(m.Addr, uint64(m.Size)) {
		return invalid(req, fmt.Sprintf("[%#x, +%d) outside the %#x bytes of device memory", m.Addr, m.Size, protocol.DeviceMemorySize), nil)
	}
	c.mem.read(m.Addr, resp.Payload[:m.Size])
	resp.setUsed(int(m.Size))
	resp.Result = uint64(m.Size)
	st.Read.Add(uint64(m.Size))
	return nil
}

// write stores the data that follows the memory header.
func (c *Component) write(req *protocol.Request, resp *reply, st *Stats) error {
	m := req.Memory()
	data, err := req.WriteData()
	if err != nil {
		return invalid(req, "size", err)
	}
	if !inRange(m.Addr, uint64(m.Size)) {
		return invalid(req, fmt.Sprintf("[%#x, +%d) outside the %#x bytes of device memory", m.Addr, m.Size, protocol.DeviceMemorySize), nil)
	}
	c.mem.write(m.Addr, data)
	resp.Result = uint64(m.Size)
	st.Write.Add(uint64(m.Size))
	return nil
}

// configure sets one model parameter and rebuilds the model; on error the model stays.
func (c *Component) configure(req *protocol.Request, resp *reply) error {
	p := req.Configure()
	c.modelMu.Lock()
	defer c.modelMu.Unlock()
	cur := c.model.Load()
	params := cur.params
	if err := params.Set(perfmodel.ParamID(p.ParamID), p.Value); err != nil {
		return invalid(req, "parameter", err)
	}
	m, err := perfmodel.New(cur.kind, params)
	if err != nil {
		return invalid(req, "model", err)
	}
	c.model.Store(&modelState{model: m, kind: cur.kind, params: params})
	resp.Result = p.Value
	return nil
}

// reset zeroes device memory and restores the start-up model; the clock keeps running.
func (c *Component) reset() {
	c.modelMu.Lock()
	c.model.Store(c.initial)
	c.modelMu.Unlock()
	c.mem.reset()
}
