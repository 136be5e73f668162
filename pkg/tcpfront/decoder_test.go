package tcpfront

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
)

func opTypeOf(b byte) deviceserver.OpType { return deviceserver.OpType(b) }

// handGEMMFrame is a 2×3 · 3×2 GEMM written out byte by byte: A = [[1,2,3],[4,5,6]],
// B = [[7,8],[9,10],[11,12]]. The JSON is 94 (0x5e) bytes.
var handGEMMFrame = bytes.Join([][]byte{
	{0xde, 0xad, 0xbe, 0xef}, // magic, big-endian
	{0x00, 0x00, 0x00, 0x5e}, // JSON length 94
	{0x01},                   // GEMM
	[]byte(`{"op_id": 7, "M": 2, "N": 2, "K": 3, "A_shape": [2, 3], "B_shape": [3, 2], "dtype": "float32"}`),
	{0x00, 0x00, 0x00, 0x18}, // A: 24 bytes
	{0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40}, // 1 2 3
	{0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40, 0x00, 0x00, 0xc0, 0x40}, // 4 5 6
	{0x00, 0x00, 0x00, 0x18}, // B: 24 bytes
	{0x00, 0x00, 0xe0, 0x40, 0x00, 0x00, 0x00, 0x41, 0x00, 0x00, 0x10, 0x41}, // 7 8 9
	{0x00, 0x00, 0x20, 0x41, 0x00, 0x00, 0x30, 0x41, 0x00, 0x00, 0x40, 0x41}, // 10 11 12
}, nil)

// handGEMMResponse is C = [[58, 64], [139, 154]], worked out by hand.
var handGEMMResponse = []byte{
	0x00, 0x00, 0x00, 0x10, // 16 bytes
	0x00, 0x00, 0x68, 0x42, 0x00, 0x00, 0x80, 0x42, // 58 64
	0x00, 0x00, 0x0b, 0x43, 0x00, 0x00, 0x1a, 0x43, // 139 154
}

func TestDecodeHandFrame(t *testing.T) {
	for _, little := range []bool{true, false} {
		t.Run(map[bool]string{true: "native", false: "portable"}[little], func(t *testing.T) {
			defer setHostLittleEndian(little)()
			// One byte per read: the decoder must not depend on how the stream is cut.
			d := NewDecoder(iotest.OneByteReader(bytes.NewReader(handGEMMFrame)), 0)
			req, err := d.Decode()
			require.NoError(t, err)
			assert.Equal(t, int64(len(handGEMMFrame)), req.Size)
			assert.Equal(t, []int{2, 2}, req.OutShape)
			assert.Equal(t, int64(4), req.OutElems)
			op := req.Op
			assert.Equal(t, int64(7), op.ID)
			assert.Equal(t, deviceserver.OpGEMM, op.Type)
			require.NotNil(t, op.GEMM)
			assert.Equal(t, deviceserver.GEMM{M: 2, N: 2, K: 3,
				A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{7, 8, 9, 10, 11, 12}}, *op.GEMM)
			_, err = d.Decode()
			assert.Equal(t, io.EOF, err)

			out := appendFloat32s(binary.BigEndian.AppendUint32(nil, 16), []float32{58, 64, 139, 154})
			assert.Equal(t, handGEMMResponse, out)
		})
	}
}

// setHostLittleEndian forces the tensor path and returns a function restoring it.
func setHostLittleEndian(v bool) func() {
	old := hostLittleEndian
	hostLittleEndian = v
	return func() { hostLittleEndian = old }
}

func TestDecodeMatmulAndConv(t *testing.T) {
	a, b := ramp(2*1*3*4, 1), ramp(5*4*6, 2)
	in, w := ramp(2*3*8*8, 3), ramp(6*1*3*3, 4)
	stream := bytes.Join([][]byte{
		frame(3, `{"op_id": 11, "A_shape": [2, 1, 3, 4], "B_shape": [5, 4, 6], "dtype": "float32"}`, a, b),
		frame(2, `{"op_id": 12, "input_shape": [2, 3, 8, 8], "weight_shape": [6, 1, 3, 3], "stride": [2, 1], "padding": 1, "groups": 3, "dtype": "float32"}`, in, w),
		frame(3, `{"op_id": 13, "A_shape": [4], "B_shape": [4], "dtype": "float32"}`, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}),
	}, nil)
	d := NewDecoder(bytes.NewReader(stream), 0)

	req, err := d.Decode()
	require.NoError(t, err)
	assert.Equal(t, deviceserver.OpMatmul, req.Op.Type)
	assert.Equal(t, int64(11), req.Op.ID)
	assert.Equal(t, &deviceserver.Matmul{AShape: []int{2, 1, 3, 4}, BShape: []int{5, 4, 6}, A: a, B: b}, req.Op.Matmul)
	assert.Equal(t, []int{2, 5, 3, 6}, req.OutShape)

	req, err = d.Decode()
	require.NoError(t, err)
	assert.Equal(t, deviceserver.OpConv, req.Op.Type)
	// H: (8 + 2 - 3)/2 + 1 = 4; W: (8 + 2 - 3)/1 + 1 = 8.
	assert.Equal(t, []int{2, 6, 4, 8}, req.OutShape)
	require.NotNil(t, req.Op.Plan, "the decoder hands its plan to layer 2")
	assert.Equal(t, linalg.KindConv2D, req.Op.Plan.Kind())
	assert.Equal(t, []linalg.GEMMBatch{{Shape: linalg.GEMMShape{M: 2, N: 2 * 4 * 8, K: 9}, Count: 3}}, req.Op.Plan.Batches())
	assert.Equal(t, &deviceserver.Conv2D{InputShape: [4]int{2, 3, 8, 8}, WeightShape: [4]int{6, 1, 3, 3},
		Stride: [2]int{2, 1}, Padding: [2]int{1, 1}, Dilation: [2]int{1, 1}, Groups: 3, Input: in, Weight: w}, req.Op.Conv)

	req, err = d.Decode()
	require.NoError(t, err)
	assert.Equal(t, []int{}, req.OutShape)
	assert.Equal(t, int64(1), req.OutElems)
	assert.Equal(t, []float32{1, 2, 3, 4}, req.Op.Matmul.A)

	_, err = d.Decode()
	assert.Equal(t, io.EOF, err)
}

// A tensor larger than growElems is read in growing steps; its values must arrive intact.
func TestDecodeLargeTensor(t *testing.T) {
	const k = growElems*3/2 + 5
	a := make([]float32, 2*k)
	for i := range a {
		a[i] = float32(i % 1000)
	}
	b := ramp(k, 9)
	f := frame(3, `{"op_id": 1, "A_shape": [2, `+strconv.Itoa(k)+`], "B_shape": [`+strconv.Itoa(k)+`], "dtype": "float32"}`, a, b)
	req, err := NewDecoder(bytes.NewReader(f), 0).Decode()
	require.NoError(t, err)
	require.Len(t, req.Op.Matmul.A, 2*k)
	// slices.Equal: assert.Equal would format millions of values on failure.
	assert.True(t, slices.Equal(a, req.Op.Matmul.A), "A differs")
	assert.True(t, slices.Equal(b, req.Op.Matmul.B), "B differs")

	_, err = NewDecoder(bytes.NewReader(f[:len(f)/2]), 0).Decode()
	kind, ok := KindOf(err)
	require.True(t, ok)
	assert.Equal(t, KindTruncated, kind)
}

// Buffers are reused between frames; a smaller second frame must not see stale data.
// A small GEMM's frame in the reference client's form decodes without allocating once the
// Decoder has seen one: its header, JSON, plan, tensors and Request reuse their storage.
func TestDecodeSmallGEMMDoesNotAllocate(t *testing.T) {
	f := frame(1, gemmJSONFor(7, 4, 16, 8), ramp(32, 1), ramp(128, 2))
	r := bytes.NewReader(f)
	d := NewDecoder(r, 0)
	decode := func() {
		r.Reset(f)
		req, err := d.Decode()
		if err != nil || req.Op.GEMM.M != 4 || req.Op.ID != 7 || len(req.Op.GEMM.B) != 128 {
			t.Fatalf("%+v, %v", req, err)
		}
	}
	decode()
	assert.Zero(t, testing.AllocsPerRun(100, decode))
}

func TestDecodeReuse(t *testing.T) {
	stream := bytes.Join([][]byte{
		frame(1, gemmJSONFor(1, 4, 4, 4), ramp(16, 1), ramp(16, 2)),
		frame(1, gemmJSONFor(2, 1, 2, 2), []float32{1, 2}, []float32{3, 4, 5, 6}),
	}, nil)
	d := NewDecoder(bytes.NewReader(stream), 0)
	_, err := d.Decode()
	require.NoError(t, err)
	req, err := d.Decode()
	require.NoError(t, err)
	assert.Equal(t, []float32{1, 2}, req.Op.GEMM.A)
	assert.Equal(t, []float32{3, 4, 5, 6}, req.Op.GEMM.B)
}

func TestDecodeErrors(t *testing.T) {
	good := gemmJSONFor(5, 2, 3, 4)
	head := func(op byte, jsonLen uint32) []byte {
		b := binary.BigEndian.AppendUint32(nil, Magic)
		b = binary.BigEndian.AppendUint32(b, jsonLen)
		return append(b, op)
	}
	withJSON := func(op byte, js string) []byte { return append(head(op, uint32(len(js))), js...) }
	lenA := HeaderSize + int64(len(good))
	tests := []struct {
		name   string
		in     []byte
		kind   ErrorKind
		field  string
		offset int64
		opID   int64 // -1: unknown
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), KindMagic, "magic", 0, -1},
		{"magic-third-byte", []byte{0xde, 0xad, 0xbf}, KindMagic, "magic", 2, -1},
		{"magic-little-endian", []byte{0xef, 0xbe, 0xad, 0xde}, KindMagic, "magic", 0, -1},
		{"json-length-4GiB", head(1, 0xffffffff), KindLimit, "json_length", 4, -1},
		{"json-length-64KiB+1", head(1, MaxJSONBytes+1), KindLimit, "json_length", 4, -1},
		{"op-type-0", head(0, 2), KindOpType, "op_type", 8, -1},
		{"op-type-6", head(6, 2), KindOpType, "op_type", 8, -1},
		{"time-json-length-1MiB+1", head(4, MaxTimeJSONBytes+1), KindLimit, "json_length", 4, -1},
		{"info-json-length-64KiB+1", head(5, MaxJSONBytes+1), KindLimit, "json_length", 4, -1},
		{"gemm-timing-not-bool", withJSON(1, strings.Replace(good, "}", `, "timing": "yes"}`, 1)), KindJSON, "timing", -1, -1},
		{"matmul-timing-not-bool", withJSON(3, `{"op_id": 2, "A_shape": [3], "B_shape": [3], "dtype": "float32", "timing": 1}`), KindJSON, "timing", -1, -1},
		{"invalid-utf8", withJSON(1, "{\"op_id\": 1, \"dtype\": \"f\xffloat32\"}"), KindJSON, "json", 9 + 24, -1},
		{"syntax", withJSON(1, `{"op_id": 1,, }`), KindJSON, "json", 9 + 12, -1}, // the second comma
		{"zero-dim", withJSON(1, gemmJSONFor(5, 0, 3, 4)), KindField, "M", 9, 5},
		{"unknown-dtype", withJSON(1, strings.Replace(good, "float32", "bfloat16", 1)), KindDType, "dtype", 9, 5},
		{"length-A-short", append(withJSON(1, good), 0, 0, 0, 28), KindLength, "tensor A length", lenA, 5},
		{"length-A-4GiB", append(withJSON(1, good), 0xff, 0xff, 0xff, 0xfc), KindLength, "tensor A length", lenA, 5},
		{"length-B-long", append(append(append(withJSON(1, good), 0, 0, 0, 32), make([]byte, 32)...), 0, 0, 0, 52),
			KindLength, "tensor B length", lenA + 36, 5},
		{"conv-length-weight", func() []byte {
			f := frame(2, `{"op_id": 9, "input_shape": [1, 1, 2, 2], "weight_shape": [1, 1, 1, 1], "dtype": "float32"}`,
				[]float32{1, 2, 3, 4}, []float32{1, 2})
			return f
		}(), KindLength, "tensor weight length", -1, 9},
		// 8 bytes of JSON-declared input and a 4 MB kernel with padding 1000: the output is
		// 1001×1001 and the im2col buffer 10^6 × 1001^2 floats (4 TB), refused up front.
		{"conv-im2col-workspace", withJSON(2, `{"op_id": 10, "input_shape": [1, 1, 1, 1], "weight_shape": [1, 1, 1000, 1000], "padding": 1000, "dtype": "float32"}`),
			KindLimit, "workspace", -1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewDecoder(bytes.NewReader(tt.in), 0).Decode()
			var fe *FrameError
			require.True(t, errors.As(err, &fe), "got %v", err)
			assert.Equal(t, tt.kind, fe.Kind, fe.Error())
			assert.Equal(t, tt.field, fe.Field, fe.Error())
			if tt.offset >= 0 {
				assert.Equal(t, tt.offset, fe.Offset, fe.Error())
			}
			assert.Equal(t, tt.opID >= 0, fe.HasOpID)
			if tt.opID >= 0 {
				assert.Equal(t, tt.opID, fe.OpID)
			}
		})
	}
}

// Cutting a valid frame after any number of bytes is a truncation at exactly that offset;
// cutting it before the first byte is a clean end of stream.
func TestDecodeTruncatedEverywhere(t *testing.T) {
	frames := map[string][]byte{
		"gemm":   handGEMMFrame,
		"matmul": frame(3, `{"op_id": 2, "A_shape": [3], "B_shape": [3, 2], "dtype": "float32"}`, ramp(3, 1), ramp(6, 2)),
		"conv":   frame(2, `{"op_id": 3, "input_shape": [1, 1, 3, 3], "weight_shape": [1, 1, 2, 2], "dtype": "float32"}`, ramp(9, 1), ramp(4, 2)),
	}
	for name, f := range frames {
		t.Run(name, func(t *testing.T) {
			_, err := NewDecoder(bytes.NewReader(nil), 0).Decode()
			require.Equal(t, io.EOF, err)
			for n := 1; n < len(f); n++ {
				_, err := NewDecoder(bytes.NewReader(f[:n]), 0).Decode()
				var fe *FrameError
				require.True(t, errors.As(err, &fe), "cut at %d: %v", n, err)
				require.Equal(t, KindTruncated, fe.Kind, "cut at %d: %v", n, err)
				require.Equal(t, int64(n), fe.Offset, "cut at %d: %v", n, err)
			}
		})
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestDecodeReadErrors(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := NewDecoder(io.MultiReader(bytes.NewReader(handGEMMFrame[:20]), errReader{boom}), 0).Decode()
	var fe *FrameError
	require.True(t, errors.As(err, &fe))
	assert.Equal(t, KindRead, fe.Kind)
	assert.Equal(t, "json", fe.Field)
	assert.Equal(t, int64(20), fe.Offset)
	assert.ErrorIs(t, err, boom)
}
