package virtiodev

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// prompt is how fast a NO_DEVICE answer must come while the link is down: no waiting on
// the link, so far below any back-off or layer-3 timeout.
const prompt = 200 * time.Millisecond

func fastConfig(d Dialer) Config {
	return Config{Dialer: d, DeviceID: 7, ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond}
}

// upHarness returns a harness whose device is connected to a fresh fake SST.
func upHarness(t *testing.T, f *fakeSST, o harnessOpts) *harness {
	t.Helper()
	h := newHarness(t, fastConfig(f.dialer()), o)
	eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })
	return h
}

func newRequest(typ protocol.RequestType, id, user uint64) *protocol.Request {
	r := &protocol.Request{Type: typ, RequestID: id, UserData: user}
	for i := range r.Payload {
		r.Payload[i] = byte(i*7 + int(id))
	}
	return r
}

func TestRouteOf(t *testing.T) {
	tests := []struct {
		typ  protocol.RequestType
		want Route
	}{
		{protocol.ReqNoop, RouteDevice},
		{protocol.ReqEcho, RouteDevice},
		{protocol.ReqCompute, RouteForward},
		{protocol.ReqRead, RouteForward},
		{protocol.ReqWrite, RouteForward},
		{protocol.ReqReset, RouteDevice},
		{protocol.ReqGetInfo, RouteDevice},
		{protocol.ReqConfigure, RouteForward},
		{protocol.ReqGEMM, RouteForward}, // the reference answers INVALID; sstemu forwards
		{protocol.ReqBatchedGEMM, RouteForward},
		{protocol.ReqGEMMList, RouteForward},
		{11, RouteInvalid},
		{0xFFFFFFFF, RouteInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			assert.Equal(t, tt.want, RouteOf(tt.typ))
		})
	}
}

func TestNewConfigErrors(t *testing.T) {
	d := newFakeSST().dialer()
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"max below min", Config{Dialer: d, ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "ReconnectMax"},
		{"negative timeout", Config{Dialer: d, ResponseTimeout: -1}, "ResponseTimeout"},
		{"negative backlog", Config{Dialer: d, EventBacklog: -1}, "EventBacklog"},
		{"no link to layer 5", Config{}, "Dialer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
		})
	}
}

func TestFeaturesAndConfig(t *testing.T) {
	f := newFakeSST()
	f.down.Store(true)
	dev, err := New(fastConfig(f.dialer()))
	require.NoError(t, err)
	defer dev.Close()

	base := protocol.FeatureEcho | protocol.FeatureCompute | protocol.FeatureMemory | protocol.FeatureReset
	transport := protocol.Feature(1<<28 | 1<<29 | 1<<32)
	assert.Equal(t, base|transport, dev.OfferedFeatures(), "link down: no EVENTS")
	f.down.Store(false)
	eventually(t, "link up", func() bool { return dev.Stats().LinkUp })
	assert.Equal(t, base|protocol.FeatureEvents|transport, dev.OfferedFeatures(), "link up: EVENTS offered")

	var fe *FeatureError
	require.ErrorAs(t, dev.AckFeatures(protocol.FeatureMultiQueue|protocol.FeatureEcho), &fe)
	assert.Equal(t, protocol.FeatureMultiQueue, fe.Acked&^fe.Supported)

	require.NoError(t, dev.AckFeatures(protocol.FeatureEcho|protocol.FeatureEvents|protocol.FeatureEventIdx))
	assert.Equal(t, protocol.ConfigSpace{Version: 0x00010000, DeviceID: 7,
		Features: protocol.FeatureEcho | protocol.FeatureEvents, MaxQueues: 1}, dev.ConfigSpace())

	mem := virtqueue.NewGuestMemory(1 << 20)
	var layouts [protocol.NumQueues]virtqueue.Layout
	for q := range layouts {
		layouts[q], err = mem.AllocQueue(protocol.QueueSize)
		require.NoError(t, err)
	}
	require.NoError(t, dev.Attach(mem, layouts, nil))
	assert.ErrorIs(t, dev.AckFeatures(protocol.FeatureEcho), ErrAttached)
	assert.ErrorIs(t, dev.Attach(mem, layouts, nil), ErrAttached)

	dev.Reset()
	assert.Equal(t, protocol.Feature(0), dev.NegotiatedFeatures())
	assert.Equal(t, protocol.Feature(0), dev.ConfigSpace().Features)
	require.NoError(t, dev.AckFeatures(protocol.FeatureCompute))
	require.NoError(t, dev.Attach(mem, layouts, nil))

	require.NoError(t, dev.Close())
	assert.ErrorIs(t, dev.AckFeatures(0), ErrClosed)
	assert.ErrorIs(t, dev.Attach(mem, layouts, nil), ErrClosed)
	dev.Notify(protocol.QueueRequest) // a no-op, and must not block
}

func TestAttachErrors(t *testing.T) {
	mem := virtqueue.NewGuestMemory(1 << 20)
	good, err := mem.AllocQueue(protocol.QueueSize)
	require.NoError(t, err)
	good2, err := mem.AllocQueue(protocol.QueueSize)
	require.NoError(t, err)
	big, err := mem.AllocQueue(2 * protocol.QueueSize)
	require.NoError(t, err)
	tests := []struct {
		name    string
		layouts [protocol.NumQueues]virtqueue.Layout
		queue   int // -1: accepted
	}{
		{"queue 1 unset", [protocol.NumQueues]virtqueue.Layout{good, {}, good2}, -1},
		{"request queue too big", [protocol.NumQueues]virtqueue.Layout{big, {}, good2}, protocol.QueueRequest},
		{"event queue unset", [protocol.NumQueues]virtqueue.Layout{good, {}, {}}, protocol.QueueEvent},
		{"request queue outside memory", [protocol.NumQueues]virtqueue.Layout{{Size: 16, Desc: 1 << 30, Avail: 1 << 30, Used: 1 << 30}, {}, good2}, protocol.QueueRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, err := New(fastConfig(newFakeSST().dialer()))
			require.NoError(t, err)
			defer dev.Close()
			err = dev.Attach(mem, tt.layouts, nil)
			if tt.queue < 0 {
				require.NoError(t, err)
				return
			}
			var qe *QueueError
			require.ErrorAs(t, err, &qe)
			assert.Equal(t, tt.queue, qe.Queue)
		})
	}
}

// TestAnswers sends every request type through the ring and checks the answer, worked
// out from docs/sst-protocol.md §The virtio-sst device (device answers) or from the fake SST's definition (forwarded).
func TestAnswers(t *testing.T) {
	f := newFakeSST()
	acked := protocol.FeatureEcho | protocol.FeatureCompute | protocol.FeatureMemory | protocol.FeatureVersion1
	h := upHarness(t, f, harnessOpts{features: acked})

	type check func(t *testing.T, req *protocol.Request, resp protocol.Response)
	wantStatusOnly := func(st protocol.Status) check {
		return func(t *testing.T, req *protocol.Request, resp protocol.Response) {
			assert.Equal(t, st, resp.Status)
			assert.Zero(t, resp.Result)
			assert.Equal(t, [protocol.MaxDataSize]byte{}, resp.Payload)
		}
	}
	forwarded := func(t *testing.T, req *protocol.Request, resp protocol.Response) {
		assert.Equal(t, fakeAnswer(req), resp)
	}
	tests := []struct {
		typ   protocol.RequestType
		check check
	}{
		{protocol.ReqNoop, wantStatusOnly(protocol.StatusOK)},
		{protocol.ReqEcho, func(t *testing.T, req *protocol.Request, resp protocol.Response) {
			assert.Equal(t, protocol.StatusOK, resp.Status)
			assert.Equal(t, req.Payload, resp.Payload)
		}},
		{protocol.ReqGetInfo, func(t *testing.T, req *protocol.Request, resp protocol.Response) {
			assert.Equal(t, protocol.StatusOK, resp.Status)
			assert.Equal(t, protocol.Info{Version: 0x00010000, Capabilities: 0b111, // ECHO|COMPUTE|MEMORY
				MaxComputeUnits: 1000000, MemorySize: 0x10000000}, resp.Info())
		}},
		{protocol.ReqReset, wantStatusOnly(protocol.StatusOK)},
		{protocol.ReqCompute, forwarded},
		{protocol.ReqRead, forwarded},
		{protocol.ReqWrite, forwarded},
		{protocol.ReqConfigure, forwarded},
		{protocol.ReqGEMM, forwarded},
		{protocol.ReqBatchedGEMM, forwarded},
		{protocol.ReqGEMMList, forwarded},
		{11, wantStatusOnly(protocol.StatusInvalid)},
		{0xFFFFFFFF, wantStatusOnly(protocol.StatusInvalid)},
	}
	for i, tt := range tests {
		t.Run(tt.typ.String(), func(t *testing.T) {
			req := newRequest(tt.typ, uint64(100+i), 0xC0FFEE00+uint64(i))
			resp, n := h.do(req)
			assert.Equal(t, uint32(protocol.ResponseSize), n)
			assert.Equal(t, req.RequestID, resp.RequestID)
			assert.Equal(t, req.UserData, resp.UserData)
			tt.check(t, req, resp)
		})
	}
	st := h.dev.Stats()
	assert.Equal(t, uint64(len(tests)), st.Requests)
	assert.Equal(t, uint64(len(tests)), st.Responses)
	assert.Equal(t, uint64(7), st.Forwarded)
	assert.Equal(t, uint64(2), st.Invalid)
	assert.Zero(t, st.Errors)
	assert.Equal(t, uint64(7), f.served.Load())
}

// TestSizeChecks sends chains with too little room on either side.
func TestSizeChecks(t *testing.T) {
	h := upHarness(t, newFakeSST(), harnessOpts{})
	req := newRequest(protocol.ReqCompute, 0x1111, 0x2222)
	enc, err := req.MarshalBinary()
	require.NoError(t, err)

	tests := []struct {
		name      string
		readable  []uint32 // readable buffer sizes, filled with the start of enc
		writable  []uint32
		wantLen   uint32
		wantSt    protocol.Status
		wantID    uint64 // request_id expected in the response (when it holds one)
		wantUser  uint64
		wantError bool
	}{
		{"exact, split buffers", []uint32{24, 4080}, []uint32{32, 4080}, 4112, fakeStatus, 0x1111, 0x2222, false},
		{"readable 4103", []uint32{4103}, []uint32{4112}, 4112, protocol.StatusError, 0x1111, 0x2222, true},
		{"readable 20: request_id only", []uint32{20}, []uint32{4112}, 4112, protocol.StatusError, 0x1111, 0, true},
		{"readable 12: no ids", []uint32{12}, []uint32{4112}, 4112, protocol.StatusError, 0, 0, true},
		{"no readable part", nil, []uint32{4112}, 4112, protocol.StatusError, 0, 0, true},
		{"writable 4111", []uint32{4104}, []uint32{4111}, 4111, protocol.StatusError, 0x1111, 0x2222, true},
		{"writable 4", []uint32{4104}, []uint32{4}, 4, protocol.StatusError, 0, 0, true},
		{"no writable part", []uint32{4104}, nil, 0, 0, 0, 0, true},
		{"bigger buffers", []uint32{8192}, []uint32{8192}, 4112, fakeStatus, 0x1111, 0x2222, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.dev.Stats()
			var bufs []virtqueue.Buffer
			off := 0
			for _, n := range tt.readable {
				a, err := h.mem.Alloc(uint64(n), 8)
				require.NoError(t, err)
				if off < len(enc) {
					require.NoError(t, h.mem.WriteAt(enc[off:min(len(enc), off+int(n))], a))
				}
				off += int(n)
				bufs = append(bufs, virtqueue.Buffer{Addr: a, Len: n})
			}
			var outs []virtqueue.Buffer
			for _, n := range tt.writable {
				a, err := h.mem.Alloc(uint64(n), 8)
				require.NoError(t, err)
				outs = append(outs, virtqueue.Buffer{Addr: a, Len: n, Writable: true})
			}
			u := h.wait(h.submit(append(bufs, outs...)))
			require.Equal(t, tt.wantLen, u.Len)
			got := make([]byte, 0, protocol.ResponseSize)
			for _, o := range outs {
				b := make([]byte, o.Len)
				require.NoError(t, h.mem.ReadAt(b, o.Addr))
				got = append(got, b...)
			}
			got = got[:u.Len]
			after := h.dev.Stats()
			if tt.wantError {
				assert.Equal(t, before.Errors+1, after.Errors)
			} else {
				assert.Equal(t, before.Errors, after.Errors)
			}
			if u.Len >= 4 {
				assert.Equal(t, tt.wantSt, protocol.Status(binary.LittleEndian.Uint32(got)))
			}
			if u.Len >= 16 {
				assert.Equal(t, tt.wantID, binary.LittleEndian.Uint64(got[8:]))
			}
			if u.Len >= 24 {
				assert.Equal(t, tt.wantUser, binary.LittleEndian.Uint64(got[16:]))
			}
		})
	}
}

// fakeStatus is the status the fake SST answers with.
const fakeStatus = protocol.StatusOK

// TestMalformedChain corrupts a descriptor so that it points outside guest memory; the
// device must return the chain with used length 0 and count an error.
func TestMalformedChain(t *testing.T) {
	h := upHarness(t, newFakeSST(), harnessOpts{})
	p := <-h.pairs
	h.mu.Lock()
	head, err := h.req.Add([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize}, {Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}})
	require.NoError(t, err)
	ch := make(chan virtqueue.UsedElem, 1)
	h.waiters[head] = ch
	// desc.addr is the first field of descriptor head.
	require.NoError(t, h.mem.WriteU64(h.layouts[protocol.QueueRequest].Desc+virtqueue.DescSize*uint64(head), guestMemSize+4096))
	_, err = h.req.Publish()
	h.mu.Unlock()
	require.NoError(t, err)
	h.dev.Notify(protocol.QueueRequest)
	u := h.wait(ch)
	assert.Zero(t, u.Len)
	st := h.dev.Stats()
	assert.Equal(t, uint64(1), st.Errors)
	assert.Equal(t, uint64(1), st.Requests)

	// The queue still works afterwards.
	resp, n := h.do(newRequest(protocol.ReqNoop, 5, 6))
	assert.Equal(t, uint32(protocol.ResponseSize), n)
	assert.Equal(t, protocol.StatusOK, resp.Status)
}

// TestNoDeviceWhileDown: with no SST, forwarded types are answered NO_DEVICE at once and
// the device's own types still work.
func TestNoDeviceWhileDown(t *testing.T) {
	f := newFakeSST()
	f.down.Store(true)
	h := newHarness(t, fastConfig(f.dialer()), harnessOpts{})
	for _, typ := range []protocol.RequestType{protocol.ReqCompute, protocol.ReqRead, protocol.ReqWrite, protocol.ReqConfigure, protocol.ReqGEMM, protocol.ReqBatchedGEMM} {
		t.Run(typ.String(), func(t *testing.T) {
			start := time.Now()
			resp, n := h.do(newRequest(typ, 42, 43))
			assert.Less(t, time.Since(start), prompt)
			assert.Equal(t, uint32(protocol.ResponseSize), n)
			assert.Equal(t, protocol.StatusNoDevice, resp.Status)
			assert.Equal(t, uint64(42), resp.RequestID)
			assert.Equal(t, uint64(43), resp.UserData)
		})
	}
	resp, _ := h.do(newRequest(protocol.ReqNoop, 1, 2))
	assert.Equal(t, protocol.StatusOK, resp.Status)
	st := h.dev.Stats()
	assert.Equal(t, uint64(6), st.NoDevice)
	assert.Zero(t, st.Forwarded)
	assert.False(t, st.LinkUp)
	// The answers do not wait for the link goroutine's first dial, which may come after
	// them on a loaded machine.
	eventually(t, "a failed dial", func() bool { return h.dev.Stats().DialFailures > 0 })
}

// TestInFlightFailsWhenLinkBreaks: a request waiting on a slow SST is answered NO_DEVICE
// as soon as the SST goes away, and the device recovers when it comes back.
func TestInFlightFailsWhenLinkBreaks(t *testing.T) {
	f := newFakeSST()
	f.delay.Store(int64(time.Hour))
	h := upHarness(t, f, harnessOpts{})
	p := <-h.pairs
	enc, err := newRequest(protocol.ReqCompute, 9, 10).MarshalBinary()
	require.NoError(t, err)
	require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
	ch := h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize}, {Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}})
	eventually(t, "request in flight", func() bool { return h.dev.Stats().InFlight == 1 })
	killed := time.Now()
	f.kill()
	u := h.wait(ch)
	assert.Less(t, time.Since(killed), prompt)
	assert.Equal(t, uint32(protocol.ResponseSize), u.Len)
	resp := h.readResponse(p.respAddr)
	assert.Equal(t, protocol.StatusNoDevice, resp.Status)
	assert.Equal(t, uint64(9), resp.RequestID)
	h.pairs <- p
	assert.Zero(t, h.dev.Stats().InFlight)

	f.delay.Store(0)
	f.down.Store(false)
	// LinkUp alone can still be the old link's, between its failed requests' answers and
	// its LINK_DOWN; the second LINK_UP is the new link's.
	eventually(t, "reconnect", func() bool { return h.dev.Stats().LinkUps == 2 })
	req := newRequest(protocol.ReqGEMM, 11, 12)
	resp, _ = h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
	st := h.dev.Stats()
	assert.Equal(t, uint64(2), st.LinkUps)
	assert.Equal(t, uint64(1), st.LinkDowns)
}

// TestRecoveryUnixSocket runs the SST on a real Unix socket, stops it, and starts it
// again on the same path: the device reconnects without being restarted.
func TestRecoveryUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sst.sock")
	f := newFakeSST()
	srv := startUnixFake(t, f, path)
	h := newHarness(t, fastConfig(UnixDialer(path)), harnessOpts{})
	eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })

	req := newRequest(protocol.ReqCompute, 1, 2)
	resp, _ := h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)

	srv.stop()
	eventually(t, "link down", func() bool { return !h.dev.Stats().LinkUp })
	start := time.Now()
	resp, _ = h.do(newRequest(protocol.ReqCompute, 3, 4))
	assert.Less(t, time.Since(start), prompt)
	assert.Equal(t, protocol.StatusNoDevice, resp.Status)

	srv = startUnixFake(t, f, path)
	defer srv.stop()
	eventually(t, "link up again", func() bool { return h.dev.Stats().LinkUp })
	req = newRequest(protocol.ReqCompute, 5, 6)
	resp, _ = h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
	assert.Equal(t, uint64(2), h.dev.Stats().LinkUps)
}

// TestPipelining: the fake SST answers nothing until it has read a whole batch, so the
// device must send many requests before reading any answer; all must match in order.
func TestPipelining(t *testing.T) {
	const batch = 32
	f := newFakeSST()
	f.batch = batch
	h := upHarness(t, f, harnessOpts{})
	var wg sync.WaitGroup
	for i := range batch {
		wg.Go(func() {
			req := newRequest(protocol.ReqGEMM, uint64(1000+i), uint64(i))
			resp, n := h.do(req)
			assert.Equal(t, uint32(protocol.ResponseSize), n)
			assert.Equal(t, fakeAnswer(req), resp)
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(batch), f.served.Load())
}

// TestManyConcurrentClients hammers the device from many goroutines at once, mixing
// device-answered and forwarded requests.
func TestManyConcurrentClients(t *testing.T) {
	const clients, each = 16, 100
	f := newFakeSST()
	h := upHarness(t, f, harnessOpts{})
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				typ := protocol.ReqCompute
				if i%5 == 0 {
					typ = protocol.ReqEcho
				}
				req := newRequest(typ, uint64(c*each+i), uint64(c))
				resp, _ := h.do(req)
				// Compare with == : assert.Equal's reflection is slow on 4 KiB arrays.
				if typ == protocol.ReqEcho {
					assert.True(t, req.Payload == resp.Payload, "ECHO %d payload differs", req.RequestID)
				} else {
					assert.True(t, fakeAnswer(req) == resp, "answer to %d differs", req.RequestID)
				}
			}
		})
	}
	wg.Wait()
	st := h.dev.Stats()
	assert.Equal(t, uint64(clients*each), st.Requests)
	assert.Equal(t, uint64(clients*each), st.Responses)
	assert.Equal(t, uint64(clients*each*4/5), st.Forwarded)
}

// TestIDsStamped: whatever ids layer 5 answers with, the driver gets its own back.
func TestIDsStamped(t *testing.T) {
	f := newFakeSST()
	f.alter = true
	h := upHarness(t, f, harnessOpts{})
	req := newRequest(protocol.ReqCompute, 77, 88)
	resp, _ := h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
}

func TestEventsOnLinkUpAndDown(t *testing.T) {
	f := newFakeSST()
	h := upHarness(t, f, harnessOpts{})
	h.postEventBuffers(4, protocol.EventSize)
	e := h.nextEvent()
	assert.Equal(t, protocol.EventLinkUp, e.Type)
	assert.Equal(t, uint64(1), e.Data)
	assert.InDelta(t, float64(time.Now().UnixNano()), float64(e.Timestamp), float64(waitLimit))

	f.kill()
	e = h.nextEvent()
	assert.Equal(t, protocol.EventLinkDown, e.Type)
	assert.Equal(t, uint64(1), e.Data)

	f.down.Store(false)
	e = h.nextEvent()
	assert.Equal(t, protocol.EventLinkUp, e.Type)
	assert.Equal(t, uint64(2), e.Data)

	resp, _ := h.do(newRequest(protocol.ReqReset, 55, 0))
	assert.Equal(t, protocol.StatusOK, resp.Status)
	e = h.nextEvent()
	assert.Equal(t, protocol.EventReset, e.Type)
	assert.Equal(t, uint64(55), e.Data)
	assert.Equal(t, uint64(4), h.dev.Stats().Events)
	assert.Positive(t, h.interrupts[protocol.QueueEvent].Load())
}

// TestEventBacklog: events wait for buffers, the backlog keeps the newest, and a buffer
// too small for an event is returned empty without losing the event.
func TestEventBacklog(t *testing.T) {
	f := newFakeSST()
	f.down.Store(true)
	cfg := fastConfig(f.dialer())
	cfg.EventBacklog = 2
	h := newHarness(t, cfg, harnessOpts{})
	for id := uint64(1); id <= 4; id++ {
		_, _ = h.do(newRequest(protocol.ReqReset, id, 0))
	}
	eventually(t, "dropped events", func() bool { return h.dev.Stats().EventsDropped == 2 })

	h.postEventBuffers(1, protocol.EventSize-1)
	select {
	case n := <-h.evLens:
		assert.Zero(t, n)
	case <-time.After(waitLimit):
		t.Fatal("small event buffer not returned")
	}
	assert.Equal(t, uint64(1), h.dev.Stats().Errors)

	h.postEventBuffers(3, protocol.EventSize+8)
	for _, want := range []uint64{3, 4} {
		e := h.nextEvent()
		assert.Equal(t, protocol.EventReset, e.Type)
		assert.Equal(t, want, e.Data)
	}
	select {
	case e := <-h.events:
		t.Fatalf("unexpected event %v", &e)
	case <-time.After(20 * time.Millisecond):
	}
	assert.Equal(t, uint64(2), h.dev.Stats().Events)
}

// TestResetDiscardsStale: an answer that arrives after a device reset is not written
// into the driver's memory, and the re-attached queues work.
func TestResetDiscardsStale(t *testing.T) {
	f := newFakeSST()
	f.delay.Store(int64(100 * time.Millisecond))
	h := upHarness(t, f, harnessOpts{})
	p := <-h.pairs
	enc, err := newRequest(protocol.ReqCompute, 1, 1).MarshalBinary()
	require.NoError(t, err)
	require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
	require.NoError(t, h.mem.Zero(p.respAddr, protocol.ResponseSize))
	h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize}, {Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}})
	eventually(t, "in flight", func() bool { return h.dev.Stats().InFlight == 1 })
	h.dev.Reset()
	eventually(t, "stale answer", func() bool { return h.dev.Stats().Stale == 1 })
	zero := make([]byte, protocol.ResponseSize)
	got := make([]byte, protocol.ResponseSize)
	require.NoError(t, h.mem.ReadAt(got, p.respAddr))
	assert.Equal(t, zero, got, "stale answer written into guest memory")

	f.delay.Store(0)
	require.NoError(t, h.dev.AckFeatures(protocol.BaseFeatures))
	h.attach()
	req := newRequest(protocol.ReqCompute, 2, 2)
	resp, _ := h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
}

func TestResponseTimeout(t *testing.T) {
	f := newFakeSST()
	f.delay.Store(int64(time.Hour))
	cfg := fastConfig(f.dialer())
	cfg.ResponseTimeout = 50 * time.Millisecond
	h := newHarness(t, cfg, harnessOpts{})
	eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })
	start := time.Now()
	resp, _ := h.do(newRequest(protocol.ReqCompute, 3, 4))
	assert.Less(t, time.Since(start), time.Second)
	assert.GreaterOrEqual(t, time.Since(start), cfg.ResponseTimeout)
	assert.Equal(t, protocol.StatusTimeout, resp.Status)
	assert.Equal(t, uint64(3), resp.RequestID)
	st := h.dev.Stats()
	assert.Equal(t, uint64(1), st.Timeouts)
	assert.Equal(t, uint64(1), st.LinkTimeouts)

	f.delay.Store(0)
	eventually(t, "reconnect", func() bool { return h.dev.Stats().LinkUps >= 2 && h.dev.Stats().LinkUp })
	req := newRequest(protocol.ReqCompute, 5, 6)
	resp, _ = h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
}

// TestUnsolicitedResponse: a layer 5 that answers what nobody asked is dropped.
func TestUnsolicitedResponse(t *testing.T) {
	var once sync.Once
	rogue := PipeDialer(func(ctx context.Context, conn io.ReadWriteCloser) error {
		first := false
		once.Do(func() { first = true })
		if first {
			_, err := conn.Write(make([]byte, protocol.ResponseSize))
			<-ctx.Done()
			return err
		}
		return newFakeSST().serve(ctx, conn)
	})
	h := newHarness(t, fastConfig(rogue), harnessOpts{})
	eventually(t, "protocol error", func() bool { return h.dev.Stats().LinkProtocolErrors == 1 })
	eventually(t, "reconnect", func() bool { return h.dev.Stats().LinkUps >= 2 && h.dev.Stats().LinkUp })
	req := newRequest(protocol.ReqCompute, 5, 6)
	resp, _ := h.do(req)
	assert.Equal(t, fakeAnswer(req), resp)
}

// TestShortReads: layer 5 dribbles each response a few bytes at a time; the device must
// assemble whole responses.
func TestShortReads(t *testing.T) {
	dribble := PipeDialer(func(ctx context.Context, conn io.ReadWriteCloser) error {
		in := make([]byte, protocol.RequestSize)
		out := make([]byte, protocol.ResponseSize)
		for {
			if _, err := io.ReadFull(conn, in); err != nil {
				return err
			}
			var r protocol.Request
			_ = r.Decode(in)
			resp := fakeAnswer(&r)
			_ = resp.Encode(out)
			for off := 0; off < len(out); off += 1000 {
				if _, err := conn.Write(out[off:min(len(out), off+1000)]); err != nil {
					return err
				}
			}
		}
	})
	h := newHarness(t, fastConfig(dribble), harnessOpts{})
	eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })
	for i := range 3 {
		req := newRequest(protocol.ReqCompute, uint64(i), 0)
		resp, _ := h.do(req)
		assert.Equal(t, fakeAnswer(req), resp)
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	f := newFakeSST()
	f.delay.Store(int64(50 * time.Millisecond))
	h := upHarness(t, f, harnessOpts{})
	p := <-h.pairs
	req := newRequest(protocol.ReqCompute, 8, 9)
	enc, err := req.MarshalBinary()
	require.NoError(t, err)
	require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
	ch := h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize}, {Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}})
	eventually(t, "in flight", func() bool { return h.dev.Stats().InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	require.NoError(t, h.dev.Shutdown(ctx))
	h.wait(ch)
	assert.Equal(t, fakeAnswer(req), h.readResponse(p.respAddr))
	assert.ErrorIs(t, h.dev.AckFeatures(0), ErrClosed)
}

func TestCloseAnswersInFlight(t *testing.T) {
	f := newFakeSST()
	f.delay.Store(int64(time.Hour))
	h := upHarness(t, f, harnessOpts{})
	p := <-h.pairs
	enc, err := newRequest(protocol.ReqCompute, 8, 9).MarshalBinary()
	require.NoError(t, err)
	require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
	ch := h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize}, {Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}})
	eventually(t, "in flight", func() bool { return h.dev.Stats().InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	assert.ErrorIs(t, h.dev.Shutdown(ctx), context.DeadlineExceeded)
	h.wait(ch)
	assert.Equal(t, protocol.StatusNoDevice, h.readResponse(p.respAddr).Status)
	require.NoError(t, h.dev.Close())
}

// TestInterruptSuppression: with the driver's NO_INTERRUPT flag (or EVENT_IDX) set, the
// device raises no interrupt, yet the answers are in the used ring.
func TestInterruptSuppression(t *testing.T) {
	for _, feats := range []protocol.Feature{protocol.BaseFeatures, protocol.BaseFeatures | protocol.FeatureEventIdx} {
		t.Run(feats.String(), func(t *testing.T) {
			h := upHarness(t, newFakeSST(), harnessOpts{features: feats})
			require.NoError(t, h.req.DisableInterrupts())
			before := h.interrupts[protocol.QueueRequest].Load()
			chans := make([]<-chan virtqueue.UsedElem, 0, 2)
			for i, typ := range []protocol.RequestType{protocol.ReqNoop, protocol.ReqCompute} {
				p := <-h.pairs
				enc, err := newRequest(typ, uint64(i), 0).MarshalBinary()
				require.NoError(t, err)
				require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
				chans = append(chans, h.submit([]virtqueue.Buffer{{Addr: p.reqAddr, Len: protocol.RequestSize},
					{Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true}}))
			}
			eventually(t, "both answered", func() bool { return h.dev.Stats().Responses == 2 })
			assert.Equal(t, before, h.interrupts[protocol.QueueRequest].Load(), "interrupt despite suppression")
			h.collect()
			for _, ch := range chans {
				assert.Equal(t, uint32(protocol.ResponseSize), h.wait(ch).Len)
			}
			pending, err := h.req.EnableInterrupts()
			require.NoError(t, err)
			assert.False(t, pending)
			resp, _ := h.do(newRequest(protocol.ReqNoop, 9, 9))
			assert.Equal(t, protocol.StatusOK, resp.Status)
			assert.Greater(t, h.interrupts[protocol.QueueRequest].Load(), before)
		})
	}
}

// TestDialerGetsLifetimeContext: the dialer's ctx ends when the device closes.
func TestDialerGetsLifetimeContext(t *testing.T) {
	got := make(chan context.Context, 1)
	dev, err := New(fastConfig(func(ctx context.Context) (io.ReadWriteCloser, error) {
		select {
		case got <- ctx:
		default:
		}
		a, _ := net.Pipe()
		return a, nil
	}))
	require.NoError(t, err)
	var ctx context.Context
	select {
	case ctx = <-got:
	case <-time.After(waitLimit):
		t.Fatal("dialer not called")
	}
	require.NoError(t, dev.Close())
	select {
	case <-ctx.Done():
	case <-time.After(waitLimit):
		t.Fatal("dialer context not cancelled on Close")
	}
	assert.True(t, errors.Is(ctx.Err(), context.Canceled))
}

// TestBrokenRing: a driver that moves the available idx by more than the queue size
// breaks the queue; the device counts it once, ignores the queue until reset, and works
// again after one.
func TestBrokenRing(t *testing.T) {
	h := upHarness(t, newFakeSST(), harnessOpts{})
	const availIdxOffset = 2 // flags u16, then idx u16
	require.NoError(t, h.mem.WriteU16(h.layouts[protocol.QueueRequest].Avail+availIdxOffset, 3*protocol.QueueSize))
	h.dev.Notify(protocol.QueueRequest)
	eventually(t, "ring error counted", func() bool { return h.dev.Stats().Errors == 1 })
	for range 5 {
		h.dev.Notify(protocol.QueueRequest)
	}
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, uint64(1), h.dev.Stats().Errors)

	h.dev.Reset()
	require.NoError(t, h.dev.AckFeatures(protocol.BaseFeatures))
	h.attach()
	resp, _ := h.do(newRequest(protocol.ReqNoop, 1, 2))
	assert.Equal(t, protocol.StatusOK, resp.Status)
}

// TestOwnAnswerBytes checks the device's own answers byte by byte, written over a buffer
// full of stale bytes, against the layout in docs/sst-protocol.md §SSTResponse: status u32 @0, reserved u32 @4,
// request_id @8, user_data @16, result @24 (always 0 here), payload @32.
func TestOwnAnswerBytes(t *testing.T) {
	le := binary.LittleEndian
	const id, user = 0x1122334455667788, 0x99AABBCCDDEEFF00
	request := func(typ uint32) []byte {
		in := make([]byte, protocol.RequestSize)
		le.PutUint32(in[0:], typ)
		le.PutUint32(in[4:], 0xF1A65) // flags: not echoed anywhere
		le.PutUint64(in[8:], id)
		le.PutUint64(in[16:], user)
		for i := 24; i < len(in); i++ {
			in[i] = byte(i*7 + 3)
		}
		return in
	}
	zeros := make([]byte, protocol.MaxDataSize)
	info := make([]byte, protocol.MaxDataSize)
	le.PutUint32(info[0:], 0x00010000)                                               // version
	le.PutUint32(info[4:], 0b101)                                                    // capabilities: ECHO|MEMORY, the device bits negotiated
	le.PutUint64(info[8:], 1000000)                                                  // max_compute_units
	le.PutUint64(info[16:], 0x10000000)                                              // memory_size
	caps := protocol.FeatureEcho | protocol.FeatureMemory | protocol.FeatureVersion1 // VERSION_1 is no capability
	tests := []struct {
		name    string
		typ     uint32
		status  uint32
		payload func(in []byte) []byte
	}{
		{"NOOP", 0, 0, func([]byte) []byte { return zeros }},
		{"ECHO", 1, 0, func(in []byte) []byte { return in[24:] }},
		{"RESET", 5, 0, func([]byte) []byte { return zeros }},
		{"GET_INFO", 6, 0, func([]byte) []byte { return info }},
		{"unknown 9", 9, 3, func([]byte) []byte { return zeros }},
		{"unknown 0xFFFFFFFF", 0xFFFFFFFF, 3, func([]byte) []byte { return zeros }},
	}
	var a answerer
	out := make([]byte, protocol.ResponseSize)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range out {
				out[i] = 0xEE
			}
			in := request(tt.typ)
			a.answer(in, out, caps)
			assert.Equal(t, tt.status, le.Uint32(out[0:]), "status")
			assert.Zero(t, le.Uint32(out[4:]), "reserved")
			assert.Equal(t, uint64(id), le.Uint64(out[8:]), "request_id")
			assert.Equal(t, uint64(user), le.Uint64(out[16:]), "user_data")
			assert.Zero(t, le.Uint64(out[24:]), "result")
			assert.Equal(t, tt.payload(in), out[32:], "payload")
		})
	}
}

// TestTransportFeatureBits checks that the transport bits of package protocol are the bit
// numbers package virtqueue reads from a negotiated feature word.
func TestTransportFeatureBits(t *testing.T) {
	assert.Equal(t, protocol.Feature(1)<<virtqueue.FeatureEventIdx, protocol.FeatureEventIdx)
	assert.Equal(t, protocol.Feature(1)<<virtqueue.FeatureIndirectDesc, protocol.FeatureIndirectDesc)
	assert.Equal(t, virtqueue.Features{EventIdx: true, IndirectDesc: true},
		virtqueue.FeaturesFromBits(uint64(protocol.TransportFeatures)))
	assert.Zero(t, protocol.TransportFeatures&protocol.DeviceFeatureMask, "transport bits lie above the device-specific ones")
}
