package virtqueue

import (
	"math"
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
