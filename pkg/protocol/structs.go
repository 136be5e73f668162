package protocol

import (
	"encoding/binary"
	"fmt"
)

var le = binary.LittleEndian

// Field offsets of SSTRequest, from the start of the structure. Code that reads or writes
// single fields in place (layers 4 and 5) uses these instead of Decode and Encode.
const (
	RequestTypeOffset     = 0
	RequestFlagsOffset    = 4
	RequestIDOffset       = 8 // the driver overwrites request_id in place
	RequestUserDataOffset = 16
	reqOffPayload         = RequestHeaderSize
)

// Field offsets of SSTResponse, from the start of the structure.
const (
	ResponseStatusOffset    = 0
	ResponseReservedOffset  = 4
	ResponseRequestIDOffset = 8
	ResponseUserDataOffset  = 16
	ResponseResultOffset    = 24
	respOffPayload          = ResponseHeaderSize
)

// IDsSize is the length of the request_id and user_data pair, which sits at the same
// offsets (RequestIDOffset) in SSTRequest and SSTResponse, so a device can copy the two as
// one block.
const IDsSize = 16

// DecodeError says which structure could not be decoded and why.
type DecodeError struct {
	Struct string // "SSTRequest", "SSTResponse", …
	Offset int    // byte offset of the offending field, or -1 for the whole buffer
	Reason string
}

// Error implements error.
func (e *DecodeError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("protocol: %s: %s", e.Struct, e.Reason)
	}
	return fmt.Sprintf("protocol: %s at offset %d: %s", e.Struct, e.Offset, e.Reason)
}

func checkSize(name string, b []byte, want int) error {
	if len(b) != want {
		return &DecodeError{Struct: name, Offset: -1, Reason: fmt.Sprintf("length %d, want %d", len(b), want)}
	}
	return nil
}

// Request is struct SSTRequest. Payload holds the raw union; use the typed accessors
// (Compute, Memory, Configure, GEMM) to read it and the Set methods to fill it.
type Request struct {
	Type      RequestType
	Flags     uint32
	RequestID uint64
	UserData  uint64
	Payload   [MaxDataSize]byte
}

// Encode writes the request's 4104 bytes into b, which must be exactly RequestSize long.
func (r *Request) Encode(b []byte) error {
	if err := checkSize("SSTRequest", b, RequestSize); err != nil {
		return err
	}
	le.PutUint32(b[RequestTypeOffset:], uint32(r.Type))
	le.PutUint32(b[RequestFlagsOffset:], r.Flags)
	le.PutUint64(b[RequestIDOffset:], r.RequestID)
	le.PutUint64(b[RequestUserDataOffset:], r.UserData)
	copy(b[reqOffPayload:], r.Payload[:])
	return nil
}

// EncodePrefix writes the request's header and the first n bytes of its payload into b,
// which must be exactly RequestSize long, and leaves the rest of b as it is. It is Encode
// for a caller that reuses b for requests whose payloads differ only in those n bytes
// (GEMM and COMPUTE timing requests, the rest zero), without Encode's copy of 4 KB.
func (r *Request) EncodePrefix(b []byte, n int) error {
	if err := checkSize("SSTRequest", b, RequestSize); err != nil {
		return err
	}
	n = min(max(n, 0), MaxDataSize)
	le.PutUint32(b[RequestTypeOffset:], uint32(r.Type))
	le.PutUint32(b[RequestFlagsOffset:], r.Flags)
	le.PutUint64(b[RequestIDOffset:], r.RequestID)
	le.PutUint64(b[RequestUserDataOffset:], r.UserData)
	copy(b[reqOffPayload:reqOffPayload+n], r.Payload[:n])
	return nil
}

// MarshalBinary returns the request's 4104 bytes.
func (r *Request) MarshalBinary() ([]byte, error) {
	b := make([]byte, RequestSize)
	return b, r.Encode(b)
}

// Decode fills r from b, which must be exactly RequestSize long. Unknown request types
// decode without error (the device answers them INVALID); check Type.Known.
func (r *Request) Decode(b []byte) error {
	if err := checkSize("SSTRequest", b, RequestSize); err != nil {
		return err
	}
	r.Type = RequestType(le.Uint32(b[RequestTypeOffset:]))
	r.Flags = le.Uint32(b[RequestFlagsOffset:])
	r.RequestID = le.Uint64(b[RequestIDOffset:])
	r.UserData = le.Uint64(b[RequestUserDataOffset:])
	copy(r.Payload[:], b[reqOffPayload:])
	return nil
}

// UnmarshalBinary is Decode.
func (r *Request) UnmarshalBinary(b []byte) error { return r.Decode(b) }

// String summarises the request for logs.
func (r *Request) String() string {
	s := fmt.Sprintf("%s id=%d user=%#x", r.Type, r.RequestID, r.UserData)
	switch r.Type {
	case ReqCompute:
		c := r.Compute()
		s += fmt.Sprintf(" units=%d latency_model=%d", c.ComputeUnits, c.LatencyModel)
	case ReqRead, ReqWrite:
		m := r.Memory()
		s += fmt.Sprintf(" addr=%#x size=%d", m.Addr, m.Size)
	case ReqConfigure:
		c := r.Configure()
		s += fmt.Sprintf(" param=%d value=%d", c.ParamID, c.Value)
	case ReqGEMM:
		g := r.GEMM()
		s += fmt.Sprintf(" M=%d N=%d K=%d dtype_size=%d", g.M, g.N, g.K, g.DtypeSize)
	case ReqBatchedGEMM:
		g := r.BatchedGEMM()
		s += fmt.Sprintf(" M=%d N=%d K=%d dtype_size=%d batch=%d", g.M, g.N, g.K, g.DtypeSize, g.Batch)
	case ReqGEMMList:
		h := r.GEMMListHeader()
		s += fmt.Sprintf(" count=%d dtype_size=%d", h.Count, h.DtypeSize)
	}
	return s
}

// Compute is the COMPUTE request payload.
type Compute struct {
	ComputeUnits uint64 // @24
	LatencyModel uint32 // @32
}

// Compute reads the payload as a COMPUTE request.
func (r *Request) Compute() Compute {
	return Compute{ComputeUnits: le.Uint64(r.Payload[0:]), LatencyModel: le.Uint32(r.Payload[8:])}
}

// SetCompute makes r a COMPUTE request with payload c.
func (r *Request) SetCompute(c Compute) {
	r.Type = ReqCompute
	le.PutUint64(r.Payload[0:], c.ComputeUnits)
	le.PutUint32(r.Payload[8:], c.LatencyModel)
	le.PutUint32(r.Payload[12:], 0)
}

// Memory is the READ/WRITE request payload header.
type Memory struct {
	Addr uint64 // @24
	Size uint32 // @32
}

// Memory reads the payload as a READ or WRITE request header.
func (r *Request) Memory() Memory {
	return Memory{Addr: le.Uint64(r.Payload[0:]), Size: le.Uint32(r.Payload[8:])}
}

// WriteData returns the data a WRITE carries: Size bytes after the memory header, or an
// error when Size exceeds MaxWriteData. The slice aliases r.Payload.
func (r *Request) WriteData() ([]byte, error) {
	m := r.Memory()
	if m.Size > MaxWriteData {
		return nil, &DecodeError{Struct: "SSTRequest(WRITE)", Offset: reqOffPayload + 8,
			Reason: fmt.Sprintf("size %d exceeds the %d bytes a WRITE carries", m.Size, MaxWriteData)}
	}
	return r.Payload[MemoryHeaderSize : MemoryHeaderSize+int(m.Size)], nil
}

// SetRead makes r a READ of size bytes at addr.
func (r *Request) SetRead(addr uint64, size uint32) {
	r.Type = ReqRead
	le.PutUint64(r.Payload[0:], addr)
	le.PutUint32(r.Payload[8:], size)
	le.PutUint32(r.Payload[12:], 0)
}

// SetWrite makes r a WRITE of data at addr; data longer than MaxWriteData is an error.
func (r *Request) SetWrite(addr uint64, data []byte) error {
	if len(data) > MaxWriteData {
		return fmt.Errorf("protocol: WRITE of %d bytes exceeds %d", len(data), MaxWriteData)
	}
	r.Type = ReqWrite
	le.PutUint64(r.Payload[0:], addr)
	le.PutUint32(r.Payload[8:], uint32(len(data)))
	le.PutUint32(r.Payload[12:], 0)
	copy(r.Payload[MemoryHeaderSize:], data)
	return nil
}

// Configure is the CONFIGURE request payload.
type Configure struct {
	ParamID uint32 // @24
	Value   uint64 // @32
}

// Configure reads the payload as a CONFIGURE request.
func (r *Request) Configure() Configure {
	return Configure{ParamID: le.Uint32(r.Payload[0:]), Value: le.Uint64(r.Payload[8:])}
}

// SetConfigure makes r a CONFIGURE request with payload c.
func (r *Request) SetConfigure(c Configure) {
	r.Type = ReqConfigure
	le.PutUint32(r.Payload[0:], c.ParamID)
	le.PutUint32(r.Payload[4:], 0)
	le.PutUint64(r.Payload[8:], c.Value)
}

// GEMM is the GEMM request payload (the tutorial's addition): C[M,N] = A[M,K]·B[K,N].
type GEMM struct {
	M, N, K   uint32 // @24, @28, @32
	DtypeSize uint32 // @36
	AOffset   uint64 // @40, offset of A's data within the payload (0 when not sent)
	BOffset   uint64 // @48
}

// GEMMHeaderSize is the size of the GEMM payload metadata; matrix data, if any, follows it.
// (The tutorial's Python helper wrongly uses 24.)
const GEMMHeaderSize = 32

// GEMM reads the payload as a GEMM request.
func (r *Request) GEMM() GEMM {
	p := r.Payload[:]
	return GEMM{M: le.Uint32(p[0:]), N: le.Uint32(p[4:]), K: le.Uint32(p[8:]), DtypeSize: le.Uint32(p[12:]),
		AOffset: le.Uint64(p[16:]), BOffset: le.Uint64(p[24:])}
}

// SetGEMM makes r a GEMM request with payload g.
func (r *Request) SetGEMM(g GEMM) {
	r.Type = ReqGEMM
	p := r.Payload[:]
	le.PutUint32(p[0:], g.M)
	le.PutUint32(p[4:], g.N)
	le.PutUint32(p[8:], g.K)
	le.PutUint32(p[12:], g.DtypeSize)
	le.PutUint64(p[16:], g.AOffset)
	le.PutUint64(p[24:], g.BOffset)
}

// BatchedGEMM is the BATCHED_GEMM request payload: Batch independent GEMMs of one shape,
// C_i[M,N] = A_i[M,K]·B_i[K,N] for i < Batch (torch.bmm), timed as one kernel. It carries
// no matrix data. The answer is a GEMMResult whose figures are the whole batch's.
type BatchedGEMM struct {
	M, N, K   uint32 // @24, @28, @32 (BatchedGEMMMOffset …)
	DtypeSize uint32 // @36
	Batch     uint64 // @40, the number of GEMMs, at least 1
}

// Offsets of the BATCHED_GEMM fields within the request payload (add RequestHeaderSize
// for the offset in SSTRequest), and the payload's size. Bytes from BatchedGEMMSize on
// are ignored.
const (
	BatchedGEMMMOffset         = 0
	BatchedGEMMNOffset         = 4
	BatchedGEMMKOffset         = 8
	BatchedGEMMDtypeSizeOffset = 12
	BatchedGEMMBatchOffset     = 16
	BatchedGEMMSize            = 24
)

// BatchedGEMM reads the payload as a BATCHED_GEMM request, whatever r.Type says.
func (r *Request) BatchedGEMM() BatchedGEMM {
	p := r.Payload[:]
	return BatchedGEMM{M: le.Uint32(p[BatchedGEMMMOffset:]), N: le.Uint32(p[BatchedGEMMNOffset:]),
		K: le.Uint32(p[BatchedGEMMKOffset:]), DtypeSize: le.Uint32(p[BatchedGEMMDtypeSizeOffset:]),
		Batch: le.Uint64(p[BatchedGEMMBatchOffset:])}
}

// CheckBatchedGEMM reads r as a BATCHED_GEMM request and checks it: the type, and every
// dimension, the element size and the batch count at least 1. A bad field is a
// *DecodeError with the field's offset in SSTRequest.
func (r *Request) CheckBatchedGEMM() (BatchedGEMM, error) {
	const name = "SSTRequest(BATCHED_GEMM)"
	if r.Type != ReqBatchedGEMM {
		return BatchedGEMM{}, &DecodeError{Struct: name, Offset: RequestTypeOffset, Reason: fmt.Sprintf("type %s, want %s", r.Type, ReqBatchedGEMM)}
	}
	g := r.BatchedGEMM()
	for _, f := range []struct {
		field  string
		offset int
		v      uint64
	}{{"M", BatchedGEMMMOffset, uint64(g.M)}, {"N", BatchedGEMMNOffset, uint64(g.N)}, {"K", BatchedGEMMKOffset, uint64(g.K)},
		{"dtype_size", BatchedGEMMDtypeSizeOffset, uint64(g.DtypeSize)}, {"batch", BatchedGEMMBatchOffset, g.Batch}} {
		if f.v == 0 {
			return BatchedGEMM{}, &DecodeError{Struct: name, Offset: reqOffPayload + f.offset, Reason: f.field + " is 0, want at least 1"}
		}
	}
	return g, nil
}

// SetBatchedGEMM makes r a BATCHED_GEMM request with payload g (the rest of the payload
// is left as it is).
func (r *Request) SetBatchedGEMM(g BatchedGEMM) {
	r.Type = ReqBatchedGEMM
	p := r.Payload[:]
	le.PutUint32(p[BatchedGEMMMOffset:], g.M)
	le.PutUint32(p[BatchedGEMMNOffset:], g.N)
	le.PutUint32(p[BatchedGEMMKOffset:], g.K)
	le.PutUint32(p[BatchedGEMMDtypeSizeOffset:], g.DtypeSize)
	le.PutUint64(p[BatchedGEMMBatchOffset:], g.Batch)
}

// GEMMListHeader is the head of the GEMM_LIST request payload; Count entries
// (GEMMListEntry) follow it.
type GEMMListHeader struct {
	Count     uint32 // @24, 1 … MaxGEMMListEntries
	DtypeSize uint32 // @28, bytes per element of every entry's operands
}

// GEMMListEntry is one entry of a GEMM_LIST: Batch independent GEMMs of one shape, as a
// GEMM (Batch 1) or a BATCHED_GEMM request would carry them.
type GEMMListEntry struct {
	M, N, K uint32 // @0, @4, @8 within the entry (GEMMListEntryMOffset …)
	Batch   uint64 // @16, at least 1; the entry's 4 bytes @12 are reserved, 0
}

// Layout of the GEMM_LIST request payload (offsets within the payload; add
// RequestHeaderSize for SSTRequest) and of its answer. The answer's payload holds one
// GEMMListResultSize record per answered entry, in order; the list is as long as the
// answer's room allows, so a request's entries fit in its payload with room to spare.
const (
	GEMMListCountOffset      = 0
	GEMMListDtypeSizeOffset  = 4
	GEMMListHeaderSize       = 8
	GEMMListEntryMOffset     = 0
	GEMMListEntryNOffset     = 4
	GEMMListEntryKOffset     = 8
	GEMMListEntryResOffset   = 12
	GEMMListEntryBatchOffset = 16
	GEMMListEntrySize        = 24
	// GEMMListResultSize is one entry's answer: cycles, compute cycles, memory cycles and
	// memory bytes, u64 each, as in the GEMM answer.
	GEMMListResultSize = 32
	// MaxGEMMListEntries is the most entries one GEMM_LIST carries: as many answers as
	// fit in a response payload (127).
	MaxGEMMListEntries = MaxDataSize / GEMMListResultSize
)

// GEMMListSize returns the payload bytes of a GEMM_LIST of n entries.
func GEMMListSize(n int) int { return GEMMListHeaderSize + n*GEMMListEntrySize }

// GEMMListHeader reads the payload's GEMM_LIST header, whatever r.Type says.
func (r *Request) GEMMListHeader() GEMMListHeader {
	return GEMMListHeader{Count: le.Uint32(r.Payload[GEMMListCountOffset:]), DtypeSize: le.Uint32(r.Payload[GEMMListDtypeSizeOffset:])}
}

// CheckGEMMList reads r as a GEMM_LIST request and checks its header: the type, a count
// of 1 to MaxGEMMListEntries and an element size of at least 1. The entries are checked
// one by one by whoever answers them (CheckGEMMListEntry). A bad field is a *DecodeError
// with the field's offset in SSTRequest.
func (r *Request) CheckGEMMList() (GEMMListHeader, error) {
	const name = "SSTRequest(GEMM_LIST)"
	if r.Type != ReqGEMMList {
		return GEMMListHeader{}, &DecodeError{Struct: name, Offset: RequestTypeOffset, Reason: fmt.Sprintf("type %s, want %s", r.Type, ReqGEMMList)}
	}
	h := r.GEMMListHeader()
	if h.Count == 0 || h.Count > MaxGEMMListEntries {
		return GEMMListHeader{}, &DecodeError{Struct: name, Offset: reqOffPayload + GEMMListCountOffset,
			Reason: fmt.Sprintf("count %d, want 1 to %d", h.Count, MaxGEMMListEntries)}
	}
	if h.DtypeSize == 0 {
		return GEMMListHeader{}, &DecodeError{Struct: name, Offset: reqOffPayload + GEMMListDtypeSizeOffset, Reason: "dtype_size is 0, want at least 1"}
	}
	return h, nil
}

// GEMMListEntry reads entry i (0 ≤ i < MaxGEMMListEntries) of the payload, unchecked.
func (r *Request) GEMMListEntry(i int) GEMMListEntry {
	p := r.Payload[GEMMListSize(i):GEMMListSize(i+1)]
	return GEMMListEntry{M: le.Uint32(p[GEMMListEntryMOffset:]), N: le.Uint32(p[GEMMListEntryNOffset:]),
		K: le.Uint32(p[GEMMListEntryKOffset:]), Batch: le.Uint64(p[GEMMListEntryBatchOffset:])}
}

// CheckGEMMListEntry reads entry i (0 ≤ i < MaxGEMMListEntries) and checks it: every
// dimension and the batch at least 1, the reserved word 0. A bad field is a *DecodeError
// with its offset in SSTRequest.
func (r *Request) CheckGEMMListEntry(i int) (GEMMListEntry, error) {
	e := r.GEMMListEntry(i)
	bad := func(offset int, reason string) error {
		return &DecodeError{Struct: fmt.Sprintf("SSTRequest(GEMM_LIST) entry %d", i), Offset: reqOffPayload + GEMMListSize(i) + offset, Reason: reason}
	}
	for _, f := range [...]struct {
		field  string
		offset int
		v      uint64
	}{{"M", GEMMListEntryMOffset, uint64(e.M)}, {"N", GEMMListEntryNOffset, uint64(e.N)}, {"K", GEMMListEntryKOffset, uint64(e.K)},
		{"batch", GEMMListEntryBatchOffset, e.Batch}} {
		if f.v == 0 {
			return GEMMListEntry{}, bad(f.offset, f.field+" is 0, want at least 1")
		}
	}
	if v := le.Uint32(r.Payload[GEMMListSize(i)+GEMMListEntryResOffset:]); v != 0 {
		return GEMMListEntry{}, bad(GEMMListEntryResOffset, fmt.Sprintf("reserved is %#x, want 0", v))
	}
	return e, nil
}

// SetGEMMListHeader makes r a GEMM_LIST request of count entries of dtypeSize-byte
// elements; SetGEMMListEntry fills the entries (the rest of the payload is left as it is).
func (r *Request) SetGEMMListHeader(count, dtypeSize uint32) {
	r.Type = ReqGEMMList
	le.PutUint32(r.Payload[GEMMListCountOffset:], count)
	le.PutUint32(r.Payload[GEMMListDtypeSizeOffset:], dtypeSize)
}

// SetGEMMListEntry writes entry i (0 ≤ i < MaxGEMMListEntries), its reserved word 0.
func (r *Request) SetGEMMListEntry(i int, e GEMMListEntry) {
	p := r.Payload[GEMMListSize(i):GEMMListSize(i+1)]
	le.PutUint32(p[GEMMListEntryMOffset:], e.M)
	le.PutUint32(p[GEMMListEntryNOffset:], e.N)
	le.PutUint32(p[GEMMListEntryKOffset:], e.K)
	le.PutUint32(p[GEMMListEntryResOffset:], 0)
	le.PutUint64(p[GEMMListEntryBatchOffset:], e.Batch)
}

// Response is struct SSTResponse. Payload holds the raw union; use the typed accessors to
// read it and the Set methods to fill it.
type Response struct {
	Status    Status
	Reserved  uint32
	RequestID uint64
	UserData  uint64
	Result    uint64
	Payload   [MaxDataSize]byte
}

// Encode writes the response's 4112 bytes into b, which must be exactly ResponseSize long.
func (r *Response) Encode(b []byte) error {
	if err := checkSize("SSTResponse", b, ResponseSize); err != nil {
		return err
	}
	le.PutUint32(b[ResponseStatusOffset:], uint32(r.Status))
	le.PutUint32(b[ResponseReservedOffset:], r.Reserved)
	le.PutUint64(b[ResponseRequestIDOffset:], r.RequestID)
	le.PutUint64(b[ResponseUserDataOffset:], r.UserData)
	le.PutUint64(b[ResponseResultOffset:], r.Result)
	copy(b[respOffPayload:], r.Payload[:])
	return nil
}

// MarshalBinary returns the response's 4112 bytes.
func (r *Response) MarshalBinary() ([]byte, error) {
	b := make([]byte, ResponseSize)
	return b, r.Encode(b)
}

// Decode fills r from b, which must be exactly ResponseSize long.
func (r *Response) Decode(b []byte) error {
	if err := checkSize("SSTResponse", b, ResponseSize); err != nil {
		return err
	}
	r.Status = Status(le.Uint32(b[ResponseStatusOffset:]))
	r.Reserved = le.Uint32(b[ResponseReservedOffset:])
	r.RequestID = le.Uint64(b[ResponseRequestIDOffset:])
	r.UserData = le.Uint64(b[ResponseUserDataOffset:])
	r.Result = le.Uint64(b[ResponseResultOffset:])
	copy(r.Payload[:], b[respOffPayload:])
	return nil
}

// DecodePrefix is Decode reading only the first n bytes of the payload (the rest of
// r.Payload keeps its values): for a caller that reads only a small result (GEMM, COMPUTE),
// without Decode's copy of 4 KB. b must be exactly ResponseSize long.
func (r *Response) DecodePrefix(b []byte, n int) error {
	if err := checkSize("SSTResponse", b, ResponseSize); err != nil {
		return err
	}
	n = min(max(n, 0), MaxDataSize)
	r.Status = Status(le.Uint32(b[ResponseStatusOffset:]))
	r.Reserved = le.Uint32(b[ResponseReservedOffset:])
	r.RequestID = le.Uint64(b[ResponseRequestIDOffset:])
	r.UserData = le.Uint64(b[ResponseUserDataOffset:])
	r.Result = le.Uint64(b[ResponseResultOffset:])
	copy(r.Payload[:n], b[respOffPayload:respOffPayload+n])
	return nil
}

// UnmarshalBinary is Decode.
func (r *Response) UnmarshalBinary(b []byte) error { return r.Decode(b) }

// String summarises the response for logs.
func (r *Response) String() string {
	return fmt.Sprintf("%s id=%d user=%#x result=%d", r.Status, r.RequestID, r.UserData, r.Result)
}

// ReplyTo starts a response to req: status OK, request_id and user_data copied, all else
// zero.
func (r *Response) ReplyTo(req *Request) {
	*r = Response{RequestID: req.RequestID, UserData: req.UserData}
}

// ComputeResult is the COMPUTE response payload.
type ComputeResult struct {
	Cycles    uint64 // @32
	Timestamp uint64 // @40, simulated cycle at which the work started
}

// Compute reads the payload as a COMPUTE response.
func (r *Response) Compute() ComputeResult {
	return ComputeResult{Cycles: le.Uint64(r.Payload[0:]), Timestamp: le.Uint64(r.Payload[8:])}
}

// SetCompute fills the COMPUTE payload.
func (r *Response) SetCompute(c ComputeResult) {
	le.PutUint64(r.Payload[0:], c.Cycles)
	le.PutUint64(r.Payload[8:], c.Timestamp)
}

// Info is the GET_INFO response payload.
type Info struct {
	Version         uint32 // @32
	Capabilities    uint32 // @36
	MaxComputeUnits uint64 // @40
	MemorySize      uint64 // @48
}

// Info reads the payload as a GET_INFO response.
func (r *Response) Info() Info {
	p := r.Payload[:]
	return Info{Version: le.Uint32(p[0:]), Capabilities: le.Uint32(p[4:]),
		MaxComputeUnits: le.Uint64(p[8:]), MemorySize: le.Uint64(p[16:])}
}

// SetInfo fills the GET_INFO payload.
func (r *Response) SetInfo(i Info) {
	p := r.Payload[:]
	le.PutUint32(p[0:], i.Version)
	le.PutUint32(p[4:], i.Capabilities)
	le.PutUint64(p[8:], i.MaxComputeUnits)
	le.PutUint64(p[16:], i.MemorySize)
}

// GEMMResult is the GEMM response payload.
type GEMMResult struct {
	Cycles        uint64 // @32
	ComputeCycles uint64 // @40
	MemoryCycles  uint64 // @48
	MemoryBytes   uint64 // @56
	ResultOffset  uint32 // @64
}

// GEMM reads the payload as a GEMM response.
func (r *Response) GEMM() GEMMResult {
	g := gemmFigures(r.Payload[:])
	g.ResultOffset = le.Uint32(r.Payload[32:])
	return g
}

// SetGEMM fills the GEMM payload.
func (r *Response) SetGEMM(g GEMMResult) {
	putGEMMFigures(r.Payload[:], g)
	le.PutUint32(r.Payload[32:], g.ResultOffset)
	le.PutUint32(r.Payload[36:], 0)
}

// gemmFigures reads the four u64 figures that lead a GEMM answer and each GEMM_LIST
// entry's answer (GEMMListResultSize bytes): cycles, compute cycles, memory cycles,
// memory bytes.
func gemmFigures(p []byte) GEMMResult {
	return GEMMResult{Cycles: le.Uint64(p[0:]), ComputeCycles: le.Uint64(p[8:]), MemoryCycles: le.Uint64(p[16:]), MemoryBytes: le.Uint64(p[24:])}
}

// putGEMMFigures writes g's four figures in gemmFigures' layout.
func putGEMMFigures(p []byte, g GEMMResult) {
	le.PutUint64(p[0:], g.Cycles)
	le.PutUint64(p[8:], g.ComputeCycles)
	le.PutUint64(p[16:], g.MemoryCycles)
	le.PutUint64(p[24:], g.MemoryBytes)
}

// GEMMListResult reads the answer to entry i (0 ≤ i < MaxGEMMListEntries) of a
// GEMM_LIST from the payload (ResultOffset is always 0: no matrix data comes back).
func (r *Response) GEMMListResult(i int) GEMMResult {
	return gemmFigures(r.Payload[i*GEMMListResultSize : (i+1)*GEMMListResultSize])
}

// SetGEMMListResult writes the answer to entry i (0 ≤ i < MaxGEMMListEntries); g's
// ResultOffset is not part of it.
func (r *Response) SetGEMMListResult(i int, g GEMMResult) {
	putGEMMFigures(r.Payload[i*GEMMListResultSize:(i+1)*GEMMListResultSize], g)
}

// ConfigSpace is struct SSTConfig, the device's config space (named so to tell it
// from the Config options structs of the layer packages).
type ConfigSpace struct {
	Version   uint32
	DeviceID  uint32
	Features  Feature
	MaxQueues uint64
}

// Encode writes the 24-byte config space into b, which must be exactly ConfigSize long.
func (c *ConfigSpace) Encode(b []byte) error {
	if err := checkSize("SSTConfig", b, ConfigSize); err != nil {
		return err
	}
	le.PutUint32(b[0:], c.Version)
	le.PutUint32(b[4:], c.DeviceID)
	le.PutUint64(b[8:], uint64(c.Features))
	le.PutUint64(b[16:], c.MaxQueues)
	return nil
}

// Decode fills c from b, which must be exactly ConfigSize long.
func (c *ConfigSpace) Decode(b []byte) error {
	if err := checkSize("SSTConfig", b, ConfigSize); err != nil {
		return err
	}
	c.Version = le.Uint32(b[0:])
	c.DeviceID = le.Uint32(b[4:])
	c.Features = Feature(le.Uint64(b[8:]))
	c.MaxQueues = le.Uint64(b[16:])
	return nil
}

// String summarises the config for logs.
func (c *ConfigSpace) String() string {
	return fmt.Sprintf("version=%#x device_id=%d features=%s max_queues=%d", c.Version, c.DeviceID, c.Features, c.MaxQueues)
}

// Event is struct SSTEvent, sent by the device on the event queue.
type Event struct {
	Type      EventType `json:"type"`
	Reserved  uint32    `json:"reserved"`
	Timestamp uint64    `json:"timestamp"`
	Data      uint64    `json:"data"`
}

// Encode writes the 24-byte event into b, which must be exactly EventSize long.
func (e *Event) Encode(b []byte) error {
	if err := checkSize("SSTEvent", b, EventSize); err != nil {
		return err
	}
	le.PutUint32(b[0:], uint32(e.Type))
	le.PutUint32(b[4:], e.Reserved)
	le.PutUint64(b[8:], e.Timestamp)
	le.PutUint64(b[16:], e.Data)
	return nil
}

// Decode fills e from b, which must be exactly EventSize long.
func (e *Event) Decode(b []byte) error {
	if err := checkSize("SSTEvent", b, EventSize); err != nil {
		return err
	}
	e.Type = EventType(le.Uint32(b[0:]))
	e.Reserved = le.Uint32(b[4:])
	e.Timestamp = le.Uint64(b[8:])
	e.Data = le.Uint64(b[16:])
	return nil
}

// String summarises the event for logs.
func (e *Event) String() string {
	return fmt.Sprintf("%s timestamp=%d data=%d", e.Type, e.Timestamp, e.Data)
}
