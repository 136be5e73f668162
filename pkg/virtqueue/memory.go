package virtqueue

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Sizes of the arena's storage units.
const (
	// atomicWordSize is the size of the naturally aligned word a 16-bit ring field is
	// read and written through atomically (sync/atomic has no 16-bit operations).
	atomicWordSize = 4
	// storageWordSize is the unit the arena is allocated in: 8-byte words, so guest
	// address 0 is 8-aligned in host memory and every 4-aligned guest address is a
	// 4-aligned host address, as sync/atomic requires.
	storageWordSize = 8
)

// GuestMemory is the emulated guest-physical memory: one flat byte arena starting at
// guest address 0. Every access is bounds-checked and overflow-safe. A driver goroutine
// and a device goroutine may use it at once without a lock, as on real hardware:
// ReadU16 and WriteU16 at even addresses are atomic (sequentially consistent) and carry
// the memory barriers the VirtIO specification asks for around the ring indices and
// event fields (VirtIO 1.2 §2.7.13.3, §2.7.13.4); ReadAt, WriteAt, Zero and the 32- and
// 64-bit accessors are plain copies, ordered by those 16-bit accesses (see the package
// documentation, Concurrency). All multi-byte values are little-endian (§1.4).
//
// It also carries a simple bump allocator (Alloc, AllocQueue) for drivers that need
// buffers and rings in guest memory; allocations are never freed.
type GuestMemory struct {
	buf []byte // the arena: a view of an 8-byte-aligned []uint64, cap rounded up to 8

	mu   sync.Mutex // guards next
	next uint64     // bump pointer of the allocator
}

// NewGuestMemory returns a zeroed arena of size bytes, guest addresses [0, size).
func NewGuestMemory(size uint64) *GuestMemory {
	words := make([]uint64, (size+storageWordSize-1)/storageWordSize)
	if len(words) == 0 {
		return &GuestMemory{buf: []byte{}}
	}
	// The backing store may be up to 7 bytes longer than the arena; those bytes are
	// never reached by an access (every one is checked against len(buf)) but keep the
	// atomic word around a field in the last bytes of the arena inside the allocation.
	store := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*storageWordSize)
	return &GuestMemory{buf: store[:size]}
}

// Size returns the arena size in bytes.
func (m *GuestMemory) Size() uint64 { return uint64(len(m.buf)) }

// MemoryError reports an access to [Addr, Addr+Len) that does not lie inside the arena.
type MemoryError struct {
	Addr uint64 // first guest address of the access
	Len  uint64 // length of the access in bytes
	Size uint64 // arena size
}

// Error implements error.
func (e *MemoryError) Error() string {
	return fmt.Sprintf("virtqueue: guest memory access [%#x, +%#x) outside the %#x-byte arena",
		e.Addr, e.Len, e.Size)
}

// InRange reports whether [addr, addr+n) lies inside the arena; it never overflows.
func (m *GuestMemory) InRange(addr, n uint64) bool {
	size := uint64(len(m.buf))
	return n <= size && addr <= size-n
}

func (m *GuestMemory) check(addr, n uint64) error {
	if !m.InRange(addr, n) {
		return &MemoryError{Addr: addr, Len: n, Size: uint64(len(m.buf))}
	}
	return nil
}

// ReadAt copies len(p) bytes at guest address addr into p. The whole range is checked
// first; on error nothing is copied. The copy is a plain one, not atomic.
func (m *GuestMemory) ReadAt(p []byte, addr uint64) error {
	if err := m.check(addr, uint64(len(p))); err != nil {
		return err
	}
	copy(p, m.buf[addr:])
	return nil
}

// WriteAt copies p to guest address addr. The whole range is checked first; on error
// nothing is written. The copy is a plain one, not atomic.
func (m *GuestMemory) WriteAt(p []byte, addr uint64) error {
	if err := m.check(addr, uint64(len(p))); err != nil {
		return err
	}
	copy(m.buf[addr:], p)
	return nil
}

// Slice returns the n bytes at guest address addr as a view of the arena itself, for a
// device that works on a buffer in place (as QEMU's devices do on mapped guest memory)
// instead of copying it out and back. The range is checked first. Accesses through the
// view are plain, like ReadAt and WriteAt, and ordered the same way (by the ring
// indices); the caller must not keep it past the buffer's return to the driver.
func (m *GuestMemory) Slice(addr, n uint64) ([]byte, error) {
	if err := m.check(addr, n); err != nil {
		return nil, err
	}
	return m.buf[addr : addr+n : addr+n], nil
}

// Zero clears n bytes at guest address addr.
func (m *GuestMemory) Zero(addr, n uint64) error {
	if err := m.check(addr, n); err != nil {
		return err
	}
	clear(m.buf[addr : addr+n])
	return nil
}

// word returns the naturally aligned 32-bit word holding the 16-bit field at the even
// guest address addr, and the field's byte offset in it (0 or 2). The caller has checked
// [addr, addr+2); the word may reach up to two bytes past the arena, which the backing
// store always covers (see NewGuestMemory).
func (m *GuestMemory) word(addr uint64) (*uint32, uint64) {
	base := addr &^ (atomicWordSize - 1)
	return (*uint32)(unsafe.Pointer(unsafe.SliceData(m.buf[:cap(m.buf)][base:]))), addr - base
}

// fieldOf extracts the little-endian 16-bit field at byte offset off of a word loaded in
// host order.
func fieldOf(w uint32, off uint64) uint16 {
	var b [atomicWordSize]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return binary.LittleEndian.Uint16(b[off:])
}

// withField returns w (host order) with the little-endian 16-bit field at byte offset off
// replaced by v.
func withField(w uint32, off uint64, v uint16) uint32 {
	var b [atomicWordSize]byte
	binary.NativeEndian.PutUint32(b[:], w)
	binary.LittleEndian.PutUint16(b[off:], v)
	return binary.NativeEndian.Uint32(b[:])
}

// ReadU16 reads a little-endian uint16 at addr. At an even address it is an atomic load
// (of the aligned 32-bit word holding it) that acquires every access a WriteU16 of the
// value it returns released; at an odd address it is a plain read.
func (m *GuestMemory) ReadU16(addr uint64) (uint16, error) {
	if err := m.check(addr, 2); err != nil {
		return 0, err
	}
	if addr%2 != 0 {
		return binary.LittleEndian.Uint16(m.buf[addr:]), nil
	}
	w, off := m.word(addr)
	return fieldOf(atomic.LoadUint32(w), off), nil
}

// WriteU16 writes v little-endian at addr. At an even address it is atomic (a
// compare-and-swap of the aligned 32-bit word holding it, so the other half of the word
// is preserved) and releases every earlier access of the calling goroutine to whoever
// reads v with ReadU16; at an odd address it is a plain write.
func (m *GuestMemory) WriteU16(addr uint64, v uint16) error {
	if err := m.check(addr, 2); err != nil {
		return err
	}
	if addr%2 != 0 {
		binary.LittleEndian.PutUint16(m.buf[addr:], v)
		return nil
	}
	w, off := m.word(addr)
	for {
		old := atomic.LoadUint32(w)
		if atomic.CompareAndSwapUint32(w, old, withField(old, off, v)) {
			return nil
		}
	}
}

// ReadU32 reads a little-endian uint32 at addr (a plain read).
func (m *GuestMemory) ReadU32(addr uint64) (uint32, error) {
	if err := m.check(addr, 4); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(m.buf[addr:]), nil
}

// ReadU64 reads a little-endian uint64 at addr (a plain read).
func (m *GuestMemory) ReadU64(addr uint64) (uint64, error) {
	if err := m.check(addr, 8); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(m.buf[addr:]), nil
}

// WriteU32 writes v little-endian at addr (a plain write).
func (m *GuestMemory) WriteU32(addr uint64, v uint32) error {
	if err := m.check(addr, 4); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(m.buf[addr:], v)
	return nil
}

// WriteU64 writes v little-endian at addr (a plain write).
func (m *GuestMemory) WriteU64(addr uint64, v uint64) error {
	if err := m.check(addr, 8); err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(m.buf[addr:], v)
	return nil
}

// AllocError reports that the bump allocator could not satisfy a request.
type AllocError struct {
	Size, Align uint64 // the request
	Free        uint64 // bytes left after the bump pointer
	Reason      string
}

// Error implements error.
func (e *AllocError) Error() string {
	return fmt.Sprintf("virtqueue: cannot allocate %#x bytes aligned to %#x (%#x free): %s",
		e.Size, e.Align, e.Free, e.Reason)
}

// Alloc carves size bytes aligned to align (a power of two; 0 means 1) out of the arena
// and returns their guest address. The region is zeroed. Allocations are never freed:
// drivers carve their rings and per-slot buffers once at start-up, before handing any
// of them to another goroutine.
func (m *GuestMemory) Alloc(size, align uint64) (uint64, error) {
	if align == 0 {
		align = 1
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	total := uint64(len(m.buf))
	free := total - m.next
	if align&(align-1) != 0 {
		return 0, &AllocError{Size: size, Align: align, Free: free, Reason: "alignment is not a power of two"}
	}
	if align > total {
		return 0, &AllocError{Size: size, Align: align, Free: free, Reason: "alignment larger than the arena"}
	}
	start := (m.next + align - 1) &^ (align - 1) // no overflow: next ≤ total, align ≤ total
	if start > total || size > total-start {
		return 0, &AllocError{Size: size, Align: align, Free: free, Reason: "arena exhausted"}
	}
	m.next = start + size
	clear(m.buf[start : start+size])
	return start, nil
}

// AllocQueue allocates a contiguous split virtqueue of the given size (see NewLayout) and
// returns its layout. It reserves the queue rounded up to 4 bytes, so the two bytes after
// avail_event, which share its atomic 32-bit word, never hold another allocation.
func (m *GuestMemory) AllocQueue(size uint16) (Layout, error) {
	if err := checkQueueSize(size); err != nil {
		return Layout{}, err
	}
	base, err := m.Alloc(alignUp(QueueBytes(size), atomicWordSize), DescAlign)
	if err != nil {
		return Layout{}, err
	}
	return NewLayout(base, size)
}
