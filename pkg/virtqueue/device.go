package virtqueue

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// Segment is one validated buffer of a popped chain.
type Segment struct {
	Addr uint64 // guest address; [Addr, Addr+Len) lies inside guest memory
	Len  uint32
}

// Chain is one descriptor chain popped by the device, already walked and validated. Its
// segments are copies of the descriptors taken at Pop time, so later changes to the
// descriptor table by the driver cannot redirect the device (no time-of-check to
// time-of-use gap); only the buffer contents live in guest memory. The segments are the
// queue's storage for the head, valid until the chain is returned with PushUsed (the
// next Pop of the same head reuses them), so a Pop allocates nothing once warm.
type Chain struct {
	Head     uint16    // head descriptor index, to pass to PushUsed
	Readable []Segment // device-readable buffers, in chain order
	Writable []Segment // device-writable buffers, in chain order

	mem *GuestMemory
}

// ReadableLen returns the total bytes of the readable segments.
func (c *Chain) ReadableLen() uint64 { return segLen(c.Readable) }

// WritableLen returns the total bytes of the writable segments.
func (c *Chain) WritableLen() uint64 { return segLen(c.Writable) }

func segLen(s []Segment) uint64 {
	var n uint64
	for _, g := range s {
		n += uint64(g.Len)
	}
	return n
}

// Gather copies the readable bytes, in chain order, into dst and returns how many it
// copied: min(len(dst), ReadableLen()).
func (c *Chain) Gather(dst []byte) (int, error) {
	n := 0
	for _, g := range c.Readable {
		if n == len(dst) {
			break
		}
		k := min(uint64(g.Len), uint64(len(dst)-n))
		if err := c.mem.ReadAt(dst[n:n+int(k)], g.Addr); err != nil {
			return n, err
		}
		n += int(k)
	}
	return n, nil
}

// Scatter copies src into the writable segments in chain order and returns how many
// bytes it wrote. If src is longer than WritableLen(), it writes the part that fits and
// returns io.ErrShortWrite; it never writes outside the writable segments.
func (c *Chain) Scatter(src []byte) (int, error) {
	n := 0
	for _, g := range c.Writable {
		if n == len(src) {
			break
		}
		k := min(uint64(g.Len), uint64(len(src)-n))
		if err := c.mem.WriteAt(src[n:n+int(k)], g.Addr); err != nil {
			return n, err
		}
		n += int(k)
	}
	if n < len(src) {
		return n, io.ErrShortWrite
	}
	return n, nil
}

// Views returns the first r bytes of the chain's first readable segment and the first w
// bytes of its first writable segment as views of guest memory (GuestMemory.Slice), for a
// device that answers a fixed-size request in place. It reports false, and the caller
// copies with Gather and Scatter instead, unless both segments are that long and the two
// ranges do not overlap: a driver may lay out its buffers as it likes (VirtIO 1.2
// §2.7.4), and a device reading a request it is overwriting would answer garbage.
func (c *Chain) Views(r, w uint64) (readable, writable []byte, ok bool) {
	if len(c.Readable) == 0 || len(c.Writable) == 0 {
		return nil, nil, false
	}
	rs, ws := c.Readable[0], c.Writable[0]
	if uint64(rs.Len) < r || uint64(ws.Len) < w || (rs.Addr < ws.Addr+w && ws.Addr < rs.Addr+r) {
		return nil, nil, false
	}
	readable, err := c.mem.Slice(rs.Addr, r)
	if err != nil {
		return nil, nil, false
	}
	writable, err = c.mem.Slice(ws.Addr, w)
	if err != nil {
		return nil, nil, false
	}
	return readable, writable, true
}

// DeviceQueue is the device side of one split virtqueue: it pops available chains, validating
// every descriptor, returns them through the used ring, and decides whether the driver
// must be interrupted. It keeps its own copy of which heads it holds, so it can refuse a
// head the driver offers twice and a PushUsed of a head it never popped.
//
// A DeviceQueue is safe for concurrent use (e.g. Pop on one goroutine, PushUsed on workers).
type DeviceQueue struct {
	mu  sync.Mutex
	mem *GuestMemory
	l   Layout
	f   Features

	lastAvail uint16      // next available ring index to read
	usedIdx   uint16      // next used ring index to fill (mirrors used.idx)
	signalled uint16      // used idx at the last NeedsInterrupt
	held      []bool      // per head: popped and not yet pushed
	writeCap  []uint64    // per head: writable bytes of the held chain
	segs      [][]Segment // per head: the held chain's segments (storage reused by the next Pop of the head)
	notifyOff bool        // DisableNotifications in force
	broken    error       // sticky *RingError
	steps     uint64      // descriptors read, for tests of bounded work
}

// NewDeviceQueue returns the device side of the queue at l in mem, which the driver has
// initialised. Both indices start at 0 (§2.7.6, §2.7.8).
func NewDeviceQueue(mem *GuestMemory, l Layout, f Features) (*DeviceQueue, error) {
	if err := l.Validate(mem); err != nil {
		return nil, err
	}
	return &DeviceQueue{
		mem: mem, l: l, f: f,
		held:     make([]bool, l.Size),
		writeCap: make([]uint64, l.Size),
		segs:     make([][]Segment, l.Size),
	}, nil
}

// Layout returns the queue layout.
func (d *DeviceQueue) Layout() Layout { return d.l }

// Pop returns the next available chain, walked and validated. ok is false when the ring
// is empty. A *ChainError means one bad chain: its ring entry is consumed, and if
// Returnable the caller should PushUsed(err.Head, 0). A *RingError (the available idx
// jumped) is sticky.
func (d *DeviceQueue) Pop() (c Chain, ok bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return Chain{}, false, d.broken
	}
	availIdx, err := d.mem.ReadU16(d.l.Avail + offIdx)
	if err != nil {
		return Chain{}, false, err
	}
	if availIdx == d.lastAvail {
		return Chain{}, false, nil
	}
	// §2.7.6.1, §2.7.13: at most Queue Size entries can be outstanding; anything more
	// means the driver moved idx backwards or wildly forwards.
	if availIdx-d.lastAvail > d.l.Size {
		d.broken = &RingError{Rule: RuleAvailIdxJump, Idx: availIdx, Last: d.lastAvail, Capacity: d.l.Size}
		return Chain{}, false, d.broken
	}
	// The atomic load of idx above acquired the driver's writes of this ring entry and
	// of the descriptors and buffers it names (§2.7.13.3); walk reads them plainly.
	head, err := d.mem.ReadU16(d.l.availRing(d.lastAvail))
	if err != nil {
		return Chain{}, false, err
	}
	d.lastAvail++
	if d.f.EventIdx && !d.notifyOff {
		// Ask to be notified when the driver fills the next entry (§2.7.10.2).
		if err := d.mem.WriteU16(d.l.availEvent(), d.lastAvail); err != nil {
			return Chain{}, false, err
		}
	}
	c, writable, err := d.walk(head)
	if err != nil {
		if ce, isChain := err.(*ChainError); isChain && ce.Returnable() {
			d.held[head] = true
			d.writeCap[head] = 0
		}
		return Chain{}, false, err
	}
	d.held[head] = true
	d.writeCap[head] = writable
	return c, true, nil
}

// walk follows the chain at head through the descriptor table and at most one indirect
// table, checking every rule. It reads at most Size+1 descriptors, so a loop ends in
// RuleChainLength rather than a hang.
func (d *DeviceQueue) walk(head uint16) (Chain, uint64, error) {
	fail := func(idx uint16, indirect bool, r Rule, format string, a ...any) (Chain, uint64, error) {
		return Chain{}, 0, &ChainError{Head: head, Index: idx, Indirect: indirect, Rule: r, Detail: fmt.Sprintf(format, a...)}
	}
	// §2.7.5: the descriptor table has Queue Size entries.
	if head >= d.l.Size {
		return fail(head, false, RuleHeadRange, "head %d, queue size %d", head, d.l.Size)
	}
	// §2.7.13.1: a chain is placed in free descriptors; the device still holds this one.
	if d.held[head] {
		return fail(head, false, RuleHeadInFlight, "head %d not yet returned", head)
	}
	c := Chain{Head: head, mem: d.mem}
	segs, readable := d.segs[head][:0], 0 // readable: how many of segs come first, device-readable
	defer func() { d.segs[head] = segs }()
	table, tableLen := d.l.Desc, uint32(d.l.Size)
	idx, indirect := head, false
	var count uint32 // buffer descriptors so far
	var total, writable uint64
	var raw [DescSize]byte
	for {
		// §2.7.5, §2.7.5.3: next must index into the current table.
		if uint32(idx) >= tableLen {
			return fail(idx, indirect, RuleNextRange, "index %d, table of %d", idx, tableLen)
		}
		if err := d.mem.ReadAt(raw[:], table+DescSize*uint64(idx)); err != nil {
			return Chain{}, 0, err // cannot happen: the table was range-checked
		}
		d.steps++
		ds := decodeDesc(&raw)
		if ds.flags&DescFIndirect != 0 {
			// §2.7.5.3.1: only with VIRTIO_F_INDIRECT_DESC.
			if !d.f.IndirectDesc {
				return fail(idx, indirect, RuleIndirectNotNegotiated, "flags %#x", ds.flags)
			}
			// §2.7.5.3.1: no indirect descriptor inside an indirect table.
			if indirect {
				return fail(idx, indirect, RuleIndirectNested, "flags %#x", ds.flags)
			}
			// §2.7.5.3.1: not both INDIRECT and NEXT (so the indirect one ends the
			// direct chain, §2.7.5.3.2).
			if ds.flags&DescFNext != 0 {
				return fail(idx, indirect, RuleIndirectNext, "flags %#x", ds.flags)
			}
			// §2.7.5.3: the table is desc[len/16].
			if ds.len == 0 || ds.len%DescSize != 0 {
				return fail(idx, indirect, RuleIndirectLen, "len %d", ds.len)
			}
			// §2.7.5.3: the table is guest memory.
			if !d.mem.InRange(ds.addr, uint64(ds.len)) {
				return fail(idx, indirect, RuleIndirectRange, "table [%#x, +%#x)", ds.addr, ds.len)
			}
			// §2.7.5.3.2: the WRITE flag of this descriptor is ignored.
			table, tableLen = ds.addr, ds.len/DescSize
			idx, indirect = 0, true
			continue
		}
		count++
		// §2.7.5.2, §2.7.5.3.1: no chain longer than the queue size, hence no loop.
		if count > uint32(d.l.Size) {
			return fail(idx, indirect, RuleChainLength, "more than %d descriptors", d.l.Size)
		}
		// §2.7.5: addr/len name guest memory.
		if !d.mem.InRange(ds.addr, uint64(ds.len)) {
			return fail(idx, indirect, RuleBufferRange, "buffer [%#x, +%#x) in %#x bytes", ds.addr, ds.len, d.mem.Size())
		}
		// §2.7.5.2: at most 2^32 bytes in total.
		total += uint64(ds.len)
		if total > MaxChainBytes {
			return fail(idx, indirect, RuleTotalLen, "total %d bytes", total)
		}
		segs = append(segs, Segment{Addr: ds.addr, Len: ds.len})
		if ds.flags&DescFWrite != 0 {
			writable += uint64(ds.len)
		} else {
			// §2.7.4.2: readable buffers come before writable ones.
			if readable < len(segs)-1 {
				return fail(idx, indirect, RuleReadAfterWrite, "readable after %d writable", len(segs)-1-readable)
			}
			readable++
		}
		if ds.flags&DescFNext == 0 {
			if readable > 0 {
				c.Readable = segs[:readable:readable]
			}
			if readable < len(segs) {
				c.Writable = segs[readable:len(segs):len(segs)]
			}
			return c, writable, nil
		}
		idx = ds.next
	}
}

// PushUsed returns the chain at head to the driver with written bytes in its writable
// buffers (§2.7.8): it writes the used element, then the used idx (§2.7.8.2: len before
// idx). The head must be one the device holds and written at most its writable bytes.
func (d *DeviceQueue) PushUsed(head uint16, written uint32) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if head >= d.l.Size {
		return &PushError{Head: head, Written: written, Rule: RuleHeadRange}
	}
	if !d.held[head] {
		return &PushError{Head: head, Written: written, Rule: RuleUsedNotInFlight}
	}
	if uint64(written) > d.writeCap[head] {
		return &PushError{Head: head, Written: written, Rule: RuleUsedLen}
	}
	var elem [UsedElemSize]byte
	binary.LittleEndian.PutUint32(elem[0:], uint32(head))
	binary.LittleEndian.PutUint32(elem[4:], written)
	if err := d.mem.WriteAt(elem[:], d.l.usedRing(d.usedIdx)); err != nil {
		return err
	}
	// The atomic store of idx releases the element and the Scatter writes before it to
	// the driver's atomic load of used idx (§2.7.8.2, §2.7.13.3 for the used ring).
	if err := d.mem.WriteU16(d.l.Used+offIdx, d.usedIdx+1); err != nil {
		return err
	}
	d.usedIdx++
	d.held[head] = false
	return nil
}

// NeedsInterrupt reports whether the driver must get a used buffer notification for the
// chains pushed since the last call (§2.7.7.2): with EVENT_IDX when the used idx passed
// used_event (vring_need_event, wrap-safe), otherwise unless the driver set
// VIRTQ_AVAIL_F_NO_INTERRUPT. It is false when nothing was pushed since the last call.
func (d *DeviceQueue) NeedsInterrupt() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, newIdx := d.signalled, d.usedIdx
	d.signalled = newIdx
	if old == newIdx {
		return false
	}
	// PushUsed's atomic store of used idx cannot pass this atomic load (both are
	// sequentially consistent): the full barrier before reading the suppression field
	// (§2.7.7.2, as §2.7.13.4 for the driver).
	if d.f.EventIdx {
		event, err := d.mem.ReadU16(d.l.usedEvent())
		return err != nil || needEvent(event, newIdx, old)
	}
	flags, err := d.mem.ReadU16(d.l.Avail + offFlags)
	return err != nil || flags&AvailFNoInterrupt == 0
}

// DisableNotifications advises the driver not to notify the device of new available
// chains (§2.7.10.2), for a device that is busy draining the ring: VIRTQ_USED_F_NO_NOTIFY,
// or with EVENT_IDX simply no longer advancing avail_event, so the driver notifies at
// most once more. Advisory only: spurious notifications still come.
func (d *DeviceQueue) DisableNotifications() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notifyOff = true
	if d.f.EventIdx {
		return nil
	}
	return d.mem.WriteU16(d.l.Used+offFlags, UsedFNoNotify)
}

// EnableNotifications asks the driver to notify on the next available chain
// (§2.7.10.2), then re-reads the available idx and reports whether chains are already
// pending, so the caller does not sleep on a notification the driver skipped.
func (d *DeviceQueue) EnableNotifications() (pending bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.notifyOff = false
	if d.f.EventIdx {
		err = d.mem.WriteU16(d.l.availEvent(), d.lastAvail)
	} else {
		err = d.mem.WriteU16(d.l.Used+offFlags, 0)
	}
	if err != nil {
		return false, err
	}
	availIdx, err := d.mem.ReadU16(d.l.Avail + offIdx)
	if err != nil {
		return false, err
	}
	return availIdx != d.lastAvail, nil
}
