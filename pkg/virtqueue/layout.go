package virtqueue

import "fmt"

// Sizes, alignments and flag values of a split virtqueue (VirtIO 1.2 §2.7, §2.7.5,
// §2.7.6, §2.7.8).
const (
	// MaxQueueSize is the largest queue size allowed (§2.7: "The maximum Queue Size value
	// is 32768").
	MaxQueueSize = 32768

	// DescSize is the size of one struct virtq_desc: addr le64, len le32, flags le16,
	// next le16.
	DescSize = 16
	// UsedElemSize is the size of one struct virtq_used_elem: id le32, len le32.
	UsedElemSize = 8
	// availElemSize is the size of one available ring entry (a le16 head index).
	availElemSize = 2
	// ringHeaderSize is the flags le16 + idx le16 header of both rings.
	ringHeaderSize = 4
	// eventFieldSize is the trailing used_event / avail_event le16.
	eventFieldSize = 2

	// DescAlign, AvailAlign and UsedAlign are the minimum alignments of the descriptor
	// table, available ring and used ring (§2.7 table, §2.7.1).
	DescAlign  = 16
	AvailAlign = 2
	UsedAlign  = 4

	// DescFNext marks a descriptor as continuing via its next field (§2.7.5).
	DescFNext = 1
	// DescFWrite marks a buffer as device write-only (§2.7.5).
	DescFWrite = 2
	// DescFIndirect marks a descriptor that refers to an indirect table (§2.7.5.3).
	DescFIndirect = 4

	// AvailFNoInterrupt in avail.flags asks the device not to send used buffer
	// notifications (§2.7.7); ignored when EVENT_IDX is negotiated.
	AvailFNoInterrupt = 1
	// UsedFNoNotify in used.flags asks the driver not to send available buffer
	// notifications (§2.7.10); ignored when EVENT_IDX is negotiated.
	UsedFNoNotify = 1

	// MaxChainBytes is the largest total length of a descriptor chain (§2.7.5.2:
	// "Drivers MUST NOT add a descriptor chain longer than 2^32 bytes in total").
	MaxChainBytes = 1 << 32
)

// Offsets inside the rings (§2.7.6, §2.7.8).
const (
	offFlags = 0 // flags le16 of both rings
	offIdx   = 2 // idx le16 of both rings
	offRing  = 4 // first ring entry of both rings
)

// Layout says where the three parts of one split virtqueue lie in guest memory.
type Layout struct {
	Size  uint16 // queue size: number of descriptors and of entries in each ring
	Desc  uint64 // descriptor table (Descriptor Area), 16-aligned, 16·Size bytes
	Avail uint64 // available ring (Driver Area), 2-aligned, 6 + 2·Size bytes
	Used  uint64 // used ring (Device Area), 4-aligned, 6 + 8·Size bytes
}

// LayoutError reports a queue size or a ring placement that breaks §2.7.
type LayoutError struct {
	Field  string // "size", "desc", "avail" or "used"
	Value  uint64 // the offending value
	Reason string
}

// Error implements error.
func (e *LayoutError) Error() string {
	return fmt.Sprintf("virtqueue: layout %s %#x: %s (VirtIO 1.2 §2.7)", e.Field, e.Value, e.Reason)
}

// DescBytes, AvailBytes and UsedBytes return the sizes of the three parts for a queue of
// the given size, event fields included (§2.7 table).
func DescBytes(size uint16) uint64 { return DescSize * uint64(size) }

// AvailBytes returns the size of the available ring: flags, idx, ring[size], used_event.
func AvailBytes(size uint16) uint64 {
	return ringHeaderSize + availElemSize*uint64(size) + eventFieldSize
}

// UsedBytes returns the size of the used ring: flags, idx, ring[size], avail_event.
func UsedBytes(size uint16) uint64 {
	return ringHeaderSize + UsedElemSize*uint64(size) + eventFieldSize
}

// QueueBytes returns the bytes a contiguous layout from NewLayout occupies: descriptor
// table, available ring, padding to 4, used ring.
func QueueBytes(size uint16) uint64 {
	used := alignUp(DescBytes(size)+AvailBytes(size), UsedAlign)
	return used + UsedBytes(size)
}

func alignUp(v, a uint64) uint64 { return (v + a - 1) &^ (a - 1) }

func checkQueueSize(size uint16) error {
	// §2.7: "Queue Size value is always a power of 2. The maximum Queue Size value is
	// 32768." A 16-bit size can never exceed 32768 once it is a power of two.
	if size == 0 || size&(size-1) != 0 {
		return &LayoutError{Field: "size", Value: uint64(size), Reason: "queue size must be a power of two in [1, 32768]"}
	}
	return nil
}

// NewLayout places a queue of the given size contiguously at base: the descriptor table
// at base (which must be 16-aligned), the available ring right after it, the used ring
// after that rounded up to 4 bytes. The whole queue occupies QueueBytes(size) bytes.
func NewLayout(base uint64, size uint16) (Layout, error) {
	if err := checkQueueSize(size); err != nil {
		return Layout{}, err
	}
	if base%DescAlign != 0 {
		return Layout{}, &LayoutError{Field: "desc", Value: base, Reason: "descriptor table must be 16-byte aligned"}
	}
	if base > ^uint64(0)-QueueBytes(size) {
		return Layout{}, &LayoutError{Field: "desc", Value: base, Reason: "queue would wrap past the end of the address space"}
	}
	avail := base + DescBytes(size)
	used := alignUp(avail+AvailBytes(size), UsedAlign)
	return Layout{Size: size, Desc: base, Avail: avail, Used: used}, nil
}

// Validate checks the queue size, the alignment of each part (§2.7.1) and that each part
// lies inside mem. The parts may be placed anywhere; they are not checked for overlap.
func (l Layout) Validate(mem *GuestMemory) error {
	if err := checkQueueSize(l.Size); err != nil {
		return err
	}
	parts := []struct {
		name       string
		addr, n, a uint64
	}{
		{"desc", l.Desc, DescBytes(l.Size), DescAlign},
		{"avail", l.Avail, AvailBytes(l.Size), AvailAlign},
		{"used", l.Used, UsedBytes(l.Size), UsedAlign},
	}
	for _, p := range parts {
		if p.addr%p.a != 0 {
			return &LayoutError{Field: p.name, Value: p.addr, Reason: fmt.Sprintf("must be %d-byte aligned", p.a)}
		}
		if !mem.InRange(p.addr, p.n) {
			return &LayoutError{Field: p.name, Value: p.addr, Reason: fmt.Sprintf("%#x bytes do not fit in the %#x-byte guest memory", p.n, mem.Size())}
		}
	}
	return nil
}

// Addresses of individual ring fields.
func (l Layout) descAddr(i uint16) uint64 { return l.Desc + DescSize*uint64(i) }
func (l Layout) availRing(pos uint16) uint64 {
	return l.Avail + offRing + availElemSize*uint64(pos%l.Size)
}
func (l Layout) usedEvent() uint64 { return l.Avail + offRing + availElemSize*uint64(l.Size) }
func (l Layout) usedRing(pos uint16) uint64 {
	return l.Used + offRing + UsedElemSize*uint64(pos%l.Size)
}
func (l Layout) availEvent() uint64 { return l.Used + offRing + UsedElemSize*uint64(l.Size) }

// Features are the negotiated feature bits that change how the rings are used.
type Features struct {
	// EventIdx is VIRTIO_F_EVENT_IDX (bit 29): used_event / avail_event replace the
	// flags-based notification suppression (§2.7.7, §2.7.10).
	EventIdx bool
	// IndirectDesc is VIRTIO_F_INDIRECT_DESC (bit 28): the device accepts indirect
	// descriptor tables (§2.7.5.3). The Driver here never creates them.
	IndirectDesc bool
}

// Feature bit numbers (VirtIO 1.2 §6, Reserved Feature Bits).
const (
	FeatureIndirectDesc = 28
	FeatureEventIdx     = 29
)

// FeaturesFromBits extracts the ring features from a negotiated feature word.
func FeaturesFromBits(bits uint64) Features {
	return Features{
		EventIdx:     bits&(1<<FeatureEventIdx) != 0,
		IndirectDesc: bits&(1<<FeatureIndirectDesc) != 0,
	}
}

// Bits returns the feature word with the ring feature bits set.
func (f Features) Bits() uint64 {
	var b uint64
	if f.EventIdx {
		b |= 1 << FeatureEventIdx
	}
	if f.IndirectDesc {
		b |= 1 << FeatureIndirectDesc
	}
	return b
}

// needEvent is the specification's vring_need_event (§2.7.7, virtio_ring.h): whether a
// peer that asked to be notified at event index event must be notified now that the
// index moved from old to new. It is true exactly when event lies in [old, new) in
// modulo-2^16 sequence space, and is safe across the wrap at 65535.
func needEvent(event, newIdx, old uint16) bool {
	return newIdx-event-1 < newIdx-old
}
