package virtqueue

import (
	"encoding/binary"
	"errors"
	"testing"
)

// fuzzMemSize is the arena of the fuzz tests: small, so random addresses often land in
// it and chains overlap the rings.
const fuzzMemSize = 4096

// fuzzQueueSizes are the queue sizes the first input byte picks from.
var fuzzQueueSizes = []uint16{1, 2, 4, 8, 16, 32}

// seedRing builds a well-formed starting point: a queue of size 8 at 0 with two chains
// (one direct, one through an indirect table) published.
func seedRing() []byte {
	mem := NewGuestMemory(fuzzMemSize)
	l, _ := NewLayout(0, 8)
	put := func(table uint64, i uint16, addr uint64, n uint32, flags, next uint16) {
		enc := desc{addr: addr, len: n, flags: flags, next: next}.encode()
		_ = mem.WriteAt(enc[:], table+DescSize*uint64(i))
	}
	put(l.Desc, 0, 0x800, 16, DescFNext, 1)
	put(l.Desc, 1, 0x900, 32, DescFWrite, 0)
	put(l.Desc, 2, 0xA00, 48, DescFIndirect, 0)
	put(0xA00, 0, 0xB00, 8, DescFNext, 2)
	put(0xA00, 2, 0xC00, 8, DescFWrite|DescFNext, 1)
	put(0xA00, 1, 0xD00, 8, DescFWrite, 0)
	_ = mem.WriteU16(l.availRing(0), 0)
	_ = mem.WriteU16(l.availRing(1), 2)
	_ = mem.WriteU16(l.Avail+offIdx, 2)
	b := make([]byte, 0xA40) // rings, buffers and the indirect table
	_ = mem.ReadAt(b, 0)
	return b
}

// FuzzDevicePop feeds arbitrary bytes as the whole ring area, descriptor tables and
// buffers, plus arbitrary starting indices, to the device side. It must never panic,
// must do bounded work per Pop, and must write nothing but the used ring and the
// writable segments of the chains it accepted.
func FuzzDevicePop(f *testing.F) {
	f.Add(byte(3), byte(3), uint16(0), uint16(0), seedRing())
	f.Add(byte(3), byte(0), uint16(0xfffe), uint16(0xfffe), seedRing())
	f.Add(byte(0), byte(1), uint16(5), uint16(9), []byte{})
	f.Add(byte(5), byte(2), uint16(0), uint16(0), []byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, sizeSel, flags byte, lastAvail, usedIdx uint16, ring []byte) {
		size := fuzzQueueSizes[int(sizeSel)%len(fuzzQueueSizes)]
		feat := Features{EventIdx: flags&1 != 0, IndirectDesc: flags&2 != 0}
		mem := NewGuestMemory(fuzzMemSize)
		if len(ring) > fuzzMemSize {
			ring = ring[:fuzzMemSize]
		}
		if err := mem.WriteAt(ring, 0); err != nil {
			t.Fatal(err)
		}
		l, err := NewLayout(0, size)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := NewDeviceQueue(mem, l, feat)
		if err != nil {
			t.Fatal(err)
		}
		dev.lastAvail, dev.usedIdx, dev.signalled = lastAvail, usedIdx, usedIdx
		before := make([]byte, fuzzMemSize)
		if err := mem.ReadAt(before, 0); err != nil {
			t.Fatal(err)
		}

		// Bytes the device may write: its own used ring, and writable segments it accepted.
		allowed := make([]bool, fuzzMemSize)
		for a := l.Used; a < l.Used+UsedBytes(size); a++ {
			allowed[a] = true
		}
		pattern := make([]byte, fuzzMemSize)
		for i := range pattern {
			pattern[i] = byte(i*7 + 1)
		}
		gather := make([]byte, fuzzMemSize)

		maxPops := 2*int(size) + 4
		for i := 0; i < maxPops; i++ {
			if flags&4 != 0 && i%3 == 0 {
				_ = dev.DisableNotifications()
			} else if flags&8 != 0 && i%5 == 0 {
				_, _ = dev.EnableNotifications()
			}
			stepsBefore := dev.steps
			c, ok, err := dev.Pop()
			if steps := dev.steps - stepsBefore; steps > uint64(size)+2 {
				t.Fatalf("pop read %d descriptors with queue size %d", steps, size)
			}
			var ce *ChainError
			var re *RingError
			switch {
			case errors.As(err, &re):
				return
			case errors.As(err, &ce):
				if ce.Returnable() {
					if perr := dev.PushUsed(ce.Head, 0); perr != nil {
						t.Fatalf("returnable head %d: %v", ce.Head, perr)
					}
				}
				continue
			case err != nil:
				t.Fatalf("unexpected error type %T: %v", err, err)
			case !ok:
				return
			}
			if c.ReadableLen()+c.WritableLen() > MaxChainBytes {
				t.Fatalf("accepted a chain of %d bytes", c.ReadableLen()+c.WritableLen())
			}
			for _, s := range append(append([]Segment{}, c.Readable...), c.Writable...) {
				if !mem.InRange(s.Addr, uint64(s.Len)) {
					t.Fatalf("accepted segment %+v outside memory", s)
				}
			}
			for _, s := range c.Writable {
				for a := s.Addr; a < s.Addr+uint64(s.Len); a++ {
					allowed[a] = true
				}
			}
			if _, err := c.Gather(gather[:min(uint64(len(gather)), c.ReadableLen())]); err != nil {
				t.Fatal(err)
			}
			w := min(c.WritableLen(), uint64(len(pattern)))
			n, err := c.Scatter(pattern[:w])
			if err != nil || uint64(n) != w {
				t.Fatalf("scatter %d of %d: %v", n, w, err)
			}
			if err := dev.PushUsed(c.Head, uint32(n)); err != nil {
				t.Fatal(err)
			}
			dev.NeedsInterrupt()
		}

		after := make([]byte, fuzzMemSize)
		if err := mem.ReadAt(after, 0); err != nil {
			t.Fatal(err)
		}
		for a := range after {
			if !allowed[a] && after[a] != before[a] {
				t.Fatalf("device wrote %#x at %#x, outside the used ring and writable segments", after[a], a)
			}
		}
	})
}

// FuzzDriverPopUsed feeds arbitrary bytes as the used ring to a driver with chains in
// flight. It must never panic, never hand back a chain twice, and keep its descriptor
// accounting exact: free descriptors plus those of chains in flight make the queue size.
func FuzzDriverPopUsed(f *testing.F) {
	good := make([]byte, UsedBytes(8))
	binary.LittleEndian.PutUint16(good[offIdx:], 2)
	binary.LittleEndian.PutUint32(good[offRing:], 0)
	binary.LittleEndian.PutUint32(good[offRing+4:], 4)
	binary.LittleEndian.PutUint32(good[offRing+8:], 2)
	binary.LittleEndian.PutUint32(good[offRing+12:], 0)
	f.Add(byte(3), good)
	f.Add(byte(0), []byte{0, 0, 0xff, 0xff})
	f.Add(byte(7), []byte{0, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, chains byte, used []byte) {
		const q = 8
		mem := NewGuestMemory(fuzzMemSize)
		l, err := mem.AllocQueue(q)
		if err != nil {
			t.Fatal(err)
		}
		drv, err := NewDriver(mem, l, Features{EventIdx: chains&0x80 != 0})
		if err != nil {
			t.Fatal(err)
		}
		// Chains of two descriptors (4 readable, 4 writable bytes); the last is added but
		// not published.
		n := int(chains%4) + 1 // at most 4 chains of 2 descriptors fill the queue
		for i := 0; i < n; i++ {
			if _, err := drv.Add([]Buffer{{Addr: 0x800, Len: 4}, {Addr: 0x900, Len: 4, Writable: true}}); err != nil {
				t.Fatal(err)
			}
			if i < n-1 {
				if _, err := drv.Publish(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if uint64(len(used)) > UsedBytes(q) {
			used = used[:UsedBytes(q)]
		}
		if err := mem.WriteAt(used, l.Used); err != nil {
			t.Fatal(err)
		}
		returned := map[uint16]bool{}
	pop:
		for i := 0; i < 2*q+2; i++ {
			e, ok, err := drv.PopUsed()
			var ue *UsedError
			var re *RingError
			switch {
			case errors.As(err, &re):
				break pop
			case errors.As(err, &ue):
				if ue.Freed {
					returned[uint16(ue.ID)] = true
				}
			case err != nil:
				t.Fatalf("unexpected error type %T: %v", err, err)
			case ok:
				if e.Len > 4 {
					t.Fatalf("accepted len %d > 4 writable bytes", e.Len)
				}
				if returned[e.ID] {
					t.Fatalf("chain %d returned twice", e.ID)
				}
				returned[e.ID] = true
			}
		}
		if len(returned) > n-1 {
			t.Fatalf("%d chains returned, %d published", len(returned), n-1)
		}
		checkAccounting(t, drv)
	})
}

// checkAccounting asserts that every descriptor is either free (once) or in one chain.
func checkAccounting(t *testing.T, d *Driver) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	seen := make([]bool, d.l.Size)
	for _, i := range d.free {
		if seen[i] {
			t.Fatalf("descriptor %d free twice", i)
		}
		seen[i] = true
	}
	for h, st := range d.state {
		if st == headFree {
			continue
		}
		i := uint16(h)
		for k := uint16(0); k < d.chainLen[h]; k++ {
			if seen[i] {
				t.Fatalf("descriptor %d both free and in chain %d", i, h)
			}
			seen[i] = true
			i = d.link[i]
		}
	}
	for i, s := range seen {
		if !s {
			t.Fatalf("descriptor %d lost", i)
		}
	}
}

// TestFuzzSeedIsValid makes sure the main fuzz seed exercises the accepting path: both of
// its chains pop cleanly.
func TestFuzzSeedIsValid(t *testing.T) {
	mem := NewGuestMemory(fuzzMemSize)
	if err := mem.WriteAt(seedRing(), 0); err != nil {
		t.Fatal(err)
	}
	l, _ := NewLayout(0, 8)
	dev, err := NewDeviceQueue(mem, l, Features{IndirectDesc: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ r, w uint64 }{{16, 32}, {8, 16}}
	for i, w := range want {
		c, ok, err := dev.Pop()
		if err != nil || !ok {
			t.Fatalf("chain %d: ok %v err %v", i, ok, err)
		}
		if c.ReadableLen() != w.r || c.WritableLen() != w.w {
			t.Fatalf("chain %d: %d readable, %d writable bytes", i, c.ReadableLen(), c.WritableLen())
		}
	}
}
