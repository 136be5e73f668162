package sstdev

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Slot states. A slot is free (in Device.free), or held by one writer from acquire until
// the device has it (waiting); the completion then hands it back to its writer (done), or,
// when the writer has given up, frees it itself (abandoned).
const (
	slotFree      uint32 = iota
	slotWaiting          // submitted; its writer waits for the answer
	slotAbandoned        // submitted; its writer gave up, the completion frees the slot
	slotDone             // answered; its writer copies the response out, then frees it
)

// slot is one request's buffers in guest memory: the device-readable request and the
// device-writable response of a two-descriptor chain. Slots are allocated at New and
// reused for the life of the Device.
type slot struct {
	bufs  [descsPerRequest]virtqueue.Buffer // the chain: request, then response
	state atomic.Uint32
	done  chan struct{} // one token per completion of a waiting slot
	timer *time.Timer   // its writer's timeout; stopped while the slot is free

	// Set by the completion before it wakes the writer (through done).
	errno syscall.Errno

	id uint64 // request_id of the request in flight, for logs
}

func (s *slot) reqAddr() uint64  { return s.bufs[0].Addr }
func (s *slot) respAddr() uint64 { return s.bufs[1].Addr }

// newSlot allocates a slot's buffers in mem.
func newSlot(mem *virtqueue.GuestMemory) (*slot, error) {
	req, err := mem.Alloc(protocol.RequestSize, bufferAlign)
	if err != nil {
		return nil, err
	}
	resp, err := mem.Alloc(protocol.ResponseSize, bufferAlign)
	if err != nil {
		return nil, err
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &slot{
		bufs: [descsPerRequest]virtqueue.Buffer{
			{Addr: req, Len: protocol.RequestSize},
			{Addr: resp, Len: protocol.ResponseSize, Writable: true},
		},
		done:  make(chan struct{}, 1),
		timer: t,
	}, nil
}

// slotPool holds the free slots, and gives out the one freed last: its guest buffers, 8 KiB,
// are the ones the CPU touched last and still has in its caches, where a first-in
// first-out list would cycle through all NumSlots slots' 1 MiB and miss them every time.
// tokens counts the free slots, so that a writer can wait for one (with a timeout, or until
// the file or the device closes) as on a channel: a token received is the right to take
// one slot.
type slotPool struct {
	tokens chan struct{}
	mu     sync.Mutex
	stack  []*slot
}

// put frees s, then adds its token.
func (p *slotPool) put(s *slot) {
	p.mu.Lock()
	p.stack = append(p.stack, s)
	p.mu.Unlock()
	p.tokens <- struct{}{}
}

// take removes the slot freed last; the caller has received a token, so one is there
// (each put pushes before it adds its token).
func (p *slotPool) take() *slot {
	p.mu.Lock()
	s := p.stack[len(p.stack)-1]
	p.stack = p.stack[:len(p.stack)-1]
	p.mu.Unlock()
	return s
}
