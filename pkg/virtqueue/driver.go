package virtqueue

import (
	"encoding/binary"
	"sync"
)

// desc is one decoded struct virtq_desc (§2.7.5).
type desc struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func (d desc) encode() [DescSize]byte {
	var b [DescSize]byte
	binary.LittleEndian.PutUint64(b[0:], d.addr)
	binary.LittleEndian.PutUint32(b[8:], d.len)
	binary.LittleEndian.PutUint16(b[12:], d.flags)
	binary.LittleEndian.PutUint16(b[14:], d.next)
	return b
}

func decodeDesc(b *[DescSize]byte) desc {
	return desc{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// Buffer is one element of a chain given to Driver.Add.
type Buffer struct {
	Addr     uint64 // guest address
	Len      uint32 // bytes
	Writable bool   // device-writable (VIRTQ_DESC_F_WRITE); otherwise device-readable
}

// UsedElem is one chain the device returned: its head and the bytes it wrote.
type UsedElem struct {
	ID  uint16 // head descriptor index, as returned by Add
	Len uint32 // bytes the device wrote into the chain's writable buffers
}

// head states kept by the Driver.
const (
	headFree      = iota // not the head of a chain
	headAdded            // chain placed in the ring, idx not yet published
	headPublished        // visible to the device, not yet returned
)

// Driver is the driver side of one split virtqueue: it places chains in the descriptor
// table and the available ring, publishes them, decides whether to notify the device, and
// collects used chains. Its bookkeeping (free descriptors, chain links) is private, so a
// misbehaving device cannot corrupt it; everything the device writes is validated.
//
// A Driver is safe for concurrent use by several goroutines.
type Driver struct {
	mu  sync.Mutex
	mem *GuestMemory
	l   Layout
	f   Features

	free     []uint16 // stack of free descriptor indices
	link     []uint16 // link[i]: next descriptor of the chain through i (private copy)
	chainLen []uint16 // per head: number of descriptors
	writeCap []uint64 // per head: total device-writable bytes
	state    []uint8  // per head: headFree, headAdded or headPublished
	added    []uint16 // heads added since the last Publish
	inFlight int      // chains published and not yet returned

	availIdx  uint16 // next available ring index to fill
	published uint16 // available idx last written to the ring
	lastUsed  uint16 // next used ring index to read
	intrOff   bool   // DisableInterrupts in force
	broken    error  // sticky *RingError
}

// NewDriver takes over the queue at l in mem: it checks the layout, zeroes the three
// parts (so both ring flags and indices start at 0, §2.7.10.1) and returns a Driver.
func NewDriver(mem *GuestMemory, l Layout, f Features) (*Driver, error) {
	if err := l.Validate(mem); err != nil {
		return nil, err
	}
	for _, p := range [][2]uint64{{l.Desc, DescBytes(l.Size)}, {l.Avail, AvailBytes(l.Size)}, {l.Used, UsedBytes(l.Size)}} {
		if err := mem.Zero(p[0], p[1]); err != nil {
			return nil, err
		}
	}
	n := int(l.Size)
	d := &Driver{
		mem: mem, l: l, f: f,
		free:     make([]uint16, n),
		link:     make([]uint16, n),
		chainLen: make([]uint16, n),
		writeCap: make([]uint64, n),
		state:    make([]uint8, n),
	}
	for i := range d.free {
		d.free[i] = uint16(n - 1 - i) // pop order 0, 1, 2, …
	}
	return d, nil
}

// Layout returns the queue layout.
func (d *Driver) Layout() Layout { return d.l }

// NumFree returns the number of free descriptors.
func (d *Driver) NumFree() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.free)
}

// Add places a chain of device-readable then device-writable buffers in the descriptor
// table and its head in the next available ring slot (§2.7.13.1, §2.7.13.2). The chain
// is not visible to the device until Publish. When fewer than len(bufs) descriptors are
// free, Add returns a *NoSpaceError (errors.Is(err, ErrNoSpace)) and changes nothing;
// the caller can wait for PopUsed to free some.
func (d *Driver) Add(bufs []Buffer) (head uint16, err error) {
	if len(bufs) == 0 {
		return 0, &BufferError{Rule: RuleEmptyChain}
	}
	if len(bufs) > int(d.l.Size) {
		return 0, &BufferError{Rule: RuleChainLength}
	}
	var total, writable uint64
	seenWrite := false
	for i, b := range bufs {
		if !d.mem.InRange(b.Addr, uint64(b.Len)) {
			return 0, &BufferError{Index: i, Rule: RuleBufferRange, Buf: b}
		}
		if !b.Writable && seenWrite {
			return 0, &BufferError{Index: i, Rule: RuleReadAfterWrite, Buf: b}
		}
		seenWrite = seenWrite || b.Writable
		total += uint64(b.Len)
		if b.Writable {
			writable += uint64(b.Len)
		}
		if total > MaxChainBytes {
			return 0, &BufferError{Index: i, Rule: RuleTotalLen, Buf: b}
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if len(bufs) > len(d.free) {
		return 0, &NoSpaceError{Need: len(bufs), Free: len(d.free)}
	}
	// The chain takes the top len(bufs) entries of the free stack, top first.
	top := len(d.free) - 1
	for i, b := range bufs {
		cur := d.free[top-i]
		var flags, next uint16
		if b.Writable {
			flags |= DescFWrite
		}
		if i+1 < len(bufs) {
			flags |= DescFNext
			next = d.free[top-i-1]
			d.link[cur] = next
		}
		enc := desc{addr: b.Addr, len: b.Len, flags: flags, next: next}.encode()
		if err := d.mem.WriteAt(enc[:], d.l.descAddr(cur)); err != nil {
			return 0, err
		}
	}
	head = d.free[top]
	if err := d.mem.WriteU16(d.l.availRing(d.availIdx), head); err != nil {
		return 0, err
	}
	d.free = d.free[:len(d.free)-len(bufs)]
	d.availIdx++
	d.chainLen[head] = uint16(len(bufs))
	d.writeCap[head] = writable
	d.state[head] = headAdded
	d.added = append(d.added, head)
	return head, nil
}

// Publish makes every chain added since the last Publish visible to the device by
// writing the available idx (§2.7.13.3), then reports whether the device must be notified
// (§2.7.13.4): with EVENT_IDX when the new idx passed avail_event (vring_need_event),
// otherwise unless the device set VIRTQ_USED_F_NO_NOTIFY (§2.7.10).
func (d *Driver) Publish() (notify bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	old, newIdx := d.published, d.availIdx
	if old == newIdx {
		return false, nil
	}
	// This atomic store releases the plain descriptor writes and the ring entries
	// before it to the device's atomic load of idx: the write barrier of §2.7.13.3.
	if err := d.mem.WriteU16(d.l.Avail+offIdx, newIdx); err != nil {
		return false, err
	}
	d.published = newIdx
	for _, h := range d.added {
		d.state[h] = headPublished
	}
	d.inFlight += len(d.added)
	d.added = d.added[:0]
	// The idx store and this load are both sequentially consistent atomics, so the load
	// cannot pass the store: the full barrier of §2.7.13.4, pairing with the device's
	// store of avail_event (or flags) before it re-reads idx in EnableNotifications.
	if d.f.EventIdx {
		event, err := d.mem.ReadU16(d.l.availEvent())
		if err != nil {
			return true, err
		}
		return needEvent(event, newIdx, old), nil
	}
	flags, err := d.mem.ReadU16(d.l.Used + offFlags)
	if err != nil {
		return true, err
	}
	return flags&UsedFNoNotify == 0, nil
}

// PopUsed returns the next chain the device put in the used ring, if any, and frees its
// descriptors. What the device wrote is checked: the used idx may not run ahead of the
// chains in flight (a sticky *RingError), the id must be the head of a chain in flight
// and len must not exceed the chain's writable bytes (a *UsedError; see its Freed field).
func (d *Driver) PopUsed() (UsedElem, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.broken != nil {
		return UsedElem{}, false, d.broken
	}
	usedIdx, err := d.mem.ReadU16(d.l.Used + offIdx)
	if err != nil {
		return UsedElem{}, false, err
	}
	if usedIdx == d.lastUsed {
		return UsedElem{}, false, nil
	}
	if int(usedIdx-d.lastUsed) > d.inFlight {
		d.broken = &RingError{Rule: RuleUsedIdxJump, Idx: usedIdx, Last: d.lastUsed, Capacity: uint16(d.inFlight)}
		return UsedElem{}, false, d.broken
	}
	// The atomic load of used idx above acquired the device's plain writes of this
	// element and of the buffers (§2.7.8.2: the device writes len before idx).
	var elem [UsedElemSize]byte
	if err := d.mem.ReadAt(elem[:], d.l.usedRing(d.lastUsed)); err != nil {
		return UsedElem{}, false, err
	}
	id := binary.LittleEndian.Uint32(elem[0:])
	n := binary.LittleEndian.Uint32(elem[4:])
	pos := d.lastUsed
	d.lastUsed++
	if d.f.EventIdx && !d.intrOff {
		// Ask to be interrupted when the device uses the next entry (§2.7.7.1).
		if err := d.mem.WriteU16(d.l.usedEvent(), d.lastUsed); err != nil {
			return UsedElem{}, false, err
		}
	}
	if id >= uint32(d.l.Size) {
		return UsedElem{}, false, &UsedError{Pos: pos, ID: id, Len: n, Rule: RuleUsedIDRange}
	}
	head := uint16(id)
	if d.state[head] != headPublished {
		return UsedElem{}, false, &UsedError{Pos: pos, ID: id, Len: n, Rule: RuleUsedNotInFlight}
	}
	d.freeChain(head)
	if uint64(n) > d.writeCap[head] {
		return UsedElem{}, false, &UsedError{Pos: pos, ID: id, Len: n, Rule: RuleUsedLen, Freed: true}
	}
	return UsedElem{ID: head, Len: n}, true, nil
}

// freeChain returns the descriptors of the chain at head to the free stack, following the
// driver's private links.
func (d *Driver) freeChain(head uint16) {
	i := head
	for k := uint16(0); k < d.chainLen[head]; k++ {
		d.free = append(d.free, i)
		i = d.link[i]
	}
	d.chainLen[head] = 0
	d.state[head] = headFree
	d.inFlight--
}

// DisableInterrupts advises the device that used buffer notifications are not needed
// (§2.7.7.1): VIRTQ_AVAIL_F_NO_INTERRUPT, or with EVENT_IDX a used_event the device cannot
// reach before the driver pops again. Advisory only: spurious notifications still come.
func (d *Driver) DisableInterrupts() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.intrOff = true
	if d.f.EventIdx {
		// used idx can run at most Size ≤ 32768 ahead of lastUsed, so lastUsed+0x8000
		// is never in [old, new) for the device's vring_need_event.
		return d.mem.WriteU16(d.l.usedEvent(), d.lastUsed+0x8000)
	}
	return d.mem.WriteU16(d.l.Avail+offFlags, AvailFNoInterrupt)
}

// EnableInterrupts asks for a used buffer notification on the next used entry
// (§2.7.7.1), then re-reads the used idx and reports whether entries are already pending,
// so the caller does not sleep on a notification that was suppressed (§2.7.14 note).
func (d *Driver) EnableInterrupts() (pending bool, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.intrOff = false
	if d.f.EventIdx {
		err = d.mem.WriteU16(d.l.usedEvent(), d.lastUsed)
	} else {
		err = d.mem.WriteU16(d.l.Avail+offFlags, 0)
	}
	if err != nil {
		return false, err
	}
	usedIdx, err := d.mem.ReadU16(d.l.Used + offIdx)
	if err != nil {
		return false, err
	}
	return usedIdx != d.lastUsed, nil
}
