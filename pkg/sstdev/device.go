package sstdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Device is one emulated /dev/sstN: the virtio-sst driver bound to a Backend. Create it
// with New; all methods are safe for concurrent use.
type Device struct {
	cfg     Config
	path    string
	log     zerolog.Logger
	mem     *virtqueue.GuestMemory
	layouts [protocol.NumQueues]virtqueue.Layout
	slots   [NumSlots]*slot
	free    slotPool // free slots; taking one is the right to submit a request
	evBufs  [NumEventBuffers]uint64
	irq     func(queue int) // d.interrupt, bound once

	life   sync.Mutex    // serialises Bind, Reset and Close
	ready  atomic.Bool   // bound and not closed: Open succeeds
	closed atomic.Bool   // Close was called
	gone   chan struct{} // closed by Close: wakes every waiting writer

	// qmu guards the request queue and everything submissions and completions share.
	// It is held only for queue bookkeeping, never across a call into the Backend.
	qmu       sync.Mutex
	resetDone *sync.Cond // on qmu: signalled when a reset ends
	be        Backend
	req       *virtqueue.Driver
	byHead    [QueueSize]*slot     // head descriptor → the slot whose chain it starts
	inFlight  int                  // chains published and not yet completed
	nextID    uint64               // last request_id given out
	active    bool                 // submissions accepted
	resetting bool                 // a Reset is re-probing; submissions wait
	broken    error                // the device corrupted the used ring; fixed by Reset
	features  protocol.Feature     // negotiated
	devConfig protocol.ConfigSpace // config space read at probe

	// evMu guards the event queue.
	evMu      sync.Mutex
	evt       *virtqueue.Driver
	evHead    [QueueSize]uint64 // head descriptor → event buffer address
	lastEvent protocol.Event
	linkUp    bool
	// linkUpCh is closed when a LINK_UP event makes linkUp true and replaced by an open
	// one when LINK_DOWN makes it false: WaitLinkUp waits on it.
	linkUpCh chan struct{}
	linkUps  atomic.Uint64 // LINK_UP events received

	stats counters
}

// counters are the live counters behind Stats.
type counters struct {
	opens, openFiles, writes, answers, reads        atomic.Int64
	timeouts, interrupted, late, failed, slotWaits  atomic.Int64
	abandoned, interrupts, notifies, events, resets atomic.Int64
}

// Stats is a snapshot of a Device's counters and state.
type Stats struct {
	// Opens counts successful opens; OpenFiles is the number of Files open now.
	Opens     int64 `json:"opens"`
	OpenFiles int64 `json:"open_files"`
	// Writes counts requests submitted to the device; Answers the answers stored in a
	// File; Reads the responses read out.
	Writes  int64 `json:"writes"`
	Answers int64 `json:"answers"`
	Reads   int64 `json:"reads"`
	// Timeouts counts writes that returned ETIMEDOUT, Interrupted those that returned
	// EINTR, Failed those failed by the device (EIO, ENODEV) after submission.
	Timeouts    int64 `json:"timeouts"`
	Interrupted int64 `json:"interrupted"`
	Failed      int64 `json:"failed"`
	// LateAnswers counts answers that arrived after their writer gave up.
	LateAnswers int64 `json:"late_answers"`
	// SlotWaits counts writes that found every slot in flight and waited.
	SlotWaits int64 `json:"slot_waits"`
	// FreeSlots is the number of slots free now, InFlight the number of requests the
	// device holds, Abandoned those of them whose writer gave up.
	FreeSlots int `json:"free_slots"`
	InFlight  int `json:"in_flight"`
	Abandoned int `json:"abandoned"`
	// Interrupts counts used-buffer notifications from the device, Notifies the
	// available-buffer notifications sent to it, Resets the device resets.
	Interrupts int64 `json:"interrupts"`
	Notifies   int64 `json:"notifies"`
	Resets     int64 `json:"resets"`
	// Events counts SSTEvents received; LastEvent is the latest, LinkUp whether the
	// latest link event said the device is connected to the SST component.
	Events    int64          `json:"events"`
	LastEvent protocol.Event `json:"last_event"`
	LinkUp    bool           `json:"link_up"`
	// Ready reports whether Open succeeds; Features are the negotiated features.
	Ready    bool             `json:"ready"`
	Features protocol.Feature `json:"features"`
}

// New creates the device /dev/sst<cfg.Index>: it allocates its guest memory, queues and
// slots, and binds cfg.Backend if set.
func New(cfg Config) (*Device, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := &Device{
		cfg:  cfg,
		path: Path(cfg.Index),
		mem:  virtqueue.NewGuestMemory(GuestMemorySize),
		free: slotPool{tokens: make(chan struct{}, NumSlots), stack: make([]*slot, 0, NumSlots)},
		gone: make(chan struct{}),

		linkUpCh: make(chan struct{}),
	}
	d.log = cfg.Logger.With().Int("device", cfg.Index).Logger()
	d.resetDone = sync.NewCond(&d.qmu)
	d.irq = d.interrupt
	for q := range d.layouts {
		l, err := d.mem.AllocQueue(QueueSize)
		if err != nil {
			return nil, fmt.Errorf("sstdev: %s: guest memory for queue %d: %w", d.path, q, err)
		}
		d.layouts[q] = l
	}
	for i := range d.slots {
		s, err := newSlot(d.mem)
		if err != nil {
			return nil, fmt.Errorf("sstdev: %s: guest memory for slot %d: %w", d.path, i, err)
		}
		d.slots[i] = s
		d.free.put(s)
	}
	for i := range d.evBufs {
		a, err := d.mem.Alloc(protocol.EventSize, bufferAlign)
		if err != nil {
			return nil, fmt.Errorf("sstdev: %s: guest memory for event buffer %d: %w", d.path, i, err)
		}
		d.evBufs[i] = a
	}
	if cfg.Backend != nil {
		if err := d.Bind(cfg.Backend); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Path returns the device path, "/dev/sstN".
func (d *Device) Path() string { return d.path }

// Name returns the device name, "sstN".
func (d *Device) Name() string { return d.path[len("/dev/"):] }

// Index returns N of /dev/sstN.
func (d *Device) Index() int { return d.cfg.Index }

// Ready reports whether the device is bound and not closed, that is whether Open
// succeeds.
func (d *Device) Ready() bool { return d.ready.Load() }

// ConfigSpace returns the config space (SSTConfig) the driver read at probe.
func (d *Device) ConfigSpace() protocol.ConfigSpace {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	return d.devConfig
}

// Bind probes b as the driver's probe does and makes the device ready: it negotiates
// features, sets up the three queues, attaches them, posts the event buffers. The Device
// owns b from then on. It fails with ErrBound if a backend is already bound and ErrClosed
// after Close; a failed probe leaves the device unbound and b reset, and b stays the
// caller's to close (as it does when New fails to bind Config.Backend).
func (d *Device) Bind(b Backend) error {
	if b == nil {
		return &ConfigError{Field: "Backend", Reason: "nil"}
	}
	d.life.Lock()
	defer d.life.Unlock()
	if d.closed.Load() {
		return ErrClosed
	}
	d.qmu.Lock()
	bound := d.be != nil
	d.qmu.Unlock()
	if bound {
		return ErrBound
	}
	if err := d.probe(b); err != nil {
		return err
	}
	d.ready.Store(true)
	return nil
}

// probe negotiates with b, sets up fresh queues and attaches them. On success the request
// queue accepts submissions. The caller holds d.life.
func (d *Device) probe(b Backend) error {
	offered := b.OfferedFeatures()
	acked := offered & d.cfg.Features
	if err := b.AckFeatures(acked); err != nil {
		return &ProbeError{Device: d.path, Step: "features", Err: err}
	}
	devConfig := b.ConfigSpace()
	rf := virtqueue.FeaturesFromBits(uint64(acked))
	var drivers [protocol.NumQueues]*virtqueue.Driver
	for q, l := range d.layouts {
		drv, err := virtqueue.NewDriver(d.mem, l, rf)
		if err != nil {
			b.Reset()
			return &ProbeError{Device: d.path, Step: "queues", Err: err}
		}
		drivers[q] = drv
	}
	evt := drivers[protocol.QueueEvent]
	var evHead [QueueSize]uint64
	for _, a := range d.evBufs {
		head, err := evt.Add([]virtqueue.Buffer{{Addr: a, Len: protocol.EventSize, Writable: true}})
		if err != nil {
			b.Reset()
			return &ProbeError{Device: d.path, Step: "events", Err: err}
		}
		evHead[head] = a
	}
	// Before DRIVER_OK the device does not look at the ring; Attach makes it do so.
	if _, err := evt.Publish(); err != nil {
		b.Reset()
		return &ProbeError{Device: d.path, Step: "events", Err: err}
	}

	d.evMu.Lock()
	d.evt, d.evHead = evt, evHead
	d.evMu.Unlock()
	d.qmu.Lock()
	d.be, d.req = b, drivers[protocol.QueueRequest]
	d.features, d.devConfig = acked, devConfig
	d.byHead, d.inFlight, d.broken = [QueueSize]*slot{}, 0, nil
	d.active = true
	d.qmu.Unlock()

	if err := b.Attach(d.mem, d.layouts, d.irq); err != nil {
		d.detach(syscall.ENODEV)
		d.qmu.Lock()
		d.be = nil
		d.qmu.Unlock()
		b.Reset()
		return &ProbeError{Device: d.path, Step: "attach", Err: err}
	}
	d.log.Info().Stringer("offered", offered).Stringer("negotiated", acked).
		Uint32("version", devConfig.Version).Uint32("device_id", devConfig.DeviceID).
		Int("queue_size", QueueSize).Int("slots", NumSlots).Msg("device ready")
	return nil
}

// detach stops submissions, delivers the answers the device already returned and fails
// every other request in flight with errno, then drops the queues. The device must have
// been reset (or never attached) so that it no longer touches them.
func (d *Device) detach(errno syscall.Errno) {
	d.qmu.Lock()
	d.active = false
	if d.req != nil && d.broken == nil {
		var batch completions
		for {
			n, _ := d.popUsedLocked(&batch)
			batch.run(d, n)
			if n == 0 {
				break
			}
		}
	}
	for h, s := range d.byHead {
		if s != nil {
			d.byHead[h] = nil
			d.inFlight--
			d.complete(s, 0, errno)
		}
	}
	d.req = nil
	d.qmu.Unlock()
	d.evMu.Lock()
	d.evt = nil
	d.evMu.Unlock()
}

// Reset is a device reset with the driver's recovery: the backend is reset, requests in
// flight fail with EIO (answers the device had already returned are still delivered),
// every slot is reclaimed, and the driver probes the backend again. Writes that arrive
// meanwhile wait for the reset to end. Open Files stay usable; request ids keep counting.
func (d *Device) Reset() error {
	d.life.Lock()
	defer d.life.Unlock()
	if d.closed.Load() {
		return ErrClosed
	}
	d.qmu.Lock()
	b := d.be
	if b == nil {
		d.qmu.Unlock()
		return ErrUnbound
	}
	d.active, d.resetting = false, true
	d.qmu.Unlock()
	d.stats.resets.Add(1)

	b.Reset()
	d.detach(syscall.EIO)
	err := d.probe(b)
	d.qmu.Lock()
	if err != nil {
		d.be = nil
		d.ready.Store(false)
	}
	d.resetting = false
	d.resetDone.Broadcast()
	d.qmu.Unlock()
	if err != nil {
		d.log.Error().Err(err).Msg("probe after reset failed; device unbound")
		// The Device owned b; unbound, nothing else will release it.
		if c, ok := b.(io.Closer); ok {
			c.Close()
		}
		return err
	}
	d.log.Info().Msg("device reset")
	return nil
}

// Close removes the device: Open fails with ENODEV from now on, writers waiting fail with
// ENODEV, the backend is reset (and closed if it implements io.Closer) and every slot is
// reclaimed. Open Files keep their stored responses; their writes fail with ENODEV.
// Close is idempotent and returns the backend's Close error.
func (d *Device) Close() error {
	d.life.Lock()
	defer d.life.Unlock()
	if d.closed.Swap(true) {
		return nil
	}
	d.ready.Store(false)
	d.qmu.Lock()
	d.active = false
	b := d.be
	d.be = nil
	d.qmu.Unlock()
	close(d.gone)
	if b == nil {
		return nil
	}
	b.Reset()
	d.detach(syscall.ENODEV)
	d.log.Info().Int64("writes", d.stats.writes.Load()).Int64("answers", d.stats.answers.Load()).
		Int64("timeouts", d.stats.timeouts.Load()).Int64("events", d.stats.events.Load()).
		Msg("device removed")
	if c, ok := b.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// LinkGeneration returns how many LINK_UP events the device has received (see
// File.LinkGeneration).
func (d *Device) LinkGeneration() uint64 { return d.linkUps.Load() }

// WaitLinkUp waits until the device reports, with a LINK_UP event on its event queue,
// that it is connected to the SST component; it returns at once if the latest link event
// was LINK_UP. It returns ctx's error when ctx ends first and ErrClosed when the device is
// closed. Until the link is up, timing requests are answered NO_DEVICE.
func (d *Device) WaitLinkUp(ctx context.Context) error {
	d.evMu.Lock()
	up, ch := d.linkUp, d.linkUpCh
	d.evMu.Unlock()
	if up {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-d.gone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stats returns a snapshot of the device's counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	st := Stats{
		Opens: c.opens.Load(), OpenFiles: c.openFiles.Load(),
		Writes: c.writes.Load(), Answers: c.answers.Load(), Reads: c.reads.Load(),
		Timeouts: c.timeouts.Load(), Interrupted: c.interrupted.Load(), Failed: c.failed.Load(),
		LateAnswers: c.late.Load(), SlotWaits: c.slotWaits.Load(),
		FreeSlots: len(d.free.tokens), Abandoned: int(c.abandoned.Load()),
		Interrupts: c.interrupts.Load(), Notifies: c.notifies.Load(), Resets: c.resets.Load(),
		Events: c.events.Load(), Ready: d.ready.Load(),
	}
	d.qmu.Lock()
	st.InFlight, st.Features = d.inFlight, d.features
	d.qmu.Unlock()
	d.evMu.Lock()
	st.LastEvent, st.LinkUp = d.lastEvent, d.linkUp
	d.evMu.Unlock()
	return st
}

// acquire takes a free slot for a writer, waiting at most the device timeout. It returns
// the slot and how much of the timeout is left.
func (d *Device) acquire(f *File) (*slot, time.Duration, syscall.Errno) {
	select {
	case <-d.free.tokens:
		return d.free.take(), d.cfg.Timeout, 0
	default:
	}
	d.stats.slotWaits.Add(1)
	start := time.Now()
	t := time.NewTimer(d.cfg.Timeout)
	defer t.Stop()
	select {
	case <-d.free.tokens:
		return d.free.take(), d.cfg.Timeout - time.Since(start), 0
	case <-t.C:
		return nil, 0, syscall.ETIMEDOUT
	case <-f.closing:
		return nil, 0, syscall.EINTR
	case <-d.gone:
		return nil, 0, syscall.ENODEV
	}
}

// release returns a slot to the free list.
func (d *Device) release(s *slot) {
	s.state.Store(slotFree)
	d.free.put(s) // never blocks: there are exactly NumSlots slots
}

// submit places the request in s (whose request buffer already holds it), gives it the
// next request_id, puts its chain on the request queue and notifies the device unless it
// suppressed notifications.
func (d *Device) submit(s *slot) syscall.Errno {
	s.state.Store(slotWaiting)
	d.qmu.Lock()
	for d.resetting {
		d.resetDone.Wait()
	}
	if !d.active {
		d.qmu.Unlock()
		return syscall.ENODEV
	}
	if d.broken != nil {
		d.qmu.Unlock()
		return syscall.EIO
	}
	head, err := d.req.Add(s.bufs[:])
	if err != nil {
		d.qmu.Unlock()
		d.log.Error().Err(err).Msg("cannot add request chain")
		return syscall.EIO
	}
	d.nextID++
	id := d.nextID
	// The chain is not visible to the device before Publish, so the id can follow Add.
	if err := d.mem.WriteU64(s.reqAddr()+protocol.RequestIDOffset, id); err != nil {
		d.qmu.Unlock()
		d.log.Error().Err(err).Msg("cannot write request_id")
		return syscall.EIO
	}
	s.id = id
	d.byHead[head] = s
	d.inFlight++
	notify, err := d.req.Publish()
	b := d.be
	d.qmu.Unlock()
	if err != nil {
		// Cannot happen with the driver's own layout; the chain goes out with the next
		// Publish.
		d.log.Error().Err(err).Msg("cannot publish request")
	}
	d.stats.writes.Add(1)
	if notify {
		d.stats.notifies.Add(1)
		b.Notify(protocol.QueueRequest)
	}
	return 0
}

// complete hands a completed slot to its writer, or frees it when the writer has given
// up. It never blocks.
func (d *Device) complete(s *slot, usedLen uint32, errno syscall.Errno) {
	s.errno = errno
	if s.state.CompareAndSwap(slotWaiting, slotDone) {
		s.done <- struct{}{}
		return
	}
	d.stats.abandoned.Add(-1)
	if errno == 0 {
		d.stats.late.Add(1)
	}
	d.log.Debug().Uint64("request_id", s.id).Uint32("len", usedLen).Int("errno", int(errno)).
		Msg("slot of an abandoned request reclaimed")
	d.release(s)
}

// interrupt is the used-buffer notification the device raises for a queue.
func (d *Device) interrupt(queue int) {
	d.stats.interrupts.Add(1)
	switch queue {
	case protocol.QueueRequest:
		d.collectRequests()
	case protocol.QueueEvent:
		d.collectEvents()
	}
}

// completionBatch bounds how many completions are collected under one hold of qmu.
const completionBatch = 16

// completions is a batch of completed slots, collected under qmu and handed to their
// writers after it is released.
type completions [completionBatch]struct {
	s     *slot
	len   uint32
	errno syscall.Errno
}

func (c *completions) run(d *Device, n int) {
	for i := range n {
		d.complete(c[i].s, c[i].len, c[i].errno)
		c[i].s = nil
	}
}

// collectRequests pops every used chain of the request queue and completes its slot.
func (d *Device) collectRequests() {
	var batch completions
	for {
		d.qmu.Lock()
		n, more := d.popUsedLocked(&batch)
		d.qmu.Unlock()
		batch.run(d, n)
		if !more {
			return
		}
	}
}

// popUsedLocked pops up to a batch of used chains into c and reports how many, and
// whether more may be waiting. The caller holds qmu.
func (d *Device) popUsedLocked(c *completions) (n int, more bool) {
	if d.req == nil || d.broken != nil {
		return 0, false
	}
	for n < len(c) {
		u, ok, err := d.req.PopUsed()
		if err != nil {
			var ue *virtqueue.UsedError
			if errors.As(err, &ue) {
				d.log.Warn().Err(err).Msg("device returned a bad used entry")
				if ue.Freed {
					if s := d.takeHead(uint16(ue.ID)); s != nil {
						c[n].s, c[n].len, c[n].errno = s, 0, syscall.EIO
						n++
					}
				}
				continue
			}
			d.broken = err
			d.log.Error().Err(err).Msg("request queue broken until reset")
			return n, false
		}
		if !ok {
			return n, false
		}
		s := d.takeHead(u.ID)
		if s == nil {
			d.log.Warn().Uint16("head", u.ID).Msg("used chain without a request")
			continue
		}
		var errno syscall.Errno
		if u.Len < protocol.ResponseSize {
			errno = syscall.EIO
		}
		c[n].s, c[n].len, c[n].errno = s, u.Len, errno
		n++
	}
	return n, true
}

// takeHead removes and returns the slot whose chain starts at head. The caller holds qmu.
func (d *Device) takeHead(head uint16) *slot {
	if int(head) >= len(d.byHead) {
		return nil
	}
	s := d.byHead[head]
	if s != nil {
		d.byHead[head] = nil
		d.inFlight--
	}
	return s
}

// repostEvent adds the event buffer at addr to the event queue again; evMu is held.
func (d *Device) repostEvent(addr uint64) {
	head, err := d.evt.Add([]virtqueue.Buffer{{Addr: addr, Len: protocol.EventSize, Writable: true}})
	if err != nil {
		d.log.Error().Err(err).Msg("cannot repost event buffer")
		return
	}
	d.evHead[head] = addr
}

// collectEvents consumes the events the device delivered and posts their buffers again.
func (d *Device) collectEvents() {
	var raw [protocol.EventSize]byte
	d.evMu.Lock()
	if d.evt == nil {
		d.evMu.Unlock()
		return
	}
	for {
		u, ok, err := d.evt.PopUsed()
		if err != nil {
			var ue *virtqueue.UsedError
			if errors.As(err, &ue) {
				d.log.Warn().Err(err).Msg("device returned a bad event entry")
				if ue.Freed && ue.ID < QueueSize { // the buffer came back, malformed: post it again, or it is lost
					d.repostEvent(d.evHead[uint16(ue.ID)])
				}
				continue
			}
			d.log.Error().Err(err).Msg("event queue broken until reset")
			break
		}
		if !ok {
			break
		}
		addr := d.evHead[u.ID]
		d.recordEvent(addr, u.Len, raw[:])
		d.repostEvent(addr)
	}
	notify, err := d.evt.Publish()
	if err != nil {
		d.log.Error().Err(err).Msg("cannot publish event buffers")
	}
	d.evMu.Unlock()
	if notify {
		d.qmu.Lock()
		b := d.be
		d.qmu.Unlock()
		if b != nil {
			b.Notify(protocol.QueueEvent)
		}
	}
}

// recordEvent decodes the event at addr and keeps it. The caller holds evMu.
func (d *Device) recordEvent(addr uint64, n uint32, raw []byte) {
	var e protocol.Event
	if n < protocol.EventSize {
		d.log.Warn().Uint32("len", n).Msg("short event")
		return
	}
	if err := d.mem.ReadAt(raw, addr); err != nil {
		d.log.Error().Err(err).Msg("cannot read event")
		return
	}
	if err := e.Decode(raw); err != nil {
		d.log.Error().Err(err).Msg("cannot decode event")
		return
	}
	d.stats.events.Add(1)
	d.lastEvent = e
	switch e.Type {
	case protocol.EventLinkUp:
		d.linkUps.Add(1) // before the waiters wake
		if !d.linkUp {
			close(d.linkUpCh)
		}
		d.linkUp = true
		d.log.Info().Uint64("conn", e.Data).Msg("device connected to the SST component")
	case protocol.EventLinkDown:
		if d.linkUp {
			d.linkUpCh = make(chan struct{})
		}
		d.linkUp = false
		d.log.Warn().Uint64("conn", e.Data).Msg("device lost the SST component")
	default:
		d.log.Debug().Stringer("event", &e).Msg("event")
	}
}
