package deviceserver

import (
	"fmt"
	"math/bits"
	"sync/atomic"
)

// TimingRequest says which request a server times a GEMM with on a device.
//
// The tutorial's SST component answers GEMM (type 8) through its performance model; the
// component ACALSim ships, and the reference QEMU device itself, know only NOOP, ECHO and
// COMPUTE and answer GEMM with INVALID. The reference device server never sends GEMM: it
// sends one COMPUTE of 2·M·N·K units with latency_model 0 (100 cycles a unit on the
// shipped component) and takes its cycles as the GEMM's. TimingAuto sends GEMM until a
// device answers one INVALID, then times that device's GEMMs as the reference does,
// re-timing the GEMM that found out, so no op is lost or left untimed by the switch.
// GET_INFO cannot tell in advance: its capability bits (protocol.Feature) have no GEMM bit.
// After the device's link to layer 5 is re-established (its LinkGeneration changes, or it
// answered NO_DEVICE, which is what a file that does not report a generation shows) the
// decision is made again, since another SST may be listening now.
//
// A batch of count > 1 equal GEMMs (a matmul's batch, a TIME entry's repeated shape) goes
// under TimingAuto and TimingGEMM as one BATCHED_GEMM carrying the count, which a GPU
// model times as one kernel. A device that answers BATCHED_GEMM INVALID (the tutorial's
// component, which knows GEMM only) has its batches timed from then on as one GEMM scaled
// by the count, the batch that found out included; that decision is made again with the
// GEMM one, on a new link.
//
// The distinct batches of a TIME frame go, under TimingAuto and TimingGEMM, as GEMM_LIST
// requests of up to protocol.MaxGEMMListEntries batches each, answered entry by entry as
// GEMM and BATCHED_GEMM would be. A device that answers GEMM_LIST INVALID (every component
// but sstemu's) has them sent one request each from then on, the refused list's included;
// decided again on a new link, as the others.
type TimingRequest uint8

const (
	// TimingAuto (the default) sends GEMM and falls back to COMPUTE per device.
	TimingAuto TimingRequest = iota
	// TimingGEMM always sends GEMM (BATCHED_GEMM for batches, falling back to GEMM ×
	// count): a device that does not know GEMM leaves ops untimed.
	TimingGEMM
	// TimingCompute always sends COMPUTE of 2·M·N·K units, latency_model 0.
	TimingCompute
	numTimingRequests
)

var timingRequestNames = [numTimingRequests]string{TimingAuto: "auto", TimingGEMM: "gemm", TimingCompute: "compute"}

// String returns the name ParseTimingRequest reads: "auto", "gemm" or "compute".
func (t TimingRequest) String() string {
	if t < numTimingRequests {
		return timingRequestNames[t]
	}
	return fmt.Sprintf("TimingRequest(%d)", uint8(t))
}

// MarshalText writes the name, for /stats.
func (t TimingRequest) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// ParseTimingRequest reads "auto", "gemm" or "compute".
func ParseTimingRequest(s string) (TimingRequest, error) {
	for t, name := range timingRequestNames {
		if s == name {
			return TimingRequest(t), nil
		}
	}
	return 0, fmt.Errorf("timing request %q: want auto, gemm or compute", s)
}

// TimingBatchedGEMM is the timing record's timing_request of an op at least one of whose
// batches was timed with one BATCHED_GEMM (the others with GEMM).
const TimingBatchedGEMM = "batched_gemm"

// TimingGEMMList is the timing record's timing_request of a TIME entry at least one of
// whose batches was timed as an entry of a GEMM_LIST.
const TimingGEMMList = "gemm_list"

// LinkGenerationer is an optional interface of a DeviceFile: LinkGeneration returns how
// many times the file's device has reported its link to layer 5 up (LINK_UP events), so
// the server can tell a re-established link, and perhaps another SST, from the same one.
// The emulated device's handle (sstdev.File) implements it.
type LinkGenerationer interface {
	LinkGeneration() uint64
}

// ComputeLatencyModel is the latency_model of the COMPUTE requests that time GEMMs: the
// reference device server's.
const ComputeLatencyModel = 0

// computeUnits returns the compute_units of the COMPUTE that times an M×N×K GEMM, 2·M·N·K,
// and false if it does not fit in 64 bits.
func computeUnits(m, n, k uint64) (uint64, bool) {
	hi, mn := bits.Mul64(m, n)
	if hi != 0 {
		return 0, false
	}
	hi, mnk := bits.Mul64(mn, k)
	if hi != 0 || mnk > (1<<63-1) {
		return 0, false
	}
	return 2 * mnk, true
}

// deviceMode is one device's choice of timing request.
type deviceMode struct {
	compute   atomic.Bool   // the device refused a GEMM: time with COMPUTE (TimingAuto)
	noBatched atomic.Bool   // the device refused a BATCHED_GEMM: time batches with GEMM × count
	noLists   atomic.Bool   // the device refused a GEMM_LIST: time a TIME frame's batches one request each
	gen       atomic.Uint64 // link generation the choice was made under
}

// reset makes the device's choices again from the start (GEMM, BATCHED_GEMM, GEMM_LIST),
// as for a new link; it reports whether the device was timed with COMPUTE.
func (m *deviceMode) reset() (wasCompute bool) {
	m.noBatched.Store(false)
	m.noLists.Store(false)
	return m.compute.Swap(false)
}
