package sstcomponent

import (
	"sync"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// MemoryPageSize is the granularity at which device memory is allocated on first write.
const MemoryPageSize = 64 << 10

// memoryPages is the number of pages of the device memory.
const memoryPages = int(protocol.DeviceMemorySize / MemoryPageSize)

// memory is the device memory READ and WRITE address, allocated page by page.
type memory struct {
	mu    sync.RWMutex
	pages [memoryPages]*[MemoryPageSize]byte
	used  int // allocated pages
}

// inRange reports whether [addr, addr+size) lies inside device memory, without overflow.
func inRange(addr, size uint64) bool {
	return addr <= protocol.DeviceMemorySize && size <= protocol.DeviceMemorySize-addr
}

// read copies len(dst) bytes at addr into dst; the range must be checked with inRange.
func (m *memory) read(addr uint64, dst []byte) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for len(dst) > 0 {
		page, off := addr/MemoryPageSize, addr%MemoryPageSize
		n := min(uint64(len(dst)), MemoryPageSize-off)
		if p := m.pages[page]; p != nil {
			copy(dst[:n], p[off:off+n])
		} else {
			clear(dst[:n])
		}
		dst, addr = dst[n:], addr+n
	}
}

// write stores src at addr, allocating pages as needed; the range must be checked with
// inRange.
func (m *memory) write(addr uint64, src []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for len(src) > 0 {
		page, off := addr/MemoryPageSize, addr%MemoryPageSize
		n := min(uint64(len(src)), MemoryPageSize-off)
		p := m.pages[page]
		if p == nil {
			p = new([MemoryPageSize]byte)
			m.pages[page] = p
			m.used++
		}
		copy(p[off:off+n], src[:n])
		src, addr = src[n:], addr+n
	}
}

// reset drops every page, so all memory reads as zeros again.
func (m *memory) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.pages[:])
	m.used = 0
}

// resident returns the bytes of device memory allocated so far.
func (m *memory) resident() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return uint64(m.used) * MemoryPageSize
}
