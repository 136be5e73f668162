package virtqueue

import (
	"errors"
	"fmt"
)

// Rule names one validation rule of the split virtqueue. Its Section method cites the
// VirtIO 1.2 specification section the rule comes from (VirtIO 1.1 numbers the same
// sections 2.6.x instead of 2.7.x).
type Rule int

// The validation rules. The device side checks the Chain rules on every Pop; the driver
// side checks the Used rules on every PopUsed and the Buffer rules on every Add.
const (
	// RuleAvailIdxJump: the available idx moved ahead of the device by more than the
	// queue size. The ring holds at most Queue Size entries (§2.7.13 "the ring buffer is
	// the same size as the descriptor table"), and idx never goes back (§2.7.6.1).
	RuleAvailIdxJump Rule = iota + 1
	// RuleHeadRange: a chain head taken from the available ring is not below the queue
	// size (§2.7.5: the table holds Queue Size descriptors).
	RuleHeadRange
	// RuleHeadInFlight: the driver made available a head that the device still owns
	// (§2.7.13.1: buffers go into *free* descriptors).
	RuleHeadInFlight
	// RuleNextRange: a next field points outside the descriptor table or the indirect
	// table (§2.7.5, §2.7.5.3).
	RuleNextRange
	// RuleChainLength: the chain has more descriptors than the queue size, which is also
	// how a loop shows (§2.7.5.2 "loops in the descriptor chain are forbidden",
	// §2.7.5.3.1 "MUST NOT create a descriptor chain longer than the Queue Size").
	RuleChainLength
	// RuleTotalLen: the buffers of the chain add up to more than 2^32 bytes (§2.7.5.2).
	RuleTotalLen
	// RuleBufferRange: a buffer [addr, addr+len) does not lie inside guest memory
	// (§2.7.5: addr is a guest-physical address).
	RuleBufferRange
	// RuleReadAfterWrite: a device-readable buffer follows a device-writable one
	// (§2.7.4.2: "The driver MUST place any device-writable descriptor elements after any
	// device-readable descriptor elements").
	RuleReadAfterWrite
	// RuleIndirectNotNegotiated: VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC
	// (§2.7.5.3.1).
	RuleIndirectNotNegotiated
	// RuleIndirectNested: VIRTQ_DESC_F_INDIRECT inside an indirect table (§2.7.5.3.1:
	// "only one table per descriptor").
	RuleIndirectNested
	// RuleIndirectNext: both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT set
	// (§2.7.5.3.1).
	RuleIndirectNext
	// RuleIndirectLen: an indirect table length that is zero or not a multiple of 16
	// (§2.7.5.3: the table is desc[len/16]).
	RuleIndirectLen
	// RuleIndirectRange: an indirect table that does not lie inside guest memory
	// (§2.7.5.3).
	RuleIndirectRange
	// RuleUsedIdxJump: the used idx moved ahead of the driver by more chains than are
	// in flight (§2.7.8: each used entry returns one chain made available earlier).
	RuleUsedIdxJump
	// RuleUsedIDRange: a used id that is not a descriptor index (§2.7.8: id is the
	// head of a descriptor chain).
	RuleUsedIDRange
	// RuleUsedNotInFlight: a used id that is not the head of a chain the driver made
	// available and has not got back yet (§2.7.8: "this matches an entry placed in the
	// available ring by the guest earlier").
	RuleUsedNotInFlight
	// RuleUsedLen: a used len larger than the chain's device-writable bytes (§2.7.8: len
	// is "the total of bytes written into the buffer"; §2.7.8.2).
	RuleUsedLen
	// RuleEmptyChain: a chain with no buffers (§2.7.13.1: a buffer has at least one
	// element).
	RuleEmptyChain
)

var ruleText = map[Rule]struct{ text, section string }{
	RuleAvailIdxJump:          {"available idx moved by more than the queue size", "2.7.6.1, 2.7.13"},
	RuleHeadRange:             {"chain head index not below the queue size", "2.7.5"},
	RuleHeadInFlight:          {"chain head is already in flight", "2.7.13.1"},
	RuleNextRange:             {"next index outside the descriptor table", "2.7.5"},
	RuleChainLength:           {"chain longer than the queue size (a loop?)", "2.7.5.2, 2.7.5.3.1"},
	RuleTotalLen:              {"chain longer than 2^32 bytes in total", "2.7.5.2"},
	RuleBufferRange:           {"buffer outside guest memory", "2.7.5"},
	RuleReadAfterWrite:        {"device-readable buffer after a device-writable one", "2.7.4.2"},
	RuleIndirectNotNegotiated: {"indirect descriptor without VIRTIO_F_INDIRECT_DESC", "2.7.5.3.1"},
	RuleIndirectNested:        {"indirect descriptor inside an indirect table", "2.7.5.3.1"},
	RuleIndirectNext:          {"indirect descriptor with VIRTQ_DESC_F_NEXT set", "2.7.5.3.1"},
	RuleIndirectLen:           {"indirect table length zero or not a multiple of 16", "2.7.5.3"},
	RuleIndirectRange:         {"indirect table outside guest memory", "2.7.5.3"},
	RuleUsedIdxJump:           {"used idx moved by more than the chains in flight", "2.7.8"},
	RuleUsedIDRange:           {"used id not below the queue size", "2.7.8"},
	RuleUsedNotInFlight:       {"used id is not a chain in flight", "2.7.8"},
	RuleUsedLen:               {"used len larger than the chain's writable bytes", "2.7.8, 2.7.8.2"},
	RuleEmptyChain:            {"chain without buffers", "2.7.13.1"},
}

// String returns a short description of the rule.
func (r Rule) String() string {
	if t, ok := ruleText[r]; ok {
		return t.text
	}
	return fmt.Sprintf("Rule(%d)", int(r))
}

// Section returns the VirtIO 1.2 section(s) the rule comes from, e.g. "2.7.5.2".
func (r Rule) Section() string { return ruleText[r].section }

// ChainError reports a descriptor chain that the device side refused (DeviceQueue.Pop).
//
// The available ring entry has been consumed. If Returnable is true, the device now owns
// Head and should give it back with PushUsed(Head, 0) so the driver can free it.
type ChainError struct {
	Head     uint16 // head index taken from the available ring
	Index    uint16 // descriptor index where the rule broke (in the indirect table if Indirect)
	Indirect bool   // Index is inside an indirect table
	Rule     Rule
	Detail   string // values involved
}

// Error implements error.
func (e *ChainError) Error() string {
	where := "descriptor"
	if e.Indirect {
		where = "indirect descriptor"
	}
	return fmt.Sprintf("virtqueue: chain head %d, %s %d: %v (VirtIO 1.2 §%s): %s",
		e.Head, where, e.Index, e.Rule, e.Rule.Section(), e.Detail)
}

// Returnable reports whether the device took ownership of Head and must return it with
// PushUsed(Head, 0). It is false when Head is out of range or was already in flight.
func (e *ChainError) Returnable() bool {
	return e.Rule != RuleHeadRange && e.Rule != RuleHeadInFlight
}

// RingError reports a ring index the peer moved impossibly far. It is sticky: the queue
// is broken and every later Pop or PopUsed returns the same error (the device would set
// DEVICE_NEEDS_RESET, §2.1.2).
type RingError struct {
	Rule     Rule
	Idx      uint16 // the idx read from the ring
	Last     uint16 // our last processed index
	Capacity uint16 // how far idx may legally move ahead of Last
}

// Error implements error.
func (e *RingError) Error() string {
	return fmt.Sprintf("virtqueue: %v (VirtIO 1.2 §%s): idx %d, last seen %d, at most %d ahead",
		e.Rule, e.Rule.Section(), e.Idx, e.Last, e.Capacity)
}

// UsedError reports a used ring entry the driver side refused (Driver.PopUsed). The used
// entry has been consumed. If Freed is true the chain ID was valid and in flight, its
// descriptors are free again, and the caller should fail the request it carried.
type UsedError struct {
	Pos   uint16 // used ring index (free-running) of the entry
	ID    uint32 // id field as written by the device
	Len   uint32 // len field as written by the device
	Rule  Rule
	Freed bool
}

// Error implements error.
func (e *UsedError) Error() string {
	return fmt.Sprintf("virtqueue: used entry %d (id %d, len %d): %v (VirtIO 1.2 §%s)",
		e.Pos, e.ID, e.Len, e.Rule, e.Rule.Section())
}

// BufferError reports an invalid buffer list given to Driver.Add.
type BufferError struct {
	Index int // position in the buffer list (0 for list-wide rules)
	Rule  Rule
	Buf   Buffer
}

// Error implements error.
func (e *BufferError) Error() string {
	return fmt.Sprintf("virtqueue: add: buffer %d {addr %#x, len %d, writable %v}: %v (VirtIO 1.2 §%s)",
		e.Index, e.Buf.Addr, e.Buf.Len, e.Buf.Writable, e.Rule, e.Rule.Section())
}

// PushError reports a misuse of DeviceQueue.PushUsed: a head the device does not own, or more
// bytes written than the chain can hold.
type PushError struct {
	Head    uint16
	Written uint32
	Rule    Rule // RuleHeadRange, RuleUsedNotInFlight or RuleUsedLen
}

// Error implements error.
func (e *PushError) Error() string {
	return fmt.Sprintf("virtqueue: push head %d written %d: %v (VirtIO 1.2 §%s)",
		e.Head, e.Written, e.Rule, e.Rule.Section())
}

// ErrNoSpace is matched (errors.Is) by a *NoSpaceError: the chain does not fit in the free
// descriptors now, and will once the device returns some chains.
var ErrNoSpace = errors.New("virtqueue: not enough free descriptors")

// NoSpaceError says how many descriptors were needed and how many were free.
type NoSpaceError struct{ Need, Free int }

// Error implements error.
func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("%v: need %d, %d free", ErrNoSpace, e.Need, e.Free)
}

// Is makes errors.Is(err, ErrNoSpace) true.
func (e *NoSpaceError) Is(target error) bool { return target == ErrNoSpace }
