package protocol

import "fmt"

// Sizes and constants of the wire structures, in bytes unless named otherwise.
const (
	// MaxDataSize is SST_MAX_DATA_SIZE: the size of the payload union of both structures.
	MaxDataSize = 4080
	// RequestHeaderSize is the part of SSTRequest before its payload.
	RequestHeaderSize = 24
	// RequestSize is sizeof(struct SSTRequest).
	RequestSize = RequestHeaderSize + MaxDataSize // 4104
	// ResponseHeaderSize is the part of SSTResponse before its payload.
	ResponseHeaderSize = 32
	// ResponseSize is sizeof(struct SSTResponse).
	ResponseSize = ResponseHeaderSize + MaxDataSize // 4112
	// ConfigSize is sizeof(struct SSTConfig).
	ConfigSize = 24
	// EventSize is sizeof(struct SSTEvent).
	EventSize = 24
	// MemoryHeaderSize is the READ/WRITE payload header (addr u64, size u32, reserved u32);
	// a WRITE's data follows it.
	MemoryHeaderSize = 16
	// MaxWriteData is the most data one WRITE request carries.
	MaxWriteData = MaxDataSize - MemoryHeaderSize // 4064
	// MaxReadData is the most data one READ response returns.
	MaxReadData = MaxDataSize

	// Version is the protocol version a device reports in GET_INFO and SSTConfig.
	Version uint32 = 0x00010000
	// VirtIODeviceID and VirtIOVendorID identify the virtio-sst PCI device.
	VirtIODeviceID uint16 = 0x1042
	VirtIOVendorID uint16 = 0x1AF4
	// MaxComputeUnits is what the QEMU device reports in GET_INFO.
	MaxComputeUnits uint64 = 1000000
	// DeviceMemorySize is the device memory GET_INFO reports (256 MiB), which READ and WRITE
	// address.
	DeviceMemorySize uint64 = 0x10000000
)

// RequestType is SSTRequest.type.
type RequestType uint32

// Request types (enum SSTRequestType); GEMM is the tutorial's addition, BATCHED_GEMM and
// GEMM_LIST sstemu's (a batch of equal GEMMs timed as one kernel; many GEMMs of any
// shapes timed in one request; docs/sst-protocol.md).
const (
	ReqNoop      RequestType = 0
	ReqEcho      RequestType = 1
	ReqCompute   RequestType = 2
	ReqRead      RequestType = 3
	ReqWrite     RequestType = 4
	ReqReset     RequestType = 5
	ReqGetInfo   RequestType = 6
	ReqConfigure RequestType = 7
	ReqGEMM      RequestType = 8
	// ReqBatchedGEMM carries a BatchedGEMM payload and is answered with a GEMMResult for
	// the whole batch.
	ReqBatchedGEMM RequestType = 9
	// ReqGEMMList carries a GEMM list (up to MaxGEMMListEntries GEMMs or batches of
	// equal GEMMs, each of its own shape) and is answered with one GEMMResult per entry.
	ReqGEMMList RequestType = 10
)

var requestTypeNames = [...]string{"NOOP", "ECHO", "COMPUTE", "READ", "WRITE", "RESET", "GET_INFO", "CONFIGURE", "GEMM", "BATCHED_GEMM", "GEMM_LIST"}

// NumRequestTypes is the number of defined request types (0 … NumRequestTypes-1).
const NumRequestTypes = len(requestTypeNames)

// Known reports whether t is one of the defined request types.
func (t RequestType) Known() bool { return t < RequestType(NumRequestTypes) } // unsigned: no 32-bit wrap

// String returns the type's name as sst_request_type_str does, or UNKNOWN(n).
func (t RequestType) String() string {
	if t.Known() {
		return requestTypeNames[t]
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint32(t))
}

// Status is SSTResponse.status.
type Status uint32

// Response statuses (enum SSTStatus).
const (
	StatusOK       Status = 0
	StatusError    Status = 1
	StatusBusy     Status = 2
	StatusInvalid  Status = 3
	StatusTimeout  Status = 4
	StatusNoDevice Status = 5
)

var statusNames = [...]string{"OK", "ERROR", "BUSY", "INVALID", "TIMEOUT", "NO_DEVICE"}

// String returns the status name, or UNKNOWN(n).
func (s Status) String() string {
	if s < Status(len(statusNames)) {
		return statusNames[s]
	}
	return fmt.Sprintf("UNKNOWN(%d)", uint32(s))
}

// Feature is a virtio-sst feature bit set (SSTConfig.features, GET_INFO capabilities).
type Feature uint64

// Feature bits.
const (
	FeatureEcho       Feature = 1 << 0
	FeatureCompute    Feature = 1 << 1
	FeatureMemory     Feature = 1 << 2
	FeatureEvents     Feature = 1 << 3
	FeatureMultiQueue Feature = 1 << 4
	FeatureReset      Feature = 1 << 5
)

var featureNames = [...]string{"ECHO", "COMPUTE", "MEMORY", "EVENTS", "MULTI_QUEUE", "RESET"}

// String lists the set bits, e.g. "ECHO|COMPUTE", with unknown bits in hex.
func (f Feature) String() string {
	if f == 0 {
		return "0"
	}
	s := ""
	for i, name := range featureNames {
		if f&(1<<i) != 0 {
			if s != "" {
				s += "|"
			}
			s += name
		}
	}
	if rest := f &^ (1<<len(featureNames) - 1); rest != 0 {
		if s != "" {
			s += "|"
		}
		s += fmt.Sprintf("%#x", uint64(rest))
	}
	return s
}

// EventType is SSTEvent.type. The reference leaves the values to the implementation;
// these are sstemu's (docs/sst-protocol.md §Codes).
type EventType uint32

// Event types sent by the device on the event queue.
const (
	EventLinkUp   EventType = 1 // the device connected to the SST component
	EventLinkDown EventType = 2 // the device lost its SST component
	EventReset    EventType = 3 // the device was reset
)

// String names the event type.
func (t EventType) String() string {
	switch t {
	case EventLinkUp:
		return "LINK_UP"
	case EventLinkDown:
		return "LINK_DOWN"
	case EventReset:
		return "RESET"
	default:
		return fmt.Sprintf("UNKNOWN(%d)", uint32(t))
	}
}
