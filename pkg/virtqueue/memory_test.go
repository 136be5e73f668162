package virtqueue

import (
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGuestMemoryBounds(t *testing.T) {
	m := NewGuestMemory(64)
	cases := []struct {
		name string
		addr uint64
		n    int
		ok   bool
	}{
		{"whole arena", 0, 64, true},
		{"last byte", 63, 1, true},
		{"empty at end", 64, 0, true},
		{"one past end", 63, 2, false},
		{"start past end", 65, 0, false},
		{"longer than arena", 0, 65, false},
		{"addr+len overflows", math.MaxUint64, 2, false},
		{"addr+len overflows to small", math.MaxUint64 - 3, 8, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := make([]byte, tc.n)
			for i := range p {
				p[i] = 0xAA
			}
			werr := m.WriteAt(p, tc.addr)
			rerr := m.ReadAt(p, tc.addr)
			if tc.ok {
				require.NoError(t, werr)
				require.NoError(t, rerr)
				return
			}
			var me *MemoryError
			require.ErrorAs(t, werr, &me)
			assert.Equal(t, MemoryError{Addr: tc.addr, Len: uint64(tc.n), Size: 64}, *me)
			require.ErrorAs(t, rerr, &me)
			for _, b := range p {
				require.EqualValues(t, 0xAA, b, "failed read must not copy")
			}
		})
	}
}

func TestGuestMemoryFailedWriteChangesNothing(t *testing.T) {
	m := NewGuestMemory(16)
	require.Error(t, m.WriteAt([]byte{1, 2, 3, 4}, 14))
	got := make([]byte, 16)
	require.NoError(t, m.ReadAt(got, 0))
	assert.Equal(t, make([]byte, 16), got)
}

func TestGuestMemoryLittleEndian(t *testing.T) {
	m := NewGuestMemory(32)
	require.NoError(t, m.WriteU16(0, 0x1234))
	require.NoError(t, m.WriteU32(2, 0xA1B2C3D4))
	require.NoError(t, m.WriteU64(6, 0x0102030405060708))
	raw := make([]byte, 14)
	require.NoError(t, m.ReadAt(raw, 0))
	assert.Equal(t, []byte{0x34, 0x12, 0xD4, 0xC3, 0xB2, 0xA1, 8, 7, 6, 5, 4, 3, 2, 1}, raw)
	v16, err := m.ReadU16(0)
	require.NoError(t, err)
	assert.EqualValues(t, 0x1234, v16)
	v32, err := m.ReadU32(2)
	require.NoError(t, err)
	assert.EqualValues(t, uint32(0xA1B2C3D4), v32)
	v64, err := m.ReadU64(6)
	require.NoError(t, err)
	assert.EqualValues(t, uint64(0x0102030405060708), v64)
	_, err = m.ReadU64(25)
	assert.Error(t, err)
	assert.Error(t, m.WriteU16(31, 1))
}

func TestAlloc(t *testing.T) {
	m := NewGuestMemory(100)
	require.NoError(t, m.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 16))
	a, err := m.Alloc(3, 1)
	require.NoError(t, err)
	assert.EqualValues(t, 0, a)
	a, err = m.Alloc(8, 16)
	require.NoError(t, err)
	assert.EqualValues(t, 16, a, "3 rounded up to 16")
	got, err := m.ReadU32(16)
	require.NoError(t, err)
	assert.Zero(t, got, "allocations are zeroed")
	a, err = m.Alloc(0, 0)
	require.NoError(t, err)
	assert.EqualValues(t, 24, a)
	a, err = m.Alloc(76, 4)
	require.NoError(t, err)
	assert.EqualValues(t, 24, a, "exactly fills the arena")
	var ae *AllocError
	_, err = m.Alloc(1, 1)
	require.ErrorAs(t, err, &ae)
	_, err = NewGuestMemory(100).Alloc(1, 3)
	require.ErrorAs(t, err, &ae)
	_, err = NewGuestMemory(100).Alloc(1, 128)
	require.ErrorAs(t, err, &ae)
	_, err = NewGuestMemory(100).Alloc(math.MaxUint64, 1)
	require.ErrorAs(t, err, &ae)
}

// TestGuestMemoryU16Placement writes 16-bit values at every kind of address the atomic
// path distinguishes (low and high half of an aligned word, odd, the last two bytes of
// an arena whose size is not a multiple of 4, so the word runs past it) and checks the
// exact bytes around each, worked out by hand: neighbours must keep their values.
func TestGuestMemoryU16Placement(t *testing.T) {
	cases := []struct {
		name string
		size uint64
		addr uint64
		want []byte // the whole arena after WriteU16(addr, 0xBEEF) over bytes 0x11, 0x22, …
	}{
		{"low half", 8, 0, []byte{0xEF, 0xBE, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}},
		{"high half", 8, 2, []byte{0x11, 0x22, 0xEF, 0xBE, 0x55, 0x66, 0x77, 0x88}},
		{"odd, across words", 8, 3, []byte{0x11, 0x22, 0x33, 0xEF, 0xBE, 0x66, 0x77, 0x88}},
		{"last bytes, word past the end", 6, 4, []byte{0x11, 0x22, 0x33, 0x44, 0xEF, 0xBE}},
		{"last bytes of a 2-byte arena", 2, 0, []byte{0xEF, 0xBE}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewGuestMemory(tc.size)
			init := make([]byte, tc.size)
			for i := range init {
				init[i] = byte(0x11 * (i + 1))
			}
			require.NoError(t, m.WriteAt(init, 0))
			require.NoError(t, m.WriteU16(tc.addr, 0xBEEF))
			got := make([]byte, tc.size)
			require.NoError(t, m.ReadAt(got, 0))
			assert.Equal(t, tc.want, got)
			v, err := m.ReadU16(tc.addr)
			require.NoError(t, err)
			assert.EqualValues(t, 0xBEEF, v)
			var me *MemoryError
			require.ErrorAs(t, m.WriteU16(tc.size-1, 1), &me, "a 16-bit field may not start at the last byte")
			_, err = m.ReadU16(tc.size)
			require.ErrorAs(t, err, &me)
		})
	}
}

// TestGuestMemoryU16HalvesConcurrently has two goroutines write the two 16-bit halves of
// one 32-bit word at once, as the driver's avail.flags and avail.idx writes (or a ring
// entry next to used_event) may share a word: the compare-and-swap must never lose the
// other half's update, which a read-modify-write without it would.
func TestGuestMemoryU16HalvesConcurrently(t *testing.T) {
	const rounds = 20_000
	m := NewGuestMemory(8)
	var wg sync.WaitGroup
	for _, addr := range []uint64{4, 6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if err := m.WriteU16(addr, uint16(i)); err != nil {
					panic(err)
				}
				if v, err := m.ReadU16(addr); err != nil || v != uint16(i) {
					panic("the other half's write undid this one")
				}
			}
		}()
	}
	wg.Wait()
	for _, addr := range []uint64{4, 6} {
		v, err := m.ReadU16(addr)
		require.NoError(t, err)
		assert.EqualValues(t, rounds-1, v)
	}
}

// TestAllocQueueReservesEventWord checks that AllocQueue keeps the next allocation off
// the two bytes after avail_event, which share its 32-bit atomic word: a queue of size 8
// at 0 ends at 0x80 (desc) + 0x16 (avail) + 2 (padding) + 0x46 (used) = 0xDE, so the next
// byte-aligned allocation must start at 0xE0, not 0xDE.
func TestAllocQueueReservesEventWord(t *testing.T) {
	m := NewGuestMemory(4096)
	l, err := m.AllocQueue(8)
	require.NoError(t, err)
	assert.EqualValues(t, 0xDE, l.availEvent()+eventFieldSize)
	a, err := m.Alloc(1, 1)
	require.NoError(t, err)
	assert.EqualValues(t, 0xE0, a)
}
