package tcpfront

import (
	"sync/atomic"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/optrace"
)

// Stats is a snapshot of a Server's counters since it started.
type Stats struct {
	Ops         uint64               `json:"ops"`           // ops executed and answered (counted as the answer's write starts)
	OpsGEMM     uint64               `json:"ops_gemm"`      // of which GEMM
	OpsConv     uint64               `json:"ops_conv"`      // of which CONV
	OpsMatmul   uint64               `json:"ops_matmul"`    // of which MATMUL
	Trailers    uint64               `json:"trailers"`      // of which answered with a timing trailer
	TimeFrames  uint64               `json:"time_frames"`   // TIME frames answered (not counted in Ops)
	TimeEntries uint64               `json:"time_entries"`  // their entries
	InfoFrames  uint64               `json:"info_frames"`   // INFO frames answered (not counted in Ops)
	BytesIn     uint64               `json:"bytes_in"`      // bytes of fully decoded request frames
	BytesOut    uint64               `json:"bytes_out"`     // bytes of responses (counted as each write starts)
	Errors      map[ErrorKind]uint64 `json:"errors"`        // connections closed or refused, by reason; every kind present
	ActiveConns int64                `json:"active_conns"`  // connections open now
	TotalConns  uint64               `json:"total_conns"`   // connections accepted (including refused ones)
	OpsInFlight int64                `json:"ops_in_flight"` // ops being executed or written now
	Records     optrace.Stats        `json:"records"`       // the Recorder's trace and op log: written, dropped
}

// counters are the live atomics behind Stats.
type counters struct {
	opsByType   [OpInfo + 1]atomic.Uint64 // indexed by OpType
	trailers    atomic.Uint64             // answers with a timing trailer
	timeEntries atomic.Uint64             // TIME entries answered
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64
	errors      [numKinds]atomic.Uint64
	activeConns atomic.Int64
	totalConns  atomic.Uint64
	inFlight    atomic.Int64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		OpsGEMM:     c.opsByType[deviceserver.OpGEMM].Load(),
		OpsConv:     c.opsByType[deviceserver.OpConv].Load(),
		OpsMatmul:   c.opsByType[deviceserver.OpMatmul].Load(),
		Trailers:    c.trailers.Load(),
		TimeFrames:  c.opsByType[OpTime].Load(),
		TimeEntries: c.timeEntries.Load(),
		InfoFrames:  c.opsByType[OpInfo].Load(),
		BytesIn:     c.bytesIn.Load(),
		BytesOut:    c.bytesOut.Load(),
		Errors:      make(map[ErrorKind]uint64, numKinds),
		ActiveConns: c.activeConns.Load(),
		TotalConns:  c.totalConns.Load(),
		OpsInFlight: c.inFlight.Load(),
	}
	s.Ops = s.OpsGEMM + s.OpsConv + s.OpsMatmul
	for k := range c.errors {
		s.Errors[ErrorKind(k)] = c.errors[k].Load()
	}
	return s
}
