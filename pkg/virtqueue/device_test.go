package virtqueue

import (
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawDesc writes descriptor i of the table at table directly, as a (possibly hostile)
// driver would.
func rawDesc(t testing.TB, mem *GuestMemory, table uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
	t.Helper()
	enc := desc{addr: addr, len: n, flags: flags, next: next}.encode()
	require.NoError(t, mem.WriteAt(enc[:], table+DescSize*uint64(i)))
}

// rawOffer appends heads to the available ring and publishes them by hand.
func rawOffer(t testing.TB, p *pair, heads ...uint16) {
	t.Helper()
	idx, err := p.mem.ReadU16(p.l.Avail + offIdx)
	require.NoError(t, err)
	for _, h := range heads {
		require.NoError(t, p.mem.WriteU16(p.l.availRing(idx), h))
		idx++
	}
	require.NoError(t, p.mem.WriteU16(p.l.Avail+offIdx, idx))
}

// bufArea is where the negative tests point their buffers.
const (
	negMemSize = 1 << 16
	bufArea    = 0x8000
	tableArea  = 0xC000 // indirect tables
)

func TestPopRejectsEveryRule(t *testing.T) {
	const q = 8 // queue size
	w := uint16(DescFWrite)
	n := uint16(DescFNext)
	ind := uint16(DescFIndirect)
	cases := []struct {
		name     string
		f        Features
		setup    func(t *testing.T, p *pair)
		rule     Rule
		index    uint16
		indirect bool
	}{
		{"head out of range", Features{}, func(t *testing.T, p *pair) {
			rawOffer(t, p, q)
		}, RuleHeadRange, q, false},
		{"head out of range 0xffff", Features{}, func(t *testing.T, p *pair) {
			rawOffer(t, p, 0xffff)
		}, RuleHeadRange, 0xffff, false},
		{"next out of range", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, n, q)
			rawOffer(t, p, 0)
		}, RuleNextRange, q, false},
		{"self loop", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 3, bufArea, 4, n, 3)
			rawOffer(t, p, 3)
		}, RuleChainLength, 3, false},
		{"two-descriptor loop", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, n, 1)
			rawDesc(t, p.mem, p.l.Desc, 1, bufArea, 4, n, 0)
			rawOffer(t, p, 0)
		}, RuleChainLength, 0, false}, // 9th descriptor read is index 0 again
		{"buffer past end of memory", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, negMemSize-4, 8, 0, 0)
			rawOffer(t, p, 0)
		}, RuleBufferRange, 0, false},
		{"buffer address overflows", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, n, 1)
			rawDesc(t, p.mem, p.l.Desc, 1, ^uint64(0)-1, 4, w, 0)
			rawOffer(t, p, 0)
		}, RuleBufferRange, 1, false},
		{"readable after writable", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, n, 1)
			rawDesc(t, p.mem, p.l.Desc, 1, bufArea, 4, n|w, 2)
			rawDesc(t, p.mem, p.l.Desc, 2, bufArea, 4, 0, 0)
			rawOffer(t, p, 0)
		}, RuleReadAfterWrite, 2, false},
		{"indirect not negotiated", Features{}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 16, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectNotNegotiated, 0, false},
		{"indirect with next", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 16, ind|n, 1)
			rawOffer(t, p, 0)
		}, RuleIndirectNext, 0, false},
		{"indirect len zero", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 0, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectLen, 0, false},
		{"indirect len not multiple of 16", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 24, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectLen, 0, false},
		{"indirect table outside memory", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, negMemSize-16, 32, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectRange, 0, false},
		{"nested indirect", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 32, ind, 0)
			rawDesc(t, p.mem, tableArea, 0, bufArea, 4, n, 1)
			rawDesc(t, p.mem, tableArea, 1, tableArea, 16, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectNested, 1, true},
		{"next out of indirect table", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 32, ind, 0)
			rawDesc(t, p.mem, tableArea, 0, bufArea, 4, n, 2)
			rawOffer(t, p, 0)
		}, RuleNextRange, 2, true},
		{"loop in indirect table", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 32, ind, 0)
			rawDesc(t, p.mem, tableArea, 0, bufArea, 4, n, 1)
			rawDesc(t, p.mem, tableArea, 1, bufArea, 4, n, 0)
			rawOffer(t, p, 0)
		}, RuleChainLength, 0, true},
		{"indirect chain longer than queue size", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, tableArea, 16*(q+1), ind, 0)
			for i := uint16(0); i < q+1; i++ {
				rawDesc(t, p.mem, tableArea, i, bufArea, 4, n, i+1)
			}
			rawOffer(t, p, 0)
		}, RuleChainLength, q, true},
		{"readable in indirect table after writable direct", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, w|n, 1)
			rawDesc(t, p.mem, p.l.Desc, 1, tableArea, 16, ind, 0)
			rawDesc(t, p.mem, tableArea, 0, bufArea, 4, 0, 0)
			rawOffer(t, p, 0)
		}, RuleReadAfterWrite, 0, true},
		{"indirect table outside memory by overflow", Features{IndirectDesc: true}, func(t *testing.T, p *pair) {
			rawDesc(t, p.mem, p.l.Desc, 0, ^uint64(0)-15, 32, ind, 0)
			rawOffer(t, p, 0)
		}, RuleIndirectRange, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, negMemSize, q, tc.f)
			tc.setup(t, p)
			_, ok, err := p.dev.Pop()
			require.Error(t, err)
			assert.False(t, ok)
			var ce *ChainError
			require.True(t, errors.As(err, &ce), "want *ChainError, got %T %v", err, err)
			assert.Equal(t, tc.rule, ce.Rule, "%v", err)
			assert.Equal(t, tc.index, ce.Index, "%v", err)
			assert.Equal(t, tc.indirect, ce.Indirect, "%v", err)
			assert.NotEmpty(t, ce.Rule.Section())
			assert.Contains(t, err.Error(), "§"+ce.Rule.Section())
			assert.LessOrEqual(t, p.dev.steps, uint64(q+2), "bounded walk")

			// The entry is consumed: the ring is empty now, not stuck on the bad chain.
			_, ok, err = p.dev.Pop()
			require.NoError(t, err)
			assert.False(t, ok)

			// A returnable head goes back with len 0; any other cannot be pushed.
			pushErr := p.dev.PushUsed(ce.Head, 0)
			if ce.Returnable() {
				require.NoError(t, pushErr)
				used, err := p.mem.ReadU16(p.l.Used + offIdx)
				require.NoError(t, err)
				assert.EqualValues(t, 1, used)
			} else {
				require.Error(t, pushErr)
			}
		})
	}
}

func TestPopRejectsHeadInFlight(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 4, 0, 0)
	rawOffer(t, p, 0, 0)
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = p.dev.Pop()
	assert.False(t, ok)
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, RuleHeadInFlight, ce.Rule)
	assert.False(t, ce.Returnable())
	require.NoError(t, p.dev.PushUsed(c.Head, 0), "the first pop still owns the head")
}

func TestPopRejectsAvailIdxJump(t *testing.T) {
	cases := []struct {
		name string
		idx  uint16
	}{
		{"forward by size+1", 9},
		{"backwards by one", 0xffff},
		{"forward by half the index space", 0x8000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, negMemSize, 8, Features{})
			require.NoError(t, p.mem.WriteU16(p.l.Avail+offIdx, tc.idx))
			_, ok, err := p.dev.Pop()
			assert.False(t, ok)
			var re *RingError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, RuleAvailIdxJump, re.Rule)
			assert.Equal(t, tc.idx, re.Idx)
			// Sticky: putting idx back does not revive the queue.
			require.NoError(t, p.mem.WriteU16(p.l.Avail+offIdx, 0))
			_, _, err2 := p.dev.Pop()
			assert.Same(t, err, err2)
		})
	}
	t.Run("exactly size ahead is fine", func(t *testing.T) {
		p := newPair(t, negMemSize, 8, Features{})
		for i := uint16(0); i < 8; i++ {
			rawDesc(t, p.mem, p.l.Desc, i, bufArea, 4, 0, 0)
			rawOffer(t, p, i)
		}
		for i := uint16(0); i < 8; i++ {
			c, ok, err := p.dev.Pop()
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, i, c.Head)
		}
	})
}

// TestPopRejectsTotalLen needs a chain of more than 2^32 bytes whose buffers all lie in
// guest memory: three overlapping 2 GiB buffers in a 2 GiB arena (the pages are never
// touched, so the arena costs address space, not memory).
func TestPopRejectsTotalLen(t *testing.T) {
	if testing.Short() {
		t.Skip("2 GiB arena")
	}
	const half = 1 << 31
	p := newPair(t, half, 8, Features{})
	rawDesc(t, p.mem, p.l.Desc, 0, 0, half, DescFNext, 1)
	rawDesc(t, p.mem, p.l.Desc, 1, 0, half, DescFNext|DescFWrite, 2) // total = 2^32 exactly: allowed
	rawDesc(t, p.mem, p.l.Desc, 2, 0, 1, DescFWrite, 0)              // 2^32 + 1
	rawOffer(t, p, 0)
	_, _, err := p.dev.Pop()
	var ce *ChainError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, RuleTotalLen, ce.Rule)
	assert.EqualValues(t, 2, ce.Index)

	// Exactly 2^32 bytes is legal.
	rawDesc(t, p.mem, p.l.Desc, 4, 0, half, DescFNext, 5)
	rawDesc(t, p.mem, p.l.Desc, 5, 0, half, DescFWrite, 0)
	rawOffer(t, p, 4)
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, uint64(1)<<32, c.ReadableLen()+c.WritableLen())
}

func TestPopIndirect(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{IndirectDesc: true})
	// Direct readable, then an indirect descriptor (its WRITE flag must be ignored,
	// §2.7.5.3.2) to a table: readable, writable, writable, chained out of order.
	rawDesc(t, p.mem, p.l.Desc, 5, bufArea, 3, DescFNext, 2)
	rawDesc(t, p.mem, p.l.Desc, 2, tableArea, 4*DescSize, DescFIndirect|DescFWrite, 7)
	rawDesc(t, p.mem, tableArea, 0, bufArea+0x10, 5, DescFNext, 3)
	rawDesc(t, p.mem, tableArea, 3, bufArea+0x20, 6, DescFNext|DescFWrite, 1)
	rawDesc(t, p.mem, tableArea, 1, bufArea+0x30, 7, DescFWrite, 0)
	rawOffer(t, p, 5)
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	assert.EqualValues(t, 5, c.Head)
	assert.Equal(t, []Segment{{bufArea, 3}, {bufArea + 0x10, 5}}, c.Readable)
	assert.Equal(t, []Segment{{bufArea + 0x20, 6}, {bufArea + 0x30, 7}}, c.Writable)
	require.NoError(t, p.dev.PushUsed(5, 13))
	assert.Error(t, p.dev.PushUsed(5, 0), "already returned")
}

func TestPushUsedRejects(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	rawDesc(t, p.mem, p.l.Desc, 1, bufArea, 4, DescFNext, 2)
	rawDesc(t, p.mem, p.l.Desc, 2, bufArea, 10, DescFWrite, 0)
	rawOffer(t, p, 1)
	_, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	cases := []struct {
		name    string
		head    uint16
		written uint32
		rule    Rule
	}{
		{"head out of range", 8, 0, RuleHeadRange},
		{"head not popped", 0, 0, RuleUsedNotInFlight},
		{"not the head of the chain", 2, 0, RuleUsedNotInFlight},
		{"more than the writable bytes", 1, 11, RuleUsedLen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := p.dev.PushUsed(tc.head, tc.written)
			var pe *PushError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.rule, pe.Rule)
		})
	}
	require.NoError(t, p.dev.PushUsed(1, 10), "exactly the writable bytes")
	var raw [8]byte
	require.NoError(t, p.mem.ReadAt(raw[:], p.l.Used+offRing))
	assert.Equal(t, [8]byte{1, 0, 0, 0, 10, 0, 0, 0}, raw, "used elem {id 1, len 10} little-endian")
}

func TestChainScatterBounded(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 2, DescFNext|DescFWrite, 1)
	rawDesc(t, p.mem, p.l.Desc, 1, bufArea+4, 3, DescFWrite, 0)
	rawOffer(t, p, 0)
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	n, err := c.Scatter([]byte("ABCDEFG"))
	assert.Equal(t, 5, n)
	assert.ErrorIs(t, err, io.ErrShortWrite)
	got := make([]byte, 8)
	require.NoError(t, p.mem.ReadAt(got, bufArea))
	assert.Equal(t, []byte("AB\x00\x00CDE\x00"), got)
	// Gather of a chain without readable part copies nothing.
	k, err := c.Gather(make([]byte, 4))
	require.NoError(t, err)
	assert.Zero(t, k)
}

func TestChainGatherOrder(t *testing.T) {
	p := newPair(t, negMemSize, 8, Features{})
	require.NoError(t, p.mem.WriteAt([]byte("ab"), bufArea+0x40))
	require.NoError(t, p.mem.WriteAt([]byte("cde"), bufArea))
	require.NoError(t, p.mem.WriteAt([]byte("f"), bufArea+0x20))
	rawDesc(t, p.mem, p.l.Desc, 6, bufArea+0x40, 2, DescFNext, 0)
	rawDesc(t, p.mem, p.l.Desc, 0, bufArea, 3, DescFNext, 7)
	rawDesc(t, p.mem, p.l.Desc, 7, bufArea+0x20, 1, 0, 0)
	rawOffer(t, p, 6)
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	short := make([]byte, 4)
	n, err := c.Gather(short)
	require.NoError(t, err)
	assert.Equal(t, "abcd", string(short[:n]))
	long := make([]byte, 10)
	n, err = c.Gather(long)
	require.NoError(t, err)
	assert.Equal(t, "abcdef", string(long[:n]))
	assert.Empty(t, c.Writable)
}

func TestChainViews(t *testing.T) {
	// Each chain is a readable descriptor at rAddr of rLen bytes and a writable one at wAddr
	// of wLen bytes; Views(8, 8) must give views only when both hold 8 bytes apart.
	cases := []struct {
		name         string
		rAddr, wAddr uint64
		rLen, wLen   uint32
		want         bool
	}{
		{"apart", bufArea, bufArea + 0x20, 8, 8, true},
		{"adjacent", bufArea, bufArea + 8, 8, 8, true},
		{"longer segments", bufArea, bufArea + 0x40, 0x20, 0x20, true},
		{"response overlaps the request's end", bufArea, bufArea + 4, 8, 8, false},
		{"request overlaps the response's end", bufArea + 4, bufArea, 8, 8, false},
		{"same buffer", bufArea, bufArea, 8, 8, false},
		{"short request", bufArea, bufArea + 0x20, 7, 8, false},
		{"short response", bufArea, bufArea + 0x20, 8, 7, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, negMemSize, 8, Features{})
			rawDesc(t, p.mem, p.l.Desc, 0, tc.rAddr, tc.rLen, DescFNext, 1)
			rawDesc(t, p.mem, p.l.Desc, 1, tc.wAddr, tc.wLen, DescFWrite, 0)
			rawOffer(t, p, 0)
			c, ok, err := p.dev.Pop()
			require.NoError(t, err)
			require.True(t, ok)
			r, w, ok := c.Views(8, 8)
			require.Equal(t, tc.want, ok)
			if !ok {
				assert.Nil(t, r)
				assert.Nil(t, w)
				return
			}
			require.Len(t, r, 8)
			require.Len(t, w, 8)
			// The views are guest memory: what the driver wrote is in r, what the device
			// writes into w is what the driver reads, and neither reaches past 8 bytes.
			require.NoError(t, p.mem.WriteAt([]byte("request!"), tc.rAddr))
			assert.Equal(t, "request!", string(r))
			copy(w, "answered")
			got := make([]byte, 8)
			require.NoError(t, p.mem.ReadAt(got, tc.wAddr))
			assert.Equal(t, "answered", string(got))
			assert.Equal(t, 8, cap(w), "a view cannot be appended into the next bytes")
		})
	}
}

func TestGuestMemorySliceChecksBounds(t *testing.T) {
	m := NewGuestMemory(64)
	for _, tc := range []struct {
		addr, n uint64
		ok      bool
	}{{0, 64, true}, {60, 4, true}, {64, 0, true}, {61, 4, false}, {65, 0, false}, {1, ^uint64(0), false}} {
		v, err := m.Slice(tc.addr, tc.n)
		if !tc.ok {
			var me *MemoryError
			assert.ErrorAs(t, err, &me, "[%d, +%d)", tc.addr, tc.n)
			assert.Nil(t, v)
			continue
		}
		require.NoError(t, err, "[%d, +%d)", tc.addr, tc.n)
		assert.Len(t, v, int(tc.n))
	}
}

// TestPopReusesSegmentStorage: once every head has been popped, a request's round trip
// (Add, Publish, Pop, PushUsed, PopUsed) allocates nothing, and a chain's segments are
// still the ones it was popped with while the device holds it.
func TestPopReusesSegmentStorage(t *testing.T) {
	const size = 8
	p := newPair(t, negMemSize, size, Features{})
	req, resp := p.alloc(t, 64), p.alloc(t, 64)
	bufs := []Buffer{{Addr: req, Len: 16}, {Addr: resp, Len: 32, Writable: true}}
	roundTrip := func() {
		if _, err := p.drv.Add(bufs); err != nil {
			t.Fatal(err)
		}
		if _, err := p.drv.Publish(); err != nil {
			t.Fatal(err)
		}
		c, ok, err := p.dev.Pop()
		if err != nil || !ok {
			t.Fatalf("Pop: %v %v", ok, err)
		}
		if len(c.Readable) != 1 || c.Readable[0] != (Segment{Addr: req, Len: 16}) ||
			len(c.Writable) != 1 || c.Writable[0] != (Segment{Addr: resp, Len: 32}) {
			t.Fatalf("chain %+v", c)
		}
		if err := p.dev.PushUsed(c.Head, 32); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := p.drv.PopUsed(); err != nil || !ok {
			t.Fatalf("PopUsed: %v %v", ok, err)
		}
	}
	for range 2 * size { // every head once at least
		roundTrip()
	}
	assert.Zero(t, testing.AllocsPerRun(100, roundTrip))
}
