package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAddRejects(t *testing.T) {
	const q = 8
	p := newPair(t, negMemSize, q, Features{})
	nine := make([]Buffer, q+1)
	for i := range nine {
		nine[i] = Buffer{Addr: bufArea, Len: 1}
	}
	cases := []struct {
		name  string
		bufs  []Buffer
		rule  Rule
		index int
	}{
		{"empty", nil, RuleEmptyChain, 0},
		{"longer than the queue", nine, RuleChainLength, 0},
		{"past end of memory", []Buffer{{Addr: negMemSize - 1, Len: 2}}, RuleBufferRange, 0},
		{"address overflow", []Buffer{{Addr: bufArea, Len: 1}, {Addr: ^uint64(0), Len: 2, Writable: true}}, RuleBufferRange, 1},
		{"readable after writable", []Buffer{{Addr: bufArea, Len: 1, Writable: true}, {Addr: bufArea, Len: 1}}, RuleReadAfterWrite, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.drv.Add(tc.bufs)
			var be *BufferError
			require.ErrorAs(t, err, &be)
			assert.Equal(t, tc.rule, be.Rule)
			assert.Equal(t, tc.index, be.Index)
			assert.Equal(t, q, p.drv.NumFree(), "nothing taken")
		})
	}
}

func TestAddRejectsTotalLen(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GiB arena")
	}
	const half = 1 << 31
	p := newPair(t, half, 8, Features{})
	_, err := p.drv.Add([]Buffer{{Addr: 0, Len: half}, {Addr: 0, Len: half, Writable: true}, {Addr: 0, Len: 1, Writable: true}})
	var be *BufferError
	require.ErrorAs(t, err, &be)
	assert.Equal(t, RuleTotalLen, be.Rule)
	assert.Equal(t, 2, be.Index)
}

func TestAddNoSpace(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	for i := 0; i < 3; i++ {
		_, err := p.drv.Add([]Buffer{{Addr: bufArea, Len: 1}, {Addr: bufArea, Len: 1, Writable: true}})
		require.NoError(t, err)
	}
	assert.Equal(t, 2, p.drv.NumFree())
	_, err := p.drv.Add([]Buffer{{Addr: bufArea, Len: 1}, {Addr: bufArea, Len: 1}, {Addr: bufArea, Len: 1}})
	require.ErrorIs(t, err, ErrNoSpace)
	var ns *NoSpaceError
	require.ErrorAs(t, err, &ns)
	assert.Equal(t, NoSpaceError{Need: 3, Free: 2}, *ns)
	_, err = p.drv.Add([]Buffer{{Addr: bufArea, Len: 1}, {Addr: bufArea, Len: 1}})
	require.NoError(t, err, "two still fit")
}

// TestAddWritesSpecLayout checks the bytes Add writes against §2.7.5 and §2.7.6 by hand.
func TestAddWritesSpecLayout(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	_, err := p.drv.Add([]Buffer{{Addr: 0x1122334455, Len: 0x10, Writable: false}, {Addr: 0x8000, Len: 0x20, Writable: true}})
	require.Error(t, err, "0x1122334455 is outside the 64 KiB arena")
	head, err := p.drv.Add([]Buffer{{Addr: 0x8100, Len: 0x10}, {Addr: 0x8200, Len: 0x20, Writable: true}})
	require.NoError(t, err)
	assert.EqualValues(t, 0, head, "free descriptors are handed out from 0")
	var raw [32]byte
	require.NoError(t, p.mem.ReadAt(raw[:], p.l.Desc))
	want := [32]byte{
		0x00, 0x81, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, DescFNext, 0, 1, 0, // addr, len, flags NEXT, next 1
		0x00, 0x82, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, DescFWrite, 0, 0, 0, // flags WRITE, next 0
	}
	assert.Equal(t, want, raw)
	ring, err := p.mem.ReadU16(p.l.Avail + offRing)
	require.NoError(t, err)
	assert.EqualValues(t, 0, ring)
	idx, err := p.mem.ReadU16(p.l.Avail + offIdx)
	require.NoError(t, err)
	assert.EqualValues(t, 0, idx, "not published yet")
	_, err = p.drv.Publish()
	require.NoError(t, err)
	idx, err = p.mem.ReadU16(p.l.Avail + offIdx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, idx)
}

// rawUsed writes used element pos and then the used idx, as a (possibly hostile) device
// would.
func rawUsed(t testing.TB, p *pair, pos uint16, id, n uint32, idx uint16) {
	t.Helper()
	var b [UsedElemSize]byte
	binary.LittleEndian.PutUint32(b[0:], id)
	binary.LittleEndian.PutUint32(b[4:], n)
	require.NoError(t, p.mem.WriteAt(b[:], p.l.usedRing(pos)))
	require.NoError(t, p.mem.WriteU16(p.l.Used+offIdx, idx))
}

func TestPopUsedRejects(t *testing.T) {
	const q = 8
	cases := []struct {
		name    string
		id, len uint32
		rule    Rule
		freed   bool
	}{
		{"id out of range", q, 0, RuleUsedIDRange, false},
		{"id beyond 16 bits", 0x10000, 0, RuleUsedIDRange, false},
		{"id not a head", 1, 0, RuleUsedNotInFlight, false},
		{"id added but not published", 3, 0, RuleUsedNotInFlight, false},
		{"len beyond writable bytes", 0, 9, RuleUsedLen, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, negMemSize, q, Features{})
			h, err := p.drv.Add([]Buffer{{Addr: bufArea, Len: 4}, {Addr: bufArea, Len: 5, Writable: true}, {Addr: bufArea, Len: 3, Writable: true}})
			require.NoError(t, err)
			require.EqualValues(t, 0, h)
			_, err = p.drv.Publish()
			require.NoError(t, err)
			h, err = p.drv.Add([]Buffer{{Addr: bufArea, Len: 4}})
			require.NoError(t, err)
			require.EqualValues(t, 3, h)

			rawUsed(t, p, 0, tc.id, tc.len, 1)
			_, ok, err := p.drv.PopUsed()
			assert.False(t, ok)
			var ue *UsedError
			require.ErrorAs(t, err, &ue)
			assert.Equal(t, tc.rule, ue.Rule)
			assert.Equal(t, tc.freed, ue.Freed)
			assert.Equal(t, tc.id, ue.ID)
			wantFree := q - 4
			if tc.freed {
				wantFree = q - 1
			}
			assert.Equal(t, wantFree, p.drv.NumFree())
			_, ok, err = p.drv.PopUsed()
			require.NoError(t, err, "the bad entry was consumed")
			assert.False(t, ok)
		})
	}
	t.Run("len equal to writable bytes is fine", func(t *testing.T) {
		p := newPair(t, negMemSize, q, Features{})
		_, err := p.drv.Add([]Buffer{{Addr: bufArea, Len: 4}, {Addr: bufArea, Len: 5, Writable: true}, {Addr: bufArea, Len: 3, Writable: true}})
		require.NoError(t, err)
		_, err = p.drv.Publish()
		require.NoError(t, err)
		rawUsed(t, p, 0, 0, 8, 1)
		e, ok, err := p.drv.PopUsed()
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, UsedElem{ID: 0, Len: 8}, e)
	})
}

func TestPopUsedRejectsIdxJump(t *testing.T) {
	cases := []struct {
		name string
		idx  uint16
	}{
		{"two used, one in flight", 2},
		{"backwards", 0xffff},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, negMemSize, 8, Features{})
			_, err := p.drv.Add([]Buffer{{Addr: bufArea, Len: 4, Writable: true}})
			require.NoError(t, err)
			_, err = p.drv.Publish()
			require.NoError(t, err)
			require.NoError(t, p.mem.WriteU16(p.l.Used+offIdx, tc.idx))
			_, ok, err := p.drv.PopUsed()
			assert.False(t, ok)
			var re *RingError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, RuleUsedIdxJump, re.Rule)
			require.NoError(t, p.mem.WriteU16(p.l.Used+offIdx, 0))
			_, _, err2 := p.drv.PopUsed()
			assert.True(t, errors.Is(err2, err), "sticky")
		})
	}
}
