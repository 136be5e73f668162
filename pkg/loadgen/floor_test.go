package loadgen

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requestBytes builds a frame by hand (independently of wire.go's encoder).
func requestBytes(op byte, js string, tensors ...[]float32) []byte {
	var b []byte
	b = binary.BigEndian.AppendUint32(b, 0xDEADBEEF)
	b = binary.BigEndian.AppendUint32(b, uint32(len(js)))
	b = append(b, op)
	b = append(b, js...)
	for _, t := range tensors {
		b = binary.BigEndian.AppendUint32(b, uint32(4*len(t)))
		for _, v := range t {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return b
}

const js2x2x2 = `{"op_id": 0, "M": 2, "N": 2, "K": 2, "A_shape": [2, 2], "B_shape": [2, 2], "dtype": "float32"}`

func TestFloorFrameHandWorked(t *testing.T) {
	req := requestBytes(1, js2x2x2, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8})
	f := &floorFrame{r: bytes.NewReader(append(req, req...)), maxTensorBytes: floorMaxTensorBytes}
	want := []byte{0, 0, 0, 16}
	for _, v := range []float32{19, 22, 43, 50} {
		want = binary.LittleEndian.AppendUint32(want, math.Float32bits(v))
	}
	for range 2 {
		got, err := f.next()
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := f.next()
	assert.ErrorIs(t, err, io.EOF)
}

func TestFloorFrameRejects(t *testing.T) {
	ok := func(js string) []byte { return requestBytes(1, js, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}) }
	badMagic := ok(js2x2x2)
	badMagic[3] = 0xee
	longJSON := ok(js2x2x2)
	binary.BigEndian.PutUint32(longJSON[4:], floorMaxJSONBytes+1)
	cases := []struct {
		name    string
		in      []byte
		errPart string
	}{
		{"bad magic", badMagic, "bad magic"},
		{"JSON too long", longJSON, "JSON of 65537 bytes"},
		{"CONV op", requestBytes(2, js2x2x2, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}), "op type 0x2"},
		{"not JSON", ok("{M: 2"), "JSON"},
		{"M missing", ok(`{"N": 2, "K": 2}`), "shape 0×2×2"},
		{"negative K", ok(`{"M": 2, "N": 2, "K": -2}`), "shape 2×2×-2"},
		{"too large", ok(`{"M": 1, "N": 16777217, "K": 1}`), "shape 1×16777217×1"},
		{"A length wrong", requestBytes(1, js2x2x2, []float32{1, 2, 3}, []float32{5, 6, 7, 8}), "tensor of 12 bytes, want 16"},
		{"B length wrong", requestBytes(1, js2x2x2, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8, 9}), "tensor of 20 bytes, want 16"},
		{"truncated", ok(js2x2x2)[:40], ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &floorFrame{r: bytes.NewReader(tc.in), maxTensorBytes: floorMaxTensorBytes}
			_, err := f.next()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errPart)
		})
	}
}

// FuzzFloorFrame feeds the floor's frame reader arbitrary bytes: it must never panic, and
// whatever it answers must be a well-formed response of M·N elements.
func FuzzFloorFrame(f *testing.F) {
	f.Add(requestBytes(1, js2x2x2, []float32{1, 2, 3, 4}, []float32{5, 6, 7, 8}))
	f.Add(requestBytes(1, `{"M": 1, "N": 3, "K": 1}`, []float32{2}, []float32{1, 2, 3}))
	f.Add(requestBytes(1, `{"M": 0, "N": 3, "K": 1}`, []float32{2}, []float32{1, 2, 3}))
	f.Add(requestBytes(3, js2x2x2))
	f.Add([]byte{0xde, 0xad, 0xbe, 0xef})
	f.Fuzz(func(t *testing.T, in []byte) {
		fr := &floorFrame{r: bytes.NewReader(in), maxTensorBytes: 1 << 16}
		for {
			resp, err := fr.next()
			if err != nil {
				return
			}
			if len(resp) < 4 || int(binary.BigEndian.Uint32(resp)) != len(resp)-4 || len(resp)%4 != 0 {
				t.Fatalf("malformed response of %d bytes announcing %d", len(resp), binary.BigEndian.Uint32(resp))
			}
		}
	})
}

// FuzzReadResponse feeds the client's response reader arbitrary bytes for an M·N result:
// it must never panic, and it succeeds only when the bytes announce exactly M·N·4.
func FuzzReadResponse(f *testing.F) {
	f.Add(uint8(2), []byte{0, 0, 0, 8, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40})
	f.Add(uint8(1), []byte{0, 0, 0, 8, 0, 0, 0x80, 0x3f})
	f.Add(uint8(3), []byte{0, 0})
	f.Add(uint8(0), []byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, elems uint8, in []byte) {
		out := make([]float32, elems)
		var scratch []byte
		oe := readResponse(bytes.NewReader(in), out, &scratch)
		announced := -1
		if len(in) >= 4 {
			announced = int(binary.BigEndian.Uint32(in))
		}
		ok := announced == 4*int(elems) && len(in) >= 4+announced
		if ok != (oe == nil) {
			t.Fatalf("%d elements, %d bytes announcing %d: error %v", elems, len(in), announced, oe)
		}
		if oe == nil {
			for i, v := range out {
				if want := math.Float32frombits(binary.LittleEndian.Uint32(in[4+4*i:])); math.Float32bits(v) != math.Float32bits(want) {
					t.Fatalf("element %d = %g, want %g", i, v, want)
				}
			}
		}
	})
}
