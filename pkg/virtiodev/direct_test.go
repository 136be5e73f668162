package virtiodev

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// fakeHandler is an in-process layer 5 answering as fakeSST does, called directly. It
// records the goroutine-free facts a test can check: how many calls, and whether two
// ever overlapped on one device.
type fakeHandler struct {
	lastReq []byte // the request slice of the last call (guest memory when in place)
	down    atomic.Bool
	calls   atomic.Uint64
	busy    atomic.Int32
	overlap atomic.Bool
}

func (f *fakeHandler) Handle(t protocol.RequestType, req, resp []byte) bool {
	if f.down.Load() {
		return false
	}
	if f.busy.Add(1) > 1 {
		f.overlap.Store(true)
	}
	defer f.busy.Add(-1)
	f.calls.Add(1)
	f.lastReq = req
	var r protocol.Request
	if err := r.Decode(req); err != nil {
		panic(err)
	}
	r.Type = t // as the device routed it
	a := fakeAnswer(&r)
	a.RequestID, a.UserData = 0, 0 // the device restores the request's ids
	enc, err := a.MarshalBinary()
	if err != nil {
		panic(err)
	}
	copy(resp, enc)
	return true
}

func TestDirectConfig(t *testing.T) {
	_, err := New(Config{})
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Dialer", ce.Field)
	_, err = New(Config{Dialer: newFakeSST().dialer(), Handler: &fakeHandler{}})
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "Handler", ce.Field)
}

// writeGEMM takes a buffer pair of h and writes into its request buffer a 4×16×8 GEMM
// request with the given ids, which it returns with the pair.
func writeGEMM(t *testing.T, h *harness, id, userData uint64) (bufPair, *protocol.Request) {
	t.Helper()
	r := &protocol.Request{Type: protocol.ReqGEMM, RequestID: id, UserData: userData}
	r.SetGEMM(protocol.GEMM{M: 4, N: 16, K: 8, DtypeSize: 4})
	p := <-h.pairs
	enc, err := r.MarshalBinary()
	require.NoError(t, err)
	require.NoError(t, h.mem.WriteAt(enc, p.reqAddr))
	return p, r
}

// TestDirectAnswersOnNotify checks that with a Handler a forwarded request is answered
// (and its interrupt raised) before Notify returns, on the notifying goroutine.
func TestDirectAnswersOnNotify(t *testing.T) {
	f := &fakeHandler{}
	h := newHarness(t, Config{Handler: f}, harnessOpts{})
	require.True(t, h.dev.Stats().LinkUp)
	for i := range 3 {
		p, r := writeGEMM(t, h, uint64(100+i), 7)
		ch := h.submit([]virtqueue.Buffer{
			{Addr: p.reqAddr, Len: protocol.RequestSize},
			{Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true},
		})
		select {
		case u := <-ch: // already there: answered inside Notify
			assert.Equal(t, uint32(protocol.ResponseSize), u.Len)
		default:
			t.Fatal("the request was not answered when Notify returned")
		}
		want := fakeAnswer(r)
		assert.Equal(t, want, h.readResponse(p.respAddr))
		h.pairs <- p
	}
	st := h.dev.Stats()
	assert.Equal(t, uint64(3), f.calls.Load())
	assert.Equal(t, uint64(3), st.Forwarded)
	assert.Equal(t, uint64(3), st.Responses)
}

// TestAttachServesPostedChains checks that chains the driver placed before DRIVER_OK
// (with no kick) are served at Attach: with a Handler before Attach returns, on the
// attaching goroutine, as it serves kicks; over the link by the device goroutine.
func TestAttachServesPostedChains(t *testing.T) {
	cases := []struct {
		name   string
		cfg    func() Config
		inline bool // answered when Attach returns
	}{
		{"handler", func() Config { return Config{Handler: &fakeHandler{}} }, true},
		{"link", func() Config { return fastConfig(newFakeSST().dialer()) }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg(), harnessOpts{})
			eventually(t, "link up", func() bool { return h.dev.Stats().LinkUp })
			h.dev.Reset()
			require.NoError(t, h.dev.AckFeatures(protocol.BaseFeatures|protocol.TransportFeatures))
			h.newQueues()
			type posted struct {
				ch <-chan virtqueue.UsedElem
				p  bufPair
				r  *protocol.Request
			}
			var chains []posted
			for i := range 3 {
				p, r := writeGEMM(t, h, uint64(300+i), 5)
				ch, _ := h.post([]virtqueue.Buffer{
					{Addr: p.reqAddr, Len: protocol.RequestSize},
					{Addr: p.respAddr, Len: protocol.ResponseSize, Writable: true},
				})
				chains = append(chains, posted{ch, p, r})
			}
			require.NoError(t, h.dev.Attach(h.mem, h.layouts, h.interrupt))
			for i, c := range chains {
				var u virtqueue.UsedElem
				if tc.inline {
					select {
					case u = <-c.ch:
					default:
						t.Fatalf("chain %d was not answered when Attach returned", i)
					}
				} else {
					u = h.wait(c.ch)
				}
				assert.Equal(t, uint32(protocol.ResponseSize), u.Len)
				assert.Equal(t, fakeAnswer(c.r), h.readResponse(c.p.respAddr))
			}
			assert.Equal(t, uint64(3), h.dev.Stats().Forwarded)
		})
	}
}

// TestDirectLayouts checks the answer of a forwarded request for the buffer layouts a
// driver may choose: layer 5 works in guest memory itself only when the request and the
// response each lie in one descriptor, apart; every other layout is copied, and answered
// and counted the same, also when the Handler refuses (NO_DEVICE).
func TestDirectLayouts(t *testing.T) {
	const half = protocol.RequestSize / 2
	cases := []struct {
		name        string
		inPlace     bool
		overRequest bool // the answer is written over the request
		bufs        func(req, resp uint64) []virtqueue.Buffer
	}{
		{"one descriptor each", true, false, func(req, resp uint64) []virtqueue.Buffer {
			return []virtqueue.Buffer{{Addr: req, Len: protocol.RequestSize}, {Addr: resp, Len: protocol.ResponseSize, Writable: true}}
		}},
		{"request in two descriptors", false, false, func(req, resp uint64) []virtqueue.Buffer {
			return []virtqueue.Buffer{{Addr: req, Len: half}, {Addr: req + half, Len: protocol.RequestSize - half},
				{Addr: resp, Len: protocol.ResponseSize, Writable: true}}
		}},
		{"response in two descriptors", false, false, func(req, resp uint64) []virtqueue.Buffer {
			return []virtqueue.Buffer{{Addr: req, Len: protocol.RequestSize},
				{Addr: resp, Len: half, Writable: true}, {Addr: resp + half, Len: protocol.ResponseSize - half, Writable: true}}
		}},
		{"response over the request", false, true, func(req, _ uint64) []virtqueue.Buffer {
			return []virtqueue.Buffer{{Addr: req, Len: protocol.RequestSize}, {Addr: req, Len: protocol.ResponseSize, Writable: true}}
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeHandler{}
			h := newHarness(t, Config{Handler: f}, harnessOpts{})
			p, r := writeGEMM(t, h, uint64(200+i), 9)
			u := h.wait(h.submit(tc.bufs(p.reqAddr, p.respAddr)))
			assert.Equal(t, uint32(protocol.ResponseSize), u.Len)
			respAddr := p.respAddr
			if tc.overRequest {
				respAddr = p.reqAddr
			}
			assert.Equal(t, fakeAnswer(r), h.readResponse(respAddr))
			// In place, the handler's request is guest memory: a byte the driver writes
			// now shows in it.
			require.NoError(t, h.mem.WriteAt([]byte{0xA5}, p.reqAddr+protocol.RequestSize-1))
			assert.Equal(t, tc.inPlace, f.lastReq[protocol.RequestSize-1] == 0xA5, "request read in place")

			// The same request again, refused.
			f.down.Store(true)
			p2, r2 := writeGEMM(t, h, uint64(300+i), 11)
			u = h.wait(h.submit(tc.bufs(p2.reqAddr, p2.respAddr)))
			assert.Equal(t, uint32(protocol.ResponseSize), u.Len)
			respAddr = p2.respAddr
			if tc.overRequest {
				respAddr = p2.reqAddr
			}
			got := h.readResponse(respAddr)
			assert.Equal(t, protocol.StatusNoDevice, got.Status)
			assert.Equal(t, [2]uint64{r2.RequestID, r2.UserData}, [2]uint64{got.RequestID, got.UserData})
			st := h.dev.Stats()
			assert.Equal(t, [5]uint64{2, 2, 1, 1, 0}, [5]uint64{st.Requests, st.Responses, st.Forwarded, st.NoDevice, st.Errors},
				"requests, responses, forwarded, no_device, errors")
		})
	}
}

// TestDirectGone checks that a Handler that refuses (the component shut down) gives
// NO_DEVICE answers, and that a device shut down answers NO_DEVICE without calling it.
func TestDirectGone(t *testing.T) {
	f := &fakeHandler{}
	h := newHarness(t, Config{Handler: f}, harnessOpts{})
	f.down.Store(true)
	resp, _ := h.do(&protocol.Request{Type: protocol.ReqCompute, RequestID: 1})
	assert.Equal(t, protocol.StatusNoDevice, resp.Status)
	assert.Equal(t, uint64(1), resp.RequestID)
	f.down.Store(false)
	resp, _ = h.do(&protocol.Request{Type: protocol.ReqCompute, RequestID: 2})
	assert.Equal(t, protocol.StatusOK, resp.Status)
	assert.Equal(t, uint64(1), h.dev.Stats().NoDevice)
	calls := f.calls.Load()
	require.NoError(t, h.dev.Close())
	assert.False(t, h.dev.Stats().LinkUp)
	assert.Equal(t, calls, f.calls.Load())
}

// TestDirectConcurrentNotifiers has many goroutines submit and notify at once: every
// request is answered exactly once, and the queue is never served by two at a time.
func TestDirectConcurrentNotifiers(t *testing.T) {
	f := &fakeHandler{}
	h := newHarness(t, Config{Handler: f}, harnessOpts{})
	const workers, each = 16, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := uint64(w*each + i + 1)
				resp, n := h.do(&protocol.Request{Type: protocol.ReqConfigure, RequestID: id})
				if resp.Status != protocol.StatusOK || resp.RequestID != id || n != protocol.ResponseSize {
					t.Errorf("request %d: status %v id %d len %d", id, resp.Status, resp.RequestID, n)
					return
				}
			}
		})
	}
	wg.Wait()
	assert.Equal(t, uint64(workers*each), f.calls.Load())
	assert.False(t, f.overlap.Load(), "two goroutines served the queue at once")
}
