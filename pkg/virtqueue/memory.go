package virtqueue

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// GuestMemory is the emulated guest-physical memory: one flat byte arena starting at
// guest address 0. Every access goes through a bounds-checked accessor that holds one
// sync.Mutex, so a driver goroutine and a device goroutine may use it at once; each accessor call is atomic and sequentially consistent with every
// other call, which also provides the memory barriers the VirtIO specification asks for
// (VirtIO 1.2 §2.7.13.3, §2.7.13.4). All multi-byte values are little-endian (§1.4).
//
// It also carries a simple bump allocator (Alloc, AllocQueue) for drivers that need
// buffers and rings in guest memory; allocations are never freed.
type GuestMemory struct {
	mu   sync.Mutex
	buf  []byte
	next uint64 // bump pointer of the allocator, guarded by mu
}

// NewGuestMemory returns a zeroed arena of size bytes, guest addresses [0, size).
func NewGuestMemory(size uint64) *GuestMemory {
	return &GuestMemory{buf: make([]byte, size)}
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
// first; on error nothing is copied.
func (m *GuestMemory) ReadAt(p []byte, addr uint64) error {
	if err := m.check(addr, uint64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(p, m.buf[addr:])
	m.mu.Unlock()
	return nil
}

// WriteAt copies p to guest address addr. The whole range is checked first; on error
// nothing is written.
func (m *GuestMemory) WriteAt(p []byte, addr uint64) error {
	if err := m.check(addr, uint64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(m.buf[addr:], p)
	m.mu.Unlock()
	return nil
}

// Zero clears n bytes at guest address addr.
func (m *GuestMemory) Zero(addr, n uint64) error {
	if err := m.check(addr, n); err != nil {
		return err
	}
	m.mu.Lock()
	clear(m.buf[addr : addr+n])
	m.mu.Unlock()
	return nil
}

// ReadU16 reads a little-endian uint16 at addr.
func (m *GuestMemory) ReadU16(addr uint64) (uint16, error) {
	var b [2]byte
	if err := m.ReadAt(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b[:]), nil
}

// ReadU32 reads a little-endian uint32 at addr.
func (m *GuestMemory) ReadU32(addr uint64) (uint32, error) {
	var b [4]byte
	if err := m.ReadAt(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

// ReadU64 reads a little-endian uint64 at addr.
func (m *GuestMemory) ReadU64(addr uint64) (uint64, error) {
	var b [8]byte
	if err := m.ReadAt(b[:], addr); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// WriteU16 writes v little-endian at addr.
func (m *GuestMemory) WriteU16(addr uint64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	return m.WriteAt(b[:], addr)
}

// WriteU32 writes v little-endian at addr.
func (m *GuestMemory) WriteU32(addr uint64, v uint32) error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return m.WriteAt(b[:], addr)
}

// WriteU64 writes v little-endian at addr.
func (m *GuestMemory) WriteU64(addr uint64, v uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return m.WriteAt(b[:], addr)
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
// drivers carve their rings and per-slot buffers once at start-up.
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
// returns its layout.
func (m *GuestMemory) AllocQueue(size uint16) (Layout, error) {
	if err := checkQueueSize(size); err != nil {
		return Layout{}, err
	}
	base, err := m.Alloc(QueueBytes(size), DescAlign)
	if err != nil {
		return Layout{}, err
	}
	return NewLayout(base, size)
}
