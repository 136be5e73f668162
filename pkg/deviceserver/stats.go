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
	Failed         uint64                  `json:"failed"` // ops rejected as invalid
	// TimingRequest counts the timing requests the devices answered, whatever the status;
	// ComputeTimingRequests those of them that were COMPUTE (see TimingRequest).
	TimingRequest         uint64 `json:"timing_requests"`
	ComputeTimingRequests uint64 `json:"compute_timing_requests"`
	Cycles                uint64 `json:"cycles"` // simulated cycles over all timed ops
	// TimingModes is, per device, the request its GEMMs are timed with now: "gemm" or
	// "compute"; ComputeFallbacks counts the switches from GEMM to COMPUTE.
	TimingModes      []string `json:"timing_modes"`
	ComputeFallbacks uint64   `json:"compute_fallbacks"`
}

type counters struct {
	gemm, conv, matmul, timed, failed, requests, computeRequests, cycles atomic.Uint64
	untimed                                                              [numUntimedCauses]atomic.Uint64
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
	c.computeRequests.Add(uint64(timing.ComputeRequests))
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		GEMM: c.gemm.Load(), Conv: c.conv.Load(), Matmul: c.matmul.Load(),
		Timed: c.timed.Load(), Failed: c.failed.Load(),
		TimingRequest: c.requests.Load(), ComputeTimingRequests: c.computeRequests.Load(), Cycles: c.cycles.Load(),
		TimingModes: s.TimingModes(), ComputeFallbacks: s.fallbacks.Load(),
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
