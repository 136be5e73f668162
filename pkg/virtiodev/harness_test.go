package virtiodev

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// waitLimit bounds every wait in the tests: far above any legitimate latency.
const waitLimit = 5 * time.Second

// guestMemSize is the emulated guest memory of a harness: rings plus buffers.
const guestMemSize = 8 << 20

// harness plays the driver (layer 3) against a Device: it owns guest memory, the driver
// side of the queues and a pool of request/response buffer pairs.
type harness struct {
	t   testing.TB
	mem *virtqueue.GuestMemory
	req *virtqueue.Driver
	evt *virtqueue.Driver
	dev *Device

	layouts [protocol.NumQueues]virtqueue.Layout // of the current attachment

	mu      sync.Mutex
	waiters map[uint16]chan virtqueue.UsedElem
	pairs   chan bufPair
	evHeads map[uint16]uint64 // event buffer head → address
	events  chan protocol.Event
	evLens  chan uint32

	interrupts [protocol.NumQueues]atomic.Uint64
}

// bufPair is one request buffer and one response buffer in guest memory.
type bufPair struct{ reqAddr, respAddr uint64 }

// harnessOpts shapes a harness.
type harnessOpts struct {
	features protocol.Feature // acknowledged; 0 means everything offered except EVENTS
	noAck    bool             // skip AckFeatures
}

func newHarness(t testing.TB, cfg Config, o harnessOpts) *harness {
	t.Helper()
	dev, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = dev.Close() })
	h := &harness{
		t: t, dev: dev, mem: virtqueue.NewGuestMemory(guestMemSize),
		waiters: map[uint16]chan virtqueue.UsedElem{},
		pairs:   make(chan bufPair, protocol.QueueSize),
		evHeads: map[uint16]uint64{},
		events:  make(chan protocol.Event, 1024),
		evLens:  make(chan uint32, 1024),
	}
	if !o.noAck {
		f := o.features
		if f == 0 {
			f = protocol.BaseFeatures | protocol.TransportFeatures
		}
		require.NoError(t, dev.AckFeatures(f))
	}
	h.attach()
	for range protocol.QueueSize {
		r, err := h.mem.Alloc(protocol.RequestSize, 8)
		require.NoError(t, err)
		w, err := h.mem.Alloc(protocol.ResponseSize, 8)
		require.NoError(t, err)
		h.pairs <- bufPair{r, w}
	}
	return h
}

// attach sets up fresh driver queues and attaches them.
func (h *harness) attach() {
	h.t.Helper()
	h.newQueues()
	require.NoError(h.t, h.dev.Attach(h.mem, h.layouts, h.interrupt))
}

// newQueues sets up fresh driver queues without attaching them, so that a test can post
// buffers before the driver's DRIVER_OK.
func (h *harness) newQueues() {
	h.t.Helper()
	f := virtqueue.FeaturesFromBits(uint64(h.dev.NegotiatedFeatures()))
	var layouts [protocol.NumQueues]virtqueue.Layout
	for q := range layouts {
		l, err := h.mem.AllocQueue(protocol.QueueSize)
		require.NoError(h.t, err)
		layouts[q] = l
	}
	h.layouts = layouts
	var err error
	h.req, err = virtqueue.NewDriver(h.mem, layouts[protocol.QueueRequest], f)
	require.NoError(h.t, err)
	h.evt, err = virtqueue.NewDriver(h.mem, layouts[protocol.QueueEvent], f)
	require.NoError(h.t, err)
	h.mu.Lock()
	h.waiters = map[uint16]chan virtqueue.UsedElem{}
	h.evHeads = map[uint16]uint64{}
	h.mu.Unlock()
}

// interrupt is the driver's interrupt handler.
func (h *harness) interrupt(q int) {
	h.interrupts[q].Add(1)
	switch q {
	case protocol.QueueRequest:
		h.collect()
	case protocol.QueueEvent:
		h.collectEvents()
	}
}

func (h *harness) collect() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		u, ok, err := h.req.PopUsed()
		if err != nil {
			h.t.Errorf("PopUsed: %v", err)
			return
		}
		if !ok {
			return
		}
		ch := h.waiters[u.ID]
		delete(h.waiters, u.ID)
		if ch == nil {
			h.t.Errorf("used chain %d nobody waits for", u.ID)
			continue
		}
		ch <- u
	}
}

func (h *harness) collectEvents() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		u, ok, err := h.evt.PopUsed()
		if err != nil {
			h.t.Errorf("event PopUsed: %v", err)
			return
		}
		if !ok {
			return
		}
		addr := h.evHeads[u.ID]
		delete(h.evHeads, u.ID)
		h.evLens <- u.Len
		if u.Len < protocol.EventSize {
			continue
		}
		b := make([]byte, protocol.EventSize)
		if err := h.mem.ReadAt(b, addr); err != nil {
			h.t.Errorf("reading event: %v", err)
			return
		}
		var e protocol.Event
		require.NoError(h.t, e.Decode(b))
		h.events <- e
	}
}

// submit places a chain and kicks the device; the returned channel receives its used
// element.
func (h *harness) submit(bufs []virtqueue.Buffer) <-chan virtqueue.UsedElem {
	h.t.Helper()
	ch, notify := h.post(bufs)
	if notify {
		h.dev.Notify(protocol.QueueRequest)
	}
	return ch
}

// post places a chain without kicking the device and reports whether the device asked
// to be notified; the returned channel receives the chain's used element.
func (h *harness) post(bufs []virtqueue.Buffer) (<-chan virtqueue.UsedElem, bool) {
	h.t.Helper()
	ch := make(chan virtqueue.UsedElem, 1)
	h.mu.Lock()
	head, err := h.req.Add(bufs)
	if err != nil {
		h.mu.Unlock()
		h.t.Fatalf("Add: %v", err)
	}
	h.waiters[head] = ch
	notify, err := h.req.Publish()
	h.mu.Unlock()
	require.NoError(h.t, err)
	return ch, notify
}

// wait returns the used element of a submitted chain or fails the test.
func (h *harness) wait(ch <-chan virtqueue.UsedElem) virtqueue.UsedElem {
	h.t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(waitLimit):
		h.t.Fatalf("no completion within %v; stats %+v", waitLimit, h.dev.Stats())
		return virtqueue.UsedElem{}
	}
}

// do sends one well-formed request and returns the decoded response and used length.
func (h *harness) do(r *protocol.Request) (protocol.Response, uint32) {
	h.t.Helper()
	p := <-h.pairs
	defer func() { h.pairs <- p }()
	enc, err := r.MarshalBinary()
	require.NoError(h.t, err)
	require.NoError(h.t, h.mem.WriteAt(enc, p.reqAddr))
	require.NoError(h.t, h.mem.Zero(p.respAddr, protocol.ResponseSize))
	u := h.wait(h.submit([]virtqueue.Buffer{
		{Addr: p.reqAddr, Len: protocol.RequestSize},
		{Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true},
	}))
	return h.readResponse(p.respAddr), u.Len
}

func (h *harness) readResponse(addr uint64) protocol.Response {
	h.t.Helper()
	b := make([]byte, protocol.ResponseSize)
	require.NoError(h.t, h.mem.ReadAt(b, addr))
	var resp protocol.Response
	require.NoError(h.t, resp.Decode(b))
	return resp
}

// postEventBuffers posts n writable event buffers of size bytes each.
func (h *harness) postEventBuffers(n int, size uint32) {
	h.t.Helper()
	h.mu.Lock()
	for range n {
		a, err := h.mem.Alloc(uint64(size), 8)
		require.NoError(h.t, err)
		head, err := h.evt.Add([]virtqueue.Buffer{{Addr: a, Len: size, Writable: true}})
		require.NoError(h.t, err)
		h.evHeads[head] = a
	}
	notify, err := h.evt.Publish()
	h.mu.Unlock()
	require.NoError(h.t, err)
	if notify {
		h.dev.Notify(protocol.QueueEvent)
	}
}

// nextEvent returns the next delivered event or fails.
func (h *harness) nextEvent() protocol.Event {
	h.t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(waitLimit):
		h.t.Fatalf("no event within %v", waitLimit)
		return protocol.Event{}
	}
}

// eventually polls cond until it holds or fails the test.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fakeSST is a stand-in for layer 5 whose answers are easy to recognise: status OK,
// request_id and user_data echoed, result = fakeResultBase + type, and the first 8
// payload bytes = request_id XOR fakeMark. It can be slowed down, batch its answers,
// refuse connections and kill the ones it has.
type fakeSST struct {
	delay  atomic.Int64  // nanoseconds before each answer
	batch  int           // read this many requests before answering any (pipelining)
	alter  bool          // answer with request_id and user_data scrambled
	down   atomic.Bool   // refuse new connections
	served atomic.Uint64 // requests answered

	mu    sync.Mutex
	conns map[io.ReadWriteCloser]struct{}
}

const (
	fakeResultBase = 0x5E5700
	fakeMark       = 0xA5A5A5A5A5A5A5A5
)

var errFakeDown = errors.New("fake SST is down")

func newFakeSST() *fakeSST { return &fakeSST{conns: map[io.ReadWriteCloser]struct{}{}} }

// dialer connects through an in-memory pipe while the fake is up. The fake's end is
// admitted before the dial returns, so a kill right after a dial closes it.
func (f *fakeSST) dialer() Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		dev, comp := newMemConns()
		if !f.admit(comp) {
			_ = dev.Close()
			return nil, errFakeDown
		}
		go func() { _ = f.serve(ctx, comp) }()
		return dev, nil
	}
}

// admit registers conn for kill, or closes it and reports false when the fake is down.
// It and kill hold the lock, so no connection is admitted after a kill has closed the
// others.
func (f *fakeSST) admit(conn io.ReadWriteCloser) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down.Load() {
		_ = conn.Close()
		return false
	}
	f.conns[conn] = struct{}{}
	return true
}

// kill takes the fake down and closes its connections.
func (f *fakeSST) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down.Store(true)
	for c := range f.conns {
		_ = c.Close()
	}
}

// fakeAnswer is what the fake answers to r, worked out from its definition.
func fakeAnswer(r *protocol.Request) protocol.Response {
	var resp protocol.Response
	resp.ReplyTo(r)
	resp.Result = fakeResultBase + uint64(r.Type)
	for i := range 8 {
		resp.Payload[i] = byte((r.RequestID ^ fakeMark) >> (8 * i))
	}
	return resp
}

// serve answers one admitted connection until it fails or closes.
func (f *fakeSST) serve(ctx context.Context, conn io.ReadWriteCloser) error {
	defer func() {
		f.mu.Lock()
		delete(f.conns, conn)
		f.mu.Unlock()
		_ = conn.Close()
	}()
	buf := make([]byte, protocol.RequestSize)
	out := make([]byte, protocol.ResponseSize)
	var pending []protocol.Response
	for {
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		var r protocol.Request
		if err := r.Decode(buf); err != nil {
			return err
		}
		resp := fakeAnswer(&r)
		if f.alter {
			resp.RequestID, resp.UserData = ^resp.RequestID, ^resp.UserData
		}
		pending = append(pending, resp)
		if len(pending) < max(f.batch, 1) {
			continue
		}
		for i := range pending {
			if d := time.Duration(f.delay.Load()); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			_ = pending[i].Encode(out)
			if _, err := conn.Write(out); err != nil {
				return err
			}
			f.served.Add(1)
		}
		pending = pending[:0]
	}
}

// unixFake serves a fakeSST on a Unix socket and can be stopped and restarted on the
// same path.
type unixFake struct {
	f    *fakeSST
	path string
	l    net.Listener
	wg   sync.WaitGroup // serving goroutines
	// accepting is closed when the accept loop has returned.
	accepting chan struct{}
}

func startUnixFake(t testing.TB, f *fakeSST, path string) *unixFake {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	u := &unixFake{f: f, path: path, l: l, accepting: make(chan struct{})}
	go func() {
		defer close(u.accepting)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if f.admit(c) {
				u.wg.Go(func() { _ = f.serve(context.Background(), c) })
			}
		}
	}()
	return u
}

// stop closes the listener and, once nothing more is accepted, every connection, and
// waits for them to end.
func (u *unixFake) stop() {
	_ = u.l.Close()
	<-u.accepting
	u.f.kill()
	u.f.down.Store(false)
	u.wg.Wait()
}
