package tcpfront

import (
	"encoding/binary"
	"io"
	"math"
	"unsafe"
)

// hostLittleEndian reports whether this host stores a float32 in the wire's byte order
// (little-endian), so tensors can be read and written through a byte view of their own
// storage. It is a variable only so that tests can force the portable path.
var hostLittleEndian = func() bool {
	x := uint32(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// portableChunk is the scratch size of the portable (byte-swapping) tensor path.
const portableChunk = 32 << 10

// float32Bytes views the storage of f as bytes. Only meaningful when hostLittleEndian.
//
// Why unsafe: reading a tensor straight into its []float32 avoids both a second buffer of
// the tensor's size and a decode loop. BenchmarkReadFloat32s (1 MiB tensor from memory,
// 2 shared cores, go test -bench ReadFloat32s -count 3) measured the view at 50-86 µs
// (12-21 GB/s, a memmove) against 470-580 µs (1.8-2.2 GB/s) for binary.LittleEndian plus
// math.Float32frombits in 32 KiB chunks, i.e. 7-9× less CPU per byte. The portable path
// below stays for big-endian hosts and is tested on every host.
func float32Bytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), len(f)*float32Size)
}

// readFloat32s fills dst with little-endian float32 values read from r and returns how
// many bytes it read; scratch is reused by the portable path.
func readFloat32s(r io.Reader, dst []float32, scratch *[]byte) (int64, error) {
	if hostLittleEndian {
		n, err := io.ReadFull(r, float32Bytes(dst))
		return int64(n), err
	}
	if cap(*scratch) < portableChunk {
		*scratch = make([]byte, portableChunk)
	}
	buf := (*scratch)[:portableChunk]
	var total int64
	for len(dst) > 0 {
		chunk := min(len(dst), portableChunk/float32Size)
		n, err := io.ReadFull(r, buf[:chunk*float32Size])
		total += int64(n)
		for i := range n / float32Size {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[i*float32Size:]))
		}
		if err != nil {
			return total, err
		}
		dst = dst[chunk:]
	}
	return total, nil
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
