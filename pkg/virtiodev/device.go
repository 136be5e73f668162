package virtiodev

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Device is the emulated QEMU virtio-sst device. Create it with New; it connects to the
// SST component at once and keeps reconnecting. All methods are safe for concurrent use.
type Device struct {
	cfg  Config
	log  zerolog.Logger
	link *link

	negotiated atomic.Uint64 // protocol.Feature acknowledged by the driver
	linkUp     atomic.Bool

	// attMu guards att and gen. The device goroutine and the link's completions hold it
	// for reading while they touch the rings; Attach and Reset take it for writing, so
	// after Reset returns the device no longer writes into the driver's memory.
	attMu sync.RWMutex
	att   *attachment
	gen   uint64

	evMu    sync.Mutex
	backlog eventBacklog

	kick [protocol.NumQueues]chan struct{} // driver notifications, coalesced
	// svcMu is held by whichever goroutine serves the request queue (kickRequests);
	// svcPending asks it to serve the queue once more.
	svcMu      sync.Mutex
	svcPending atomic.Bool
	free       chan *forwarded             // pool of forwarding slots
	scratch    [protocol.ResponseSize]byte // the request queue's server's, under svcMu
	ans        answerer                    // the same server's scratch for its own answers

	inflight atomic.Int64
	idle     chan struct{} // signalled when inflight drops to 0 while closing
	closing  atomic.Bool
	stats    counters

	cancelLink context.CancelFunc
	linkDone   chan struct{}
	stop       chan struct{}
	loopDone   chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// attachment is the set of queues the driver attached, valid until the next Reset.
type attachment struct {
	gen       uint64
	req, evt  *virtqueue.DeviceQueue
	interrupt func(queue int)
	// broken marks a queue whose ring the driver corrupted (a sticky *RingError); the
	// device ignores it until the next reset. Only the device goroutine touches it.
	broken [protocol.NumQueues]bool
}

// New creates a device, starts its goroutines and begins connecting to the SST component
// through cfg.Dialer. Call Close or Shutdown to stop it.
func New(cfg Config) (*Device, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	d := &Device{
		cfg:      cfg,
		log:      cfg.Logger,
		backlog:  newEventBacklog(cfg.EventBacklog),
		free:     make(chan *forwarded, 2*protocol.QueueSize),
		idle:     make(chan struct{}, 1),
		linkDone: make(chan struct{}),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
	}
	for i := range d.kick {
		d.kick[i] = make(chan struct{}, 1)
	}
	d.link = newLink(&d.cfg, d)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancelLink = cancel
	if d.cfg.Handler != nil {
		close(d.linkDone)
		d.log.Info().Uint64("conn", 1).Msg("connected to SST (in-process, direct)")
		d.linkChanged(true, 1)
	} else {
		go func() {
			defer close(d.linkDone)
			d.link.run(ctx)
		}()
	}
	go d.loop()
	return d, nil
}

// ConfigSpace returns the device's config space: SSTConfig with the protocol version, the
// device id, the negotiated device features (as the reference device reports them; zero
// before AckFeatures) and max_queues = 1.
func (d *Device) ConfigSpace() protocol.ConfigSpace {
	return protocol.ConfigSpace{
		Version:   protocol.Version,
		DeviceID:  d.cfg.DeviceID,
		Features:  protocol.Feature(d.negotiated.Load()) & protocol.DeviceFeatureMask,
		MaxQueues: protocol.MaxQueuePairs,
	}
}

// OfferedFeatures returns the features the device offers now: protocol.BaseFeatures and
// protocol.TransportFeatures, plus protocol.FeatureEvents while connected to the SST component.
func (d *Device) OfferedFeatures() protocol.Feature {
	f := protocol.BaseFeatures | protocol.TransportFeatures
	if d.linkUp.Load() {
		f |= protocol.FeatureEvents
	}
	return f
}

// AckFeatures records the features the driver accepted. f must be a subset of
// SupportedFeatures (EVENTS is accepted even while the link happens to be down, since
// the offer follows the link); it must be called before Attach. The ring features
// (protocol.FeatureEventIdx, protocol.FeatureIndirectDesc) take effect at Attach; GET_INFO reports the
// device-specific bits as capabilities.
func (d *Device) AckFeatures(f protocol.Feature) error {
	if d.closing.Load() {
		return ErrClosed
	}
	if f&^SupportedFeatures != 0 {
		return &FeatureError{Acked: f, Supported: SupportedFeatures}
	}
	d.attMu.Lock()
	defer d.attMu.Unlock()
	if d.att != nil {
		return ErrAttached
	}
	d.negotiated.Store(uint64(f))
	return nil
}

// NegotiatedFeatures returns what the driver acknowledged (zero before AckFeatures and
// after Reset).
func (d *Device) NegotiatedFeatures() protocol.Feature {
	return protocol.Feature(d.negotiated.Load())
}

// Attach sets the device up on the driver's queues (the driver's DRIVER_OK): mem is guest
// memory, layouts the three queues the driver initialised (queue 1 is never used; a zero
// layout is accepted for it), interrupt the used-buffer notification the device raises
// for a queue. interrupt may be nil (a polling driver); it may be called from several
// device goroutines at once, must not block for long and must not call Attach, Reset,
// Shutdown or Close. With a Config.Handler, Attach serves chains already on the request
// queue itself, interrupt included, so interrupt must not need a lock held around Attach.
// Each queue is at most protocol.QueueSize entries.
func (d *Device) Attach(mem *virtqueue.GuestMemory, layouts [protocol.NumQueues]virtqueue.Layout, interrupt func(queue int)) error {
	if d.closing.Load() {
		return ErrClosed
	}
	if interrupt == nil {
		interrupt = func(int) {}
	}
	if err := d.attach(mem, layouts, interrupt); err != nil {
		return err
	}
	// The device looks once at rings the driver filled before DRIVER_OK. With a Handler it
	// does so here, as it serves every kick on the kicking goroutine: had the device
	// goroutine done it, a Notify racing that look would be left to it and answered after
	// Notify returned.
	if d.cfg.Handler != nil {
		d.kickRequests()
	} else {
		d.signal(protocol.QueueRequest)
	}
	d.signal(protocol.QueueEvent)
	return nil
}

// attach validates the layouts and installs the queues under attMu.
func (d *Device) attach(mem *virtqueue.GuestMemory, layouts [protocol.NumQueues]virtqueue.Layout, interrupt func(queue int)) error {
	d.attMu.Lock()
	defer d.attMu.Unlock()
	if d.att != nil {
		return ErrAttached
	}
	f := virtqueue.FeaturesFromBits(d.negotiated.Load())
	var queues [protocol.NumQueues]*virtqueue.DeviceQueue
	for q, l := range layouts {
		if q == protocol.QueueResponse && l == (virtqueue.Layout{}) {
			continue
		}
		if l.Size > protocol.QueueSize {
			return &QueueError{Queue: q, Err: &virtqueue.LayoutError{Field: "size", Value: uint64(l.Size),
				Reason: "larger than the device's queue size 128"}}
		}
		vq, err := virtqueue.NewDeviceQueue(mem, l, f)
		if err != nil {
			return &QueueError{Queue: q, Err: err}
		}
		queues[q] = vq
	}
	d.gen++
	d.att = &attachment{gen: d.gen, req: queues[protocol.QueueRequest], evt: queues[protocol.QueueEvent], interrupt: interrupt}
	return nil
}

// Notify is the driver's kick (available buffer notification) for queue. It never
// blocks: it wakes the device goroutine, and kicks that arrive while the device is busy
// coalesce. Kicks of queue 1 and of unknown queues are ignored, as is any kick before
// Attach.
//
// With a Config.Handler, a kick of the request queue is served on the caller's goroutine
// before Notify returns (see Handler), interrupt included.
func (d *Device) Notify(queue int) {
	switch {
	case queue == protocol.QueueRequest && d.cfg.Handler != nil:
		d.kickRequests()
	case queue == protocol.QueueRequest || queue == protocol.QueueEvent:
		d.signal(queue)
	}
}

func (d *Device) signal(queue int) {
	select {
	case d.kick[queue] <- struct{}{}:
	default:
	}
}

// Reset is the VirtIO device reset: the device detaches from the queues, forgets the
// negotiated features and drops the event backlog. Requests in flight to the SST
// component still complete there, but their answers are discarded (Stats.Stale). The
// link and the counters are kept. After Reset the driver negotiates and attaches again.
func (d *Device) Reset() {
	d.attMu.Lock()
	d.att = nil
	d.gen++
	d.negotiated.Store(0)
	d.attMu.Unlock()
	d.evMu.Lock()
	d.backlog.reset()
	d.evMu.Unlock()
}

// Stats returns a snapshot of the counters.
func (d *Device) Stats() Stats {
	c := &d.stats
	return Stats{
		Requests: c.requests.Load(), Responses: c.responses.Load(), Events: c.events.Load(), Errors: c.errors.Load(),
		Forwarded: c.forwarded.Load(), NoDevice: c.noDevice.Load(), Timeouts: c.timeouts.Load(), Invalid: c.invalid.Load(),
		Stale: c.stale.Load(), EventsDropped: c.eventsDropped.Load(),
		LinkUps: c.linkUps.Load(), LinkDowns: c.linkDowns.Load(), DialFailures: d.link.dialFailures.Load(),
		LinkTimeouts: d.link.timeoutDrops.Load(), LinkProtocolErrors: d.link.protocolDrops.Load(),
		LinkUp: d.linkUp.Load(), InFlight: d.inflight.Load(),
	}
}

// Shutdown stops the device gracefully: it keeps serving until every request in flight to
// the SST component is answered or ctx ends, then disconnects (answering what is left
// NO_DEVICE) and stops its goroutines. It returns ctx.Err() if it had to cut the wait
// short. Later calls return the first call's result. With a Handler no request is in
// flight between calls: each is answered inside the Notify that submitted it, so Shutdown
// does not wait for a Notify under way on another goroutine; that one completes on its
// own, answered NO_DEVICE if the Handler is closed meanwhile.
func (d *Device) Shutdown(ctx context.Context) error {
	d.closeOnce.Do(func() {
		d.closing.Store(true)
		for d.inflight.Load() > 0 && ctx.Err() == nil {
			select {
			case <-d.idle:
			case <-ctx.Done():
			}
		}
		d.closeErr = ctx.Err()
		d.cancelLink()
		<-d.linkDone
		if d.cfg.Handler != nil {
			d.log.Info().Uint64("conn", 1).Msg("SST link down")
			d.linkChanged(false, 1)
		}
		close(d.stop)
		<-d.loopDone
	})
	return d.closeErr
}

// Close stops the device at once: requests in flight are answered NO_DEVICE. It always
// returns nil; it implements io.Closer.
func (d *Device) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = d.Shutdown(ctx)
	return nil
}

// loop is the device goroutine: it serves the queues when kicked.
func (d *Device) loop() {
	defer close(d.loopDone)
	for {
		select {
		case <-d.kick[protocol.QueueRequest]:
			d.kickRequests()
		case <-d.kick[protocol.QueueEvent]:
			d.serviceEvents()
		case <-d.stop:
			return
		}
	}
}

// serviceRequests drains the request queue; the caller holds svcMu (kickRequests). Driver notifications are suppressed while it
// drains and re-enabled, with a re-check, before it sleeps (VirtIO 1.x §2.7.10).
func (d *Device) serviceRequests() {
	d.attMu.RLock()
	a := d.att
	if a == nil || a.broken[protocol.QueueRequest] {
		d.attMu.RUnlock()
		return
	}
	_ = a.req.DisableNotifications()
	for {
		c, ok, err := a.req.Pop()
		if err != nil {
			if d.popFailed(a.req, protocol.QueueRequest, err) {
				a.broken[protocol.QueueRequest] = true
				break
			}
			continue
		}
		if !ok {
			pending, err := a.req.EnableNotifications()
			if err != nil || !pending {
				break
			}
			_ = a.req.DisableNotifications()
			continue
		}
		d.process(a, c)
	}
	need := a.req.NeedsInterrupt()
	d.attMu.RUnlock()
	if need {
		a.interrupt(protocol.QueueRequest)
	}
}

// popFailed accounts for a chain Pop refused and reports whether the queue is unusable
// until the next reset.
func (d *Device) popFailed(q *virtqueue.DeviceQueue, queue int, err error) (broken bool) {
	d.stats.errors.Add(1)
	if queue == protocol.QueueRequest {
		d.stats.requests.Add(1)
	}
	var ce *virtqueue.ChainError
	if errors.As(err, &ce) {
		d.log.Warn().Int("queue", queue).Err(err).Msg("malformed chain")
		if ce.Returnable() {
			if perr := q.PushUsed(ce.Head, 0); perr != nil {
				d.log.Warn().Int("queue", queue).Err(perr).Msg("cannot return malformed chain")
			}
		}
		return false
	}
	d.log.Error().Int("queue", queue).Err(err).Msg("queue broken until reset")
	return true
}

// process handles one request chain on the device goroutine: size checks, then an answer
// of its own or a hand-off to the link.
func (d *Device) process(a *attachment, c virtqueue.Chain) {
	d.stats.requests.Add(1)
	if d.cfg.Handler != nil && d.handleInPlace(a, c) {
		return
	}
	s := d.getForwarded()
	n, err := c.Gather(s.req[:])
	resp := d.scratch[:]
	switch {
	case err != nil || n < protocol.RequestSize:
		d.stats.errors.Add(1)
		d.log.Debug().Uint16("head", c.Head).Int("readable", n).Msg("request too short")
		statusResponse(resp, protocol.StatusError, s.req[:n])
	case c.WritableLen() < protocol.ResponseSize:
		d.stats.errors.Add(1)
		d.log.Debug().Uint16("head", c.Head).Uint64("writable", c.WritableLen()).Msg("response buffer too short")
		statusResponse(resp, protocol.StatusError, s.req[:])
	default:
		switch t := requestType(s.req[:]); RouteOf(t) {
		case RouteForward:
			if d.cfg.Handler != nil {
				d.handleDirect(t, s.req[:], resp)
				break
			}
			s.chain, s.gen = c, a.gen
			d.inflight.Add(1)
			if d.link.forward(s) {
				d.stats.forwarded.Add(1)
				return
			}
			d.doneInflight()
			s.chain = virtqueue.Chain{}
			d.stats.noDevice.Add(1)
			statusResponse(resp, protocol.StatusNoDevice, s.req[:])
		case RouteInvalid:
			d.stats.invalid.Add(1)
			d.ans.answer(s.req[:], resp, protocol.Feature(d.negotiated.Load()))
		default:
			d.ans.answer(s.req[:], resp, protocol.Feature(d.negotiated.Load()))
			if t == protocol.ReqReset {
				d.emit(protocol.EventReset, binary.LittleEndian.Uint64(s.req[protocol.RequestIDOffset:]))
			}
		}
	}
	d.putForwarded(s)
	d.reply(a.req, c, resp)
}

// reply writes resp into the chain's writable buffers (as much as fits) and returns the
// chain with the number of bytes written.
func (d *Device) reply(q *virtqueue.DeviceQueue, c virtqueue.Chain, resp []byte) {
	n, _ := c.Scatter(resp)
	d.returnChain(q, c, n)
}

// returnChain gives the chain back to the driver with n bytes of answer written.
func (d *Device) returnChain(q *virtqueue.DeviceQueue, c virtqueue.Chain, n int) {
	if err := q.PushUsed(c.Head, uint32(n)); err != nil {
		d.stats.errors.Add(1)
		d.log.Warn().Uint16("head", c.Head).Err(err).Msg("cannot return chain")
		return
	}
	if n == protocol.ResponseSize {
		d.stats.responses.Add(1)
	}
}

// complete implements linkClient: it answers a forwarded chain from a link goroutine.
func (d *Device) complete(s *forwarded, resp []byte, st protocol.Status) {
	switch st {
	case protocol.StatusOK:
		copy(resp[protocol.ResponseRequestIDOffset:][:protocol.IDsSize], s.req[protocol.RequestIDOffset:][:protocol.IDsSize])
	case protocol.StatusTimeout:
		d.stats.timeouts.Add(1)
		statusResponse(resp, st, s.req[:])
	default:
		d.stats.noDevice.Add(1)
		statusResponse(resp, st, s.req[:])
	}
	d.attMu.RLock()
	if a := d.att; a != nil && a.gen == s.gen {
		d.reply(a.req, s.chain, resp)
	} else {
		d.stats.stale.Add(1)
	}
	d.attMu.RUnlock()
	s.chain = virtqueue.Chain{}
	d.putForwarded(s)
	d.doneInflight()
}

// flush implements linkClient: it raises the request queue's interrupt if due.
func (d *Device) flush() {
	d.attMu.RLock()
	a := d.att
	need := a != nil && a.req.NeedsInterrupt()
	d.attMu.RUnlock()
	if need {
		a.interrupt(protocol.QueueRequest)
	}
}

// linkChanged implements linkClient: it updates the offered features and queues a link
// event whose data is the connection number.
func (d *Device) linkChanged(up bool, conn uint64) {
	d.linkUp.Store(up)
	if up {
		d.stats.linkUps.Add(1)
		d.emit(protocol.EventLinkUp, conn)
	} else {
		d.stats.linkDowns.Add(1)
		d.emit(protocol.EventLinkDown, conn)
	}
}

func (d *Device) doneInflight() {
	if d.inflight.Add(-1) == 0 && d.closing.Load() {
		select {
		case d.idle <- struct{}{}:
		default:
		}
	}
}

// emit queues an event for the driver, timestamped in Unix nanoseconds.
func (d *Device) emit(t protocol.EventType, data uint64) {
	e := protocol.Event{Type: t, Timestamp: uint64(time.Now().UnixNano()), Data: data}
	d.evMu.Lock()
	dropped := d.backlog.push(e)
	d.evMu.Unlock()
	if dropped {
		d.stats.eventsDropped.Add(1)
	}
	d.signal(protocol.QueueEvent)
}

// serviceEvents fills posted event buffers from the backlog.
func (d *Device) serviceEvents() {
	d.attMu.RLock()
	a := d.att
	if a == nil || a.broken[protocol.QueueEvent] {
		d.attMu.RUnlock()
		return
	}
	var buf [protocol.EventSize]byte
	d.evMu.Lock()
	for d.backlog.n > 0 {
		c, ok, err := a.evt.Pop()
		if err != nil {
			if d.popFailed(a.evt, protocol.QueueEvent, err) {
				a.broken[protocol.QueueEvent] = true
				break
			}
			continue
		}
		if !ok {
			break
		}
		if c.WritableLen() < protocol.EventSize {
			d.stats.errors.Add(1)
			if err := a.evt.PushUsed(c.Head, 0); err != nil {
				d.log.Warn().Uint16("head", c.Head).Err(err).Msg("cannot return event buffer")
			}
			continue
		}
		e := d.backlog.front()
		_ = e.Encode(buf[:])
		n, _ := c.Scatter(buf[:])
		if err := a.evt.PushUsed(c.Head, uint32(n)); err != nil {
			d.stats.errors.Add(1)
			continue
		}
		d.backlog.pop()
		d.stats.events.Add(1)
	}
	d.evMu.Unlock()
	need := a.evt.NeedsInterrupt()
	d.attMu.RUnlock()
	if need {
		a.interrupt(protocol.QueueEvent)
	}
}

func (d *Device) getForwarded() *forwarded {
	select {
	case s := <-d.free:
		return s
	default:
		return new(forwarded)
	}
}

func (d *Device) putForwarded(s *forwarded) {
	select {
	case d.free <- s:
	default:
	}
}
