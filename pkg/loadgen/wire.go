package loadgen

import (
	"encoding/binary"
	"math"
	"strconv"
	"unsafe"
)

// The DeviceGEMM frame (docs/wire.md). The client encodes it independently
// of pkg/tcpfront so that the tests between them check the wire, not shared code.
const (
	// Magic opens every request frame, big-endian on the wire.
	Magic uint32 = 0xDEADBEEF
	// OpTypeGEMM is the op type byte of a GEMM request.
	OpTypeGEMM byte = 0x01
	// HeaderSize is magic (4) + JSON length (4) + op type (1).
	HeaderSize = 9
	// LengthPrefixSize is the size of a tensor's (and the response's) u32 big-endian length.
	LengthPrefixSize = 4
	// Float32Size is the size of one tensor element on the wire (little-endian float32).
	Float32Size = 4

	// maxTensorBytes is the largest tensor a u32 length prefix can announce.
	maxTensorBytes = math.MaxUint32
	// MaxTimingBytes bounds the timing record a client accepts after a result (one op's
	// record is a few hundred bytes).
	MaxTimingBytes = 64 << 10
)

// hostLittleEndian reports whether a float32 is stored in the wire's byte order here, so
// tensors can be sent and received through a byte view of their own storage.
var hostLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// float32Bytes views the storage of f as bytes; only meaningful when hostLittleEndian.
// It saves a copy of every tensor in each direction (8 MiB per 1024³ op each way).
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), len(f)*Float32Size)
}

// appendFloat32s appends src to dst as little-endian float32 values.
func appendFloat32s(dst []byte, src []float32) []byte {
	if hostLittleEndian {
		return append(dst, float32Bytes(src)...)
	}
	for _, v := range src {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v))
	}
	return dst
}

// decodeFloat32s fills dst from little-endian float32 bytes; len(src) must be 4·len(dst).
func decodeFloat32s(dst []float32, src []byte) {
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[i*Float32Size:]))
	}
}

// appendHeader appends the frame's header and JSON for a GEMM op, exactly as the reference
// client formats it: {"op_id": 7, "M": 4, "N": 16, "K": 8, "A_shape": [4, 8],
// "B_shape": [8, 16], "dtype": "float32"}; with timing, "timing": true is added last.
func appendHeader(dst []byte, opID int64, m, n, k int, timing bool) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, Magic)
	dst = append(dst, 0, 0, 0, 0, OpTypeGEMM) // JSON length patched below
	js := len(dst)
	dst = append(dst, `{"op_id": `...)
	dst = strconv.AppendInt(dst, opID, 10)
	dst = appendField(dst, `, "M": `, m)
	dst = appendField(dst, `, "N": `, n)
	dst = appendField(dst, `, "K": `, k)
	dst = appendField(dst, `, "A_shape": [`, m)
	dst = appendField(dst, `, `, k)
	dst = appendField(dst, `], "B_shape": [`, k)
	dst = appendField(dst, `, `, n)
	dst = append(dst, `], "dtype": "float32"`...)
	if timing {
		dst = append(dst, `, "timing": true`...)
	}
	dst = append(dst, '}')
	binary.BigEndian.PutUint32(dst[start+4:], uint32(len(dst)-js))
	return dst
}

func appendField(dst []byte, key string, v int) []byte {
	return strconv.AppendInt(append(dst, key...), int64(v), 10)
}
