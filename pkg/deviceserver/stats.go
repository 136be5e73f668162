package deviceserver

import "sync/atomic"

// Stats counts the ops a server has run.
type Stats struct {
	Ops           uint64 // ops computed
	GEMM          uint64
	Conv          uint64
	Matmul        uint64
	Timed         uint64 // ops the device timed
	Untimed       uint64 // ops computed but not timed (device absent, timeout, error)
	Failed        uint64 // ops rejected as invalid
	TimingRequest uint64 // GEMM requests the device answered
	Cycles        uint64 // simulated cycles over all timed ops
}

type counters struct {
	gemm, conv, matmul, timed, untimed, failed, requests, cycles atomic.Uint64
}

func (c *counters) record(t OpType, timing Timing) {
	switch t {
	case OpGEMM:
		c.gemm.Add(1)
	case OpConv:
		c.conv.Add(1)
	case OpMatmul:
		c.matmul.Add(1)
	}
	if timing.Timed {
		c.timed.Add(1)
		c.cycles.Add(timing.Cycles)
	} else {
		c.untimed.Add(1)
	}
	c.requests.Add(uint64(timing.Requests))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		GEMM: c.gemm.Load(), Conv: c.conv.Load(), Matmul: c.matmul.Load(),
		Timed: c.timed.Load(), Untimed: c.untimed.Load(), Failed: c.failed.Load(),
		TimingRequest: c.requests.Load(), Cycles: c.cycles.Load(),
	}
	st.Ops = st.GEMM + st.Conv + st.Matmul
	return st
}
