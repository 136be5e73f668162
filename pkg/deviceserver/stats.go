package deviceserver

import "sync/atomic"

// Stats counts the ops a server has run. The JSON keys are those of /stats.
type Stats struct {
	Ops     uint64 `json:"ops"` // ops computed
	GEMM    uint64 `json:"gemm"`
	Conv    uint64 `json:"conv"`
	Matmul  uint64 `json:"matmul"`
	Timed   uint64 `json:"timed"`   // ops the device timed
	Untimed uint64 `json:"untimed"` // ops computed but not timed, the sum of UntimedByCause
	// UntimedByCause counts the untimed ops by cause; every cause is present.
	UntimedByCause map[UntimedCause]uint64 `json:"untimed_by_cause"`
	Failed         uint64                  `json:"failed"`          // ops rejected as invalid
	TimingRequest  uint64                  `json:"timing_requests"` // GEMM requests the device answered
	Cycles         uint64                  `json:"cycles"`          // simulated cycles over all timed ops
}

type counters struct {
	gemm, conv, matmul, timed, failed, requests, cycles atomic.Uint64
	untimed                                             [numUntimedCauses]atomic.Uint64
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
		cause := timing.Untimed
		if cause == UntimedNone || cause >= numUntimedCauses {
			cause = UntimedDeviceError // an untimed op always counts under some cause
		}
		c.untimed[cause].Add(1)
	}
	c.requests.Add(uint64(timing.Requests))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		GEMM: c.gemm.Load(), Conv: c.conv.Load(), Matmul: c.matmul.Load(),
		Timed: c.timed.Load(), Failed: c.failed.Load(),
		TimingRequest: c.requests.Load(), Cycles: c.cycles.Load(),
		UntimedByCause: make(map[UntimedCause]uint64, numUntimedCauses-1),
	}
	for _, cause := range UntimedCauses() {
		n := c.untimed[cause].Load()
		st.UntimedByCause[cause] = n
		st.Untimed += n
	}
	st.Ops = st.GEMM + st.Conv + st.Matmul
	return st
}
