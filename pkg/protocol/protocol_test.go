package protocol

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fixture returns size zero bytes with the given bytes placed at their offsets; the byte
// values in the tests below are written out by hand from the tables of docs/sst-protocol.md.
func fixture(size int, at map[int][]byte) []byte {
	b := make([]byte, size)
	for off, v := range at {
		copy(b[off:], v)
	}
	return b
}

func TestSizes(t *testing.T) {
	assert.Equal(t, 4080, MaxDataSize)
	assert.Equal(t, 4104, RequestSize)
	assert.Equal(t, 4112, ResponseSize)
	assert.Equal(t, 24, ConfigSize)
	assert.Equal(t, 24, EventSize)
	assert.Equal(t, 4064, MaxWriteData)
}

func TestRequestLayouts(t *testing.T) {
	tests := []struct {
		name string
		req  func() *Request
		want []byte
	}{
		{
			name: "header",
			req: func() *Request {
				return &Request{Type: ReqEcho, Flags: 0x0a0b0c0d, RequestID: 0x0102030405060708, UserData: 0x1112131415161718}
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x01, 0, 0, 0},
				4:  {0x0d, 0x0c, 0x0b, 0x0a},
				8:  {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01},
				16: {0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11},
			}),
		},
		{
			name: "compute",
			req: func() *Request {
				r := &Request{RequestID: 1}
				r.SetCompute(Compute{ComputeUnits: 0x1234, LatencyModel: 2})
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x02, 0, 0, 0},
				8:  {0x01},
				24: {0x34, 0x12, 0, 0, 0, 0, 0, 0},
				32: {0x02, 0, 0, 0},
			}),
		},
		{
			name: "write",
			req: func() *Request {
				r := &Request{}
				require.NoError(t, r.SetWrite(0x1000, []byte{0xaa, 0xbb, 0xcc}))
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x04, 0, 0, 0},
				24: {0x00, 0x10, 0, 0, 0, 0, 0, 0},
				32: {0x03, 0, 0, 0},
				40: {0xaa, 0xbb, 0xcc},
			}),
		},
		{
			name: "read",
			req: func() *Request {
				r := &Request{}
				r.SetRead(0x0fffff00, 256)
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x03, 0, 0, 0},
				24: {0x00, 0xff, 0xff, 0x0f, 0, 0, 0, 0},
				32: {0x00, 0x01, 0, 0},
			}),
		},
		{
			name: "configure",
			req: func() *Request {
				r := &Request{}
				r.SetConfigure(Configure{ParamID: 3, Value: 0x0100000000})
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x07, 0, 0, 0},
				24: {0x03, 0, 0, 0},
				32: {0, 0, 0, 0, 0x01, 0, 0, 0},
			}),
		},
		{
			name: "gemm",
			req: func() *Request {
				r := &Request{RequestID: 7}
				r.SetGEMM(GEMM{M: 4, N: 16, K: 8, DtypeSize: 4, AOffset: 32, BOffset: 160})
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x08, 0, 0, 0},
				8:  {0x07},
				24: {0x04, 0, 0, 0},
				28: {0x10, 0, 0, 0},
				32: {0x08, 0, 0, 0},
				36: {0x04, 0, 0, 0},
				40: {0x20, 0, 0, 0, 0, 0, 0, 0},
				48: {0xa0, 0, 0, 0, 0, 0, 0, 0},
			}),
		},
		{
			name: "batched gemm",
			req: func() *Request {
				r := &Request{RequestID: 7}
				r.SetBatchedGEMM(BatchedGEMM{M: 4, N: 16, K: 8, DtypeSize: 4, Batch: 0x0100000003})
				return r
			},
			want: fixture(RequestSize, map[int][]byte{
				0:  {0x09, 0, 0, 0},
				8:  {0x07},
				24: {0x04, 0, 0, 0},
				28: {0x10, 0, 0, 0},
				32: {0x08, 0, 0, 0},
				36: {0x04, 0, 0, 0},
				40: {0x03, 0, 0, 0, 0x01, 0, 0, 0},
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req()
			got, err := req.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, tt.want, got)

			var back Request
			require.NoError(t, back.Decode(tt.want))
			assert.Equal(t, *req, back)
		})
	}
}

func TestRequestAccessors(t *testing.T) {
	var r Request
	require.NoError(t, r.Decode(fixture(RequestSize, map[int][]byte{
		0:  {0x08, 0, 0, 0},
		24: {0xff, 0xff, 0xff, 0xff}, // M = 2^32-1
		28: {0x01, 0, 0, 0},
		32: {0x02, 0, 0, 0},
		36: {0x02, 0, 0, 0},
		40: {0x20},
		48: {0x30},
	})))
	assert.Equal(t, GEMM{M: 0xffffffff, N: 1, K: 2, DtypeSize: 2, AOffset: 32, BOffset: 48}, r.GEMM())
	assert.Equal(t, "GEMM id=0 user=0x0 M=4294967295 N=1 K=2 dtype_size=2", r.String())

	require.NoError(t, r.Decode(fixture(RequestSize, map[int][]byte{
		0:  {0x04, 0, 0, 0},
		32: {0xe1, 0x0f, 0, 0}, // size 4065: one byte more than a WRITE carries
	})))
	_, err := r.WriteData()
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, 32, de.Offset)

	assert.Error(t, r.SetWrite(0, make([]byte, MaxWriteData+1)))
	require.NoError(t, r.SetWrite(8, make([]byte, MaxWriteData)))
	data, err := r.WriteData()
	require.NoError(t, err)
	assert.Len(t, data, MaxWriteData)
}

func TestResponseLayouts(t *testing.T) {
	tests := []struct {
		name string
		resp func() *Response
		want []byte
	}{
		{
			name: "header",
			resp: func() *Response {
				return &Response{Status: StatusNoDevice, RequestID: 0x0102, UserData: 0xbeef, Result: 0x1122334455667788}
			},
			want: fixture(ResponseSize, map[int][]byte{
				0:  {0x05, 0, 0, 0},
				8:  {0x02, 0x01},
				16: {0xef, 0xbe},
				24: {0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11},
			}),
		},
		{
			name: "compute",
			resp: func() *Response {
				r := &Response{Result: 500}
				r.SetCompute(ComputeResult{Cycles: 500, Timestamp: 0x0100})
				return r
			},
			want: fixture(ResponseSize, map[int][]byte{
				24: {0xf4, 0x01},
				32: {0xf4, 0x01, 0, 0, 0, 0, 0, 0},
				40: {0x00, 0x01, 0, 0, 0, 0, 0, 0},
			}),
		},
		{
			name: "get_info",
			resp: func() *Response {
				r := &Response{}
				r.SetInfo(Info{Version: Version, Capabilities: 0x27, MaxComputeUnits: MaxComputeUnits, MemorySize: DeviceMemorySize})
				return r
			},
			want: fixture(ResponseSize, map[int][]byte{
				32: {0x00, 0x00, 0x01, 0x00},             // 0x00010000
				36: {0x27, 0, 0, 0},                      // capabilities
				40: {0x40, 0x42, 0x0f, 0, 0, 0, 0, 0},    // 1000000 = 0x0F4240
				48: {0x00, 0x00, 0x00, 0x10, 0, 0, 0, 0}, // 0x10000000
			}),
		},
		{
			name: "gemm",
			resp: func() *Response {
				r := &Response{Result: 16}
				r.SetGEMM(GEMMResult{Cycles: 16, ComputeCycles: 16, MemoryCycles: 1, MemoryBytes: 512, ResultOffset: 9})
				return r
			},
			want: fixture(ResponseSize, map[int][]byte{
				24: {0x10},
				32: {0x10},
				40: {0x10},
				48: {0x01},
				56: {0x00, 0x02},
				64: {0x09},
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.resp()
			got, err := resp.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, tt.want, got)

			var back Response
			require.NoError(t, back.Decode(tt.want))
			assert.Equal(t, *resp, back)
		})
	}
}

func TestResponseAccessorsAndReply(t *testing.T) {
	req := &Request{Type: ReqCompute, RequestID: 42, UserData: 99}
	var resp Response
	resp.Result = 5
	resp.ReplyTo(req)
	assert.Equal(t, Response{RequestID: 42, UserData: 99}, resp)

	resp.SetInfo(Info{Version: 1, Capabilities: 2, MaxComputeUnits: 3, MemorySize: 4})
	assert.Equal(t, Info{Version: 1, Capabilities: 2, MaxComputeUnits: 3, MemorySize: 4}, resp.Info())
	resp.SetCompute(ComputeResult{Cycles: 7, Timestamp: 8})
	assert.Equal(t, ComputeResult{Cycles: 7, Timestamp: 8}, resp.Compute())
}

func TestConfigAndEvent(t *testing.T) {
	c := ConfigSpace{Version: Version, DeviceID: 3, Features: FeatureEcho | FeatureCompute | FeatureMemory | FeatureReset, MaxQueues: 1}
	b := make([]byte, ConfigSize)
	require.NoError(t, c.Encode(b))
	assert.Equal(t, fixture(ConfigSize, map[int][]byte{
		0:  {0x00, 0x00, 0x01, 0x00},
		4:  {0x03},
		8:  {0x27},
		16: {0x01},
	}), b)
	var c2 ConfigSpace
	require.NoError(t, c2.Decode(b))
	assert.Equal(t, c, c2)
	assert.Equal(t, "version=0x10000 device_id=3 features=ECHO|COMPUTE|MEMORY|RESET max_queues=1", c.String())

	e := Event{Type: EventLinkDown, Timestamp: 0x0102, Data: 0xff}
	b = make([]byte, EventSize)
	require.NoError(t, e.Encode(b))
	assert.Equal(t, fixture(EventSize, map[int][]byte{0: {0x02}, 8: {0x02, 0x01}, 16: {0xff}}), b)
	var e2 Event
	require.NoError(t, e2.Decode(b))
	assert.Equal(t, e, e2)
}

func TestDecodeRejectsWrongLengths(t *testing.T) {
	tests := []struct {
		name   string
		decode func([]byte) error
		size   int
	}{
		{"request", (&Request{}).Decode, RequestSize},
		{"response", (&Response{}).Decode, ResponseSize},
		{"config", (&ConfigSpace{}).Decode, ConfigSize},
		{"event", (&Event{}).Decode, EventSize},
	}
	for _, tt := range tests {
		for _, n := range []int{0, 1, tt.size - 1, tt.size + 1, 4096} {
			t.Run(tt.name, func(t *testing.T) {
				err := tt.decode(make([]byte, n))
				var de *DecodeError
				require.ErrorAs(t, err, &de)
				assert.Equal(t, -1, de.Offset)
				assert.Contains(t, err.Error(), "length")
			})
		}
	}
	// The 4096-byte request with a 32-bit request_id seen in one reference example.
	assert.Error(t, (&Request{}).Encode(make([]byte, 4096)))
	assert.Error(t, (&Response{}).Encode(make([]byte, RequestSize)))
}

func TestStrings(t *testing.T) {
	tests := []struct{ got, want string }{
		{ReqNoop.String(), "NOOP"},
		{ReqGEMM.String(), "GEMM"},
		{ReqBatchedGEMM.String(), "BATCHED_GEMM"},
		{ReqGEMMList.String(), "GEMM_LIST"},
		{RequestType(11).String(), "UNKNOWN(11)"},
		{StatusOK.String(), "OK"},
		{StatusNoDevice.String(), "NO_DEVICE"},
		{Status(77).String(), "UNKNOWN(77)"},
		{Feature(0).String(), "0"},
		{(FeatureEvents | 1<<10).String(), "EVENTS|0x400"},
		{EventLinkUp.String(), "LINK_UP"},
		{EventType(0).String(), "UNKNOWN(0)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) { assert.Equal(t, tt.want, tt.got) })
	}
	assert.True(t, ReqGEMM.Known())
	assert.True(t, ReqBatchedGEMM.Known())
	assert.True(t, ReqGEMMList.Known())
	assert.False(t, RequestType(11).Known())
	assert.False(t, RequestType(0x80000000).Known(), "negative as a 32-bit int")
	assert.Equal(t, "UNKNOWN(2147483648)", RequestType(0x80000000).String())
	assert.Equal(t, "UNKNOWN(4294967295)", Status(0xffffffff).String())
}

// TestFieldOffsets checks the exported offsets against Encode: each field written through
// the structure is found at its offset, and request_id and user_data sit at the same
// offsets in SSTRequest and SSTResponse (layer 4 copies them as one IDsSize block).
func TestFieldOffsets(t *testing.T) {
	req := Request{Type: ReqGEMM, Flags: 0x0A0B0C0D, RequestID: 0x0102030405060708, UserData: 0x1112131415161718}
	rb, err := req.MarshalBinary()
	require.NoError(t, err)
	resp := Response{Status: StatusTimeout, Reserved: 0x21222324, RequestID: req.RequestID, UserData: req.UserData, Result: 0x3132333435363738}
	pb, err := resp.MarshalBinary()
	require.NoError(t, err)

	assert.Equal(t, uint32(req.Type), le.Uint32(rb[RequestTypeOffset:]))
	assert.Equal(t, req.Flags, le.Uint32(rb[RequestFlagsOffset:]))
	assert.Equal(t, req.RequestID, le.Uint64(rb[RequestIDOffset:]))
	assert.Equal(t, req.UserData, le.Uint64(rb[RequestUserDataOffset:]))
	assert.Equal(t, uint32(resp.Status), le.Uint32(pb[ResponseStatusOffset:]))
	assert.Equal(t, resp.Reserved, le.Uint32(pb[ResponseReservedOffset:]))
	assert.Equal(t, resp.RequestID, le.Uint64(pb[ResponseRequestIDOffset:]))
	assert.Equal(t, resp.UserData, le.Uint64(pb[ResponseUserDataOffset:]))
	assert.Equal(t, resp.Result, le.Uint64(pb[ResponseResultOffset:]))
	assert.Equal(t, rb[RequestIDOffset:][:IDsSize], pb[ResponseRequestIDOffset:][:IDsSize])
}

func TestDeviceInfo(t *testing.T) {
	tests := []struct {
		name string
		caps Feature
		want uint32
	}{
		{"base", BaseFeatures, 0b100111},
		{"with events", BaseFeatures | FeatureEvents, 0b101111},
		{"transport bits dropped", BaseFeatures | TransportFeatures, 0b100111},
		{"none", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, Info{Version: 0x00010000, Capabilities: tt.want, MaxComputeUnits: 1000000, MemorySize: 0x10000000},
				DeviceInfo(tt.caps))
		})
	}
}

func TestBatchedGEMMCheck(t *testing.T) {
	var r Request
	require.NoError(t, r.Decode(fixture(RequestSize, map[int][]byte{
		0:  {0x09, 0, 0, 0},
		24: {0xff, 0xff, 0xff, 0xff}, // M = 2^32-1
		28: {0x01, 0, 0, 0},
		32: {0x02, 0, 0, 0},
		36: {0x02, 0, 0, 0},
		40: {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // batch = 2^64-1
	})))
	g, err := r.CheckBatchedGEMM()
	require.NoError(t, err)
	want := BatchedGEMM{M: 0xffffffff, N: 1, K: 2, DtypeSize: 2, Batch: 1<<64 - 1}
	assert.Equal(t, want, g)
	assert.Equal(t, want, r.BatchedGEMM())
	assert.Equal(t, "BATCHED_GEMM id=0 user=0x0 M=4294967295 N=1 K=2 dtype_size=2 batch=18446744073709551615", r.String())

	tests := []struct {
		name   string
		mutate func(*Request)
		offset int
		reason string
	}{
		{"wrong type", func(r *Request) { r.Type = ReqGEMM }, RequestTypeOffset, "want BATCHED_GEMM"},
		{"M zero", func(r *Request) { le.PutUint32(r.Payload[BatchedGEMMMOffset:], 0) }, 24, "M is 0"},
		{"N zero", func(r *Request) { le.PutUint32(r.Payload[BatchedGEMMNOffset:], 0) }, 28, "N is 0"},
		{"K zero", func(r *Request) { le.PutUint32(r.Payload[BatchedGEMMKOffset:], 0) }, 32, "K is 0"},
		{"dtype zero", func(r *Request) { le.PutUint32(r.Payload[BatchedGEMMDtypeSizeOffset:], 0) }, 36, "dtype_size is 0"},
		{"batch zero", func(r *Request) { le.PutUint64(r.Payload[BatchedGEMMBatchOffset:], 0) }, 40, "batch is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := r
			tt.mutate(&bad)
			_, err := bad.CheckBatchedGEMM()
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.offset, de.Offset)
			assert.Contains(t, de.Error(), tt.reason)
		})
	}
}

// TestGEMMListLayout pins the GEMM_LIST request and answer layouts against hand-written
// bytes (docs/sst-protocol.md §GEMM_LIST payload) and the checks' offsets.
func TestGEMMListLayout(t *testing.T) {
	var r Request
	require.NoError(t, r.Decode(fixture(RequestSize, map[int][]byte{
		0:  {0x0a, 0, 0, 0},
		24: {0x02, 0, 0, 0}, // count
		28: {0x04, 0, 0, 0}, // dtype_size
		32: {0x04, 0, 0, 0}, // entry 0: M
		36: {0x10, 0, 0, 0}, // N
		40: {0x08, 0, 0, 0}, // K
		48: {0x01, 0, 0, 0, 0, 0, 0, 0},
		56: {0xff, 0xff, 0xff, 0xff}, // entry 1: M = 2^32-1
		60: {0x01, 0, 0, 0},
		64: {0x02, 0, 0, 0},
		72: {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, // batch = 2^64-1
	})))
	h, err := r.CheckGEMMList()
	require.NoError(t, err)
	assert.Equal(t, GEMMListHeader{Count: 2, DtypeSize: 4}, h)
	assert.Equal(t, "GEMM_LIST id=0 user=0x0 count=2 dtype_size=4", r.String())
	for i, want := range []GEMMListEntry{{M: 4, N: 16, K: 8, Batch: 1}, {M: 0xffffffff, N: 1, K: 2, Batch: 1<<64 - 1}} {
		e, err := r.CheckGEMMListEntry(i)
		require.NoError(t, err)
		assert.Equal(t, want, e)
	}
	var built Request
	built.SetGEMMListHeader(2, 4)
	built.SetGEMMListEntry(0, GEMMListEntry{M: 4, N: 16, K: 8, Batch: 1})
	built.SetGEMMListEntry(1, GEMMListEntry{M: 0xffffffff, N: 1, K: 2, Batch: 1<<64 - 1})
	assert.Equal(t, r, built, "the setters write the same bytes")
	assert.Equal(t, 127, MaxGEMMListEntries)
	assert.LessOrEqual(t, GEMMListSize(MaxGEMMListEntries), MaxDataSize, "a full list fits a request")

	var resp Response
	resp.SetGEMMListResult(1, GEMMResult{Cycles: 1, ComputeCycles: 2, MemoryCycles: 3, MemoryBytes: 4, ResultOffset: 5})
	out, err := resp.MarshalBinary()
	require.NoError(t, err)
	assert.Equal(t, fixture(ResponseSize, map[int][]byte{64: {1}, 72: {2}, 80: {3}, 88: {4}}), out, "entry 1's answer at response offset 64")
	assert.Equal(t, GEMMResult{Cycles: 1, ComputeCycles: 2, MemoryCycles: 3, MemoryBytes: 4}, resp.GEMMListResult(1))

	tests := []struct {
		name   string
		mutate func(*Request)
		entry  int // -1: the header check
		offset int
		reason string
	}{
		{"wrong type", func(r *Request) { r.Type = ReqGEMM }, -1, RequestTypeOffset, "want GEMM_LIST"},
		{"count zero", func(r *Request) { le.PutUint32(r.Payload[GEMMListCountOffset:], 0) }, -1, 24, "count 0, want 1 to 127"},
		{"count 128", func(r *Request) { le.PutUint32(r.Payload[GEMMListCountOffset:], 128) }, -1, 24, "count 128"},
		{"dtype zero", func(r *Request) { le.PutUint32(r.Payload[GEMMListDtypeSizeOffset:], 0) }, -1, 28, "dtype_size is 0"},
		{"M zero", func(r *Request) { le.PutUint32(r.Payload[GEMMListSize(1)+GEMMListEntryMOffset:], 0) }, 1, 56, "entry 1 at offset 56: M is 0"},
		{"K zero", func(r *Request) { le.PutUint32(r.Payload[GEMMListSize(0)+GEMMListEntryKOffset:], 0) }, 0, 40, "K is 0"},
		{"batch zero", func(r *Request) { le.PutUint64(r.Payload[GEMMListSize(1)+GEMMListEntryBatchOffset:], 0) }, 1, 72, "batch is 0"},
		{"reserved", func(r *Request) { le.PutUint32(r.Payload[GEMMListSize(0)+GEMMListEntryResOffset:], 7) }, 0, 44, "reserved is 0x7, want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := r
			tt.mutate(&bad)
			var err error
			if tt.entry < 0 {
				_, err = bad.CheckGEMMList()
			} else {
				_, err = bad.CheckGEMMListEntry(tt.entry)
			}
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			assert.Equal(t, tt.offset, de.Offset)
			assert.Contains(t, de.Error(), tt.reason)
		})
	}
}
