package deviceserver

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// replayFile is a device file that answers every request with fixed bytes: what a real
// device file (--device PATH) might return, correct or not. With echo, the request's
// user_data is stamped into the answer at offset 16, as a device that copies it would.
type replayFile struct {
	answer   []byte
	echo     bool
	userData uint64 // of the last request written
	stored   bool
}

func (f *replayFile) Write(p []byte) (int, error) {
	f.userData = binary.LittleEndian.Uint64(p[16:])
	f.stored = true
	return len(p), nil
}

func (f *replayFile) Read(p []byte) (int, error) {
	if !f.stored {
		return 0, nil
	}
	f.stored = false
	n := copy(p, f.answer)
	if f.echo && n >= 24 {
		binary.LittleEndian.PutUint64(p[16:], f.userData)
	}
	return n, nil
}

func (f *replayFile) Close() error { return nil }

// FuzzDeviceResponse feeds arbitrary bytes to the device server as the device's answer
// to a GEMM timing request. Whatever they are, the op's numeric result is right (the
// 2×3·3×2 product of docs/wire.md's worked example), and the op is timed exactly when the
// answer is a whole 4112-byte SSTResponse with status OK (0) and the request's user_data,
// with the cycles at offset 32 (docs/sst-protocol.md §GEMM payload).
func FuzzDeviceResponse(f *testing.F) {
	ok := make([]byte, 4112)
	binary.LittleEndian.PutUint64(ok[24:], 16) // result
	binary.LittleEndian.PutUint64(ok[32:], 16) // cycles
	f.Add(ok, true)
	f.Add(ok, false)
	f.Add(ok[:4104], true)
	bad := append([]byte(nil), ok...)
	binary.LittleEndian.PutUint32(bad, 5) // NO_DEVICE
	f.Add(bad, true)
	f.Add([]byte{}, true)
	f.Add(append(ok, 1, 2, 3), true)
	f.Fuzz(func(t *testing.T, answer []byte, echo bool) {
		file := &replayFile{answer: answer, echo: echo}
		s := New(Config{Devices: []Opener{func() (DeviceFile, error) { return file, nil }}})
		op := &Op{ID: 7, Type: OpGEMM, GEMM: &GEMM{M: 2, N: 2, K: 3,
			A: []float32{1, 2, 3, 4, 5, 6}, B: []float32{7, 8, 9, 10, 11, 12}}}
		res, err := s.Execute(context.Background(), op)
		require.NoError(t, err, "a bad answer from the device never fails the op")
		assert.Equal(t, []float32{58, 64, 139, 154}, res.Data)

		got := make([]byte, 4112)
		n := copy(got, answer)
		if echo && n >= 24 {
			binary.LittleEndian.PutUint64(got[16:], file.userData)
		}
		wantTimed := n == 4112 && binary.LittleEndian.Uint32(got) == 0 && binary.LittleEndian.Uint64(got[16:]) == file.userData
		assert.Equal(t, wantTimed, res.Timing.Timed, "timed (cause %s: %v)", res.Timing.Untimed, res.Timing.UntimedErr)
		if wantTimed {
			assert.Equal(t, binary.LittleEndian.Uint64(got[32:]), res.Timing.Cycles)
		} else {
			assert.NotEqual(t, UntimedNone, res.Timing.Untimed)
			assert.Error(t, res.Timing.UntimedErr)
		}
	})
}

// FuzzDeviceListResponse makes the device answer every request of a TIME frame of three
// distinct shapes, the first a GEMM_LIST, with an answer built from the inputs (status,
// result, the head of the payload, the answer's length, whether user_data is copied):
// the fields a GEMM_LIST answer is read by, mutated directly. Whatever they are, nothing
// panics and every entry is either timed or untimed with a cause; when the answer is a whole
// SSTResponse with status OK, the request's user_data and a result of r ≤ 3 entries, the
// first r entries carry the cycles at offsets 32 + 32·i (docs/sst-protocol.md §GEMM_LIST
// payload), timed by the list.
func FuzzDeviceListResponse(f *testing.F) {
	var three [96]byte
	for i := range 3 {
		binary.LittleEndian.PutUint64(three[32*i:], uint64(10+i))
	}
	f.Add(uint32(0), uint64(3), three[:], uint16(4112), true)
	f.Add(uint32(0), uint64(1), three[:], uint16(4112), true)
	f.Add(uint32(0), uint64(1<<40), three[:], uint16(4112), true)
	f.Add(uint32(3), uint64(3), three[:], uint16(4112), true) // INVALID
	f.Add(uint32(0), uint64(3), three[:], uint16(100), false)
	f.Fuzz(func(t *testing.T, status uint32, result uint64, payload []byte, length uint16, echo bool) {
		answer := make([]byte, 4112)
		binary.LittleEndian.PutUint32(answer, status)
		binary.LittleEndian.PutUint64(answer[24:], result)
		copy(answer[32:], payload)
		answer = answer[:min(int(length), len(answer))]
		file := &replayFile{answer: answer, echo: echo}
		s := New(Config{Devices: []Opener{func() (DeviceFile, error) { return file, nil }}, EntryWorkers: 1})
		_, out := s.TimeEntries(context.Background(), distinctEntries(3))
		require.Len(t, out, 3)
		for i, tm := range out {
			assert.Equal(t, tm.Timed, tm.Untimed == UntimedNone, "entry %d: timed iff no cause (%v)", i, tm.UntimedErr)
		}
		if !echo || len(answer) != 4112 || status != 0 || result > 3 {
			return
		}
		for i := range int(result) {
			assert.True(t, out[i].Timed, "entry %d", i)
			assert.Equal(t, binary.LittleEndian.Uint64(answer[32+32*i:]), out[i].Cycles, "entry %d", i)
			assert.Equal(t, protocol.ReqGEMMList, out[i].Kind, "entry %d", i)
		}
	})
}
