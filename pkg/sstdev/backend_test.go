package sstdev_test

import (
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// scriptedAnswer is what a scriptedBackend does with a request chain.
type scriptedAnswer int

const (
	answerOK      scriptedAnswer = iota // a whole response: ids copied, result scriptedResult
	answerShort                         // a used length of 10 bytes
	answerCorrupt                       // no answer: the used idx jumps far ahead instead
)

const scriptedResult = 42

// scriptedBackend is a minimal virtio device on the virtqueue package's device side, with
// scripted answers, probe failures and notification suppression.
type scriptedBackend struct {
	ackErr, attachErr error
	suppress          bool // the device disables available-buffer notifications

	mu       sync.Mutex
	answer   scriptedAnswer
	features protocol.Feature
	mem      *virtqueue.GuestMemory
	used     uint64 // used ring address of the request queue
	req      *virtqueue.DeviceQueue
	evt      *virtqueue.DeviceQueue // the event queue's device side
	evtUsed  virtqueue.Layout       // the event queue, for writing a malformed used entry by hand
	irq      func(int)
	resets   int
	notifies int
}

func (b *scriptedBackend) OfferedFeatures() protocol.Feature {
	return protocol.BaseFeatures | protocol.TransportFeatures
}

func (b *scriptedBackend) AckFeatures(f protocol.Feature) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.features = f
	return b.ackErr
}

func (b *scriptedBackend) Attach(mem *virtqueue.GuestMemory, l [protocol.NumQueues]virtqueue.Layout, irq func(int)) error {
	if b.attachErr != nil {
		return b.attachErr
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	q, err := virtqueue.NewDeviceQueue(mem, l[protocol.QueueRequest], virtqueue.FeaturesFromBits(uint64(b.features)))
	if err != nil {
		return err
	}
	if b.suppress {
		if err := q.DisableNotifications(); err != nil {
			return err
		}
	}
	evt, err := virtqueue.NewDeviceQueue(mem, l[protocol.QueueEvent], virtqueue.FeaturesFromBits(uint64(b.features)))
	if err != nil {
		return err
	}
	b.mem, b.used, b.req, b.evt, b.evtUsed, b.irq = mem, l[protocol.QueueRequest].Used, q, evt, l[protocol.QueueEvent], irq
	return nil
}

// returnEvent takes the next event buffer the driver posted and hands it back as used with
// length n, then interrupts; it reports whether a buffer was there.
func (b *scriptedBackend) returnEvent(n uint32) bool {
	b.mu.Lock()
	c, ok, err := b.evt.Pop()
	if err != nil || !ok {
		b.mu.Unlock()
		return false
	}
	_ = b.evt.PushUsed(c.Head, protocol.EventSize)
	if n != protocol.EventSize {
		// A faulty device claims another length than it wrote; virtqueue's device side
		// refuses to, so rewrite the len of the used entry just pushed (VirtIO 1.2 §2.7.8).
		l := b.evtUsed
		idx, _ := b.mem.ReadU16(l.Used + 2)
		_ = b.mem.WriteU32(l.Used+4+8*uint64((idx-1)%l.Size)+4, n)
	}
	irq := b.irq
	b.mu.Unlock()
	irq(protocol.QueueEvent)
	return true
}

func (b *scriptedBackend) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.req, b.irq = nil, nil
	b.resets++
}

func (b *scriptedBackend) Notify(queue int) {
	if queue != protocol.QueueRequest {
		return
	}
	b.mu.Lock()
	b.notifies++
	b.mu.Unlock()
	b.serve()
}

func (b *scriptedBackend) ConfigSpace() protocol.ConfigSpace {
	return protocol.ConfigSpace{Version: protocol.Version, MaxQueues: 1}
}

func (b *scriptedBackend) setAnswer(a scriptedAnswer) {
	b.mu.Lock()
	b.answer = a
	b.mu.Unlock()
}

func (b *scriptedBackend) counts() (notifies, resets int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.notifies, b.resets
}

// serve answers every available chain, then interrupts if the driver wants it.
func (b *scriptedBackend) serve() {
	b.mu.Lock()
	q, irq := b.req, b.irq
	if q == nil {
		b.mu.Unlock()
		return
	}
	req := make([]byte, reqSize)
	resp := make([]byte, respSize)
	corrupted := false
	for {
		c, ok, err := q.Pop()
		if err != nil || !ok {
			break
		}
		switch b.answer {
		case answerOK:
			_, _ = c.Gather(req)
			clear(resp)
			copy(resp[8:24], req[8:24])
			le.PutUint64(resp[offResult:], scriptedResult)
			n, _ := c.Scatter(resp)
			_ = q.PushUsed(c.Head, uint32(n))
		case answerShort:
			_ = q.PushUsed(c.Head, 10)
		case answerCorrupt:
			idx, _ := b.mem.ReadU16(b.used + 2)
			_ = b.mem.WriteU16(b.used+2, idx+100)
			corrupted = true
		}
	}
	need := q.NeedsInterrupt() || corrupted
	b.mu.Unlock()
	if need {
		irq(protocol.QueueRequest)
	}
}

// poll serves the queue without notifications until stop is closed.
func (b *scriptedBackend) poll(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(50 * time.Microsecond):
			b.serve()
		}
	}
}

func TestProbeErrors(t *testing.T) {
	errAck, errAttach := errors.New("ack refused"), errors.New("attach refused")
	for _, tc := range []struct {
		name    string
		backend *scriptedBackend
		step    string
		cause   error
	}{
		{"features", &scriptedBackend{ackErr: errAck}, "features", errAck},
		{"attach", &scriptedBackend{attachErr: errAttach}, "attach", errAttach},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := sstdev.New(sstdev.Config{})
			require.NoError(t, err)
			t.Cleanup(func() { _ = d.Close() })
			err = d.Bind(tc.backend)
			var pe *sstdev.ProbeError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.step, pe.Step)
			assert.Equal(t, "/dev/sst0", pe.Device)
			assert.ErrorIs(t, err, tc.cause)
			assert.Equal(t, "sstdev: /dev/sst0: probe "+tc.step+": "+tc.cause.Error(), err.Error())
			assert.False(t, d.Ready())
			_, err = d.Open()
			requireErrno(t, err, "open", "/dev/sst0", syscall.ENODEV)
			if tc.step == "attach" {
				_, resets := tc.backend.counts()
				assert.Equal(t, 1, resets, "a failed attach resets the device")
			}

			// The device stays usable: a good backend binds.
			good := &scriptedBackend{}
			require.NoError(t, d.Bind(good))
			f, err := d.Open()
			require.NoError(t, err)
			defer f.Close()
			r := roundTrip(t, f, request(typeEcho, 0, 5))
			assert.Equal(t, uint64(1), r.requestID)
			assert.Equal(t, uint64(scriptedResult), r.result)
		})
	}
}

// TestNotificationSuppression checks that the driver notifies the device only when the
// device asks for it, with the flags mechanism and with EVENT_IDX.
func TestNotificationSuppression(t *testing.T) {
	const writes = 20
	for _, tc := range []struct {
		name     string
		eventIdx bool
		suppress bool
		notifies int
	}{
		{"flags, enabled", false, false, writes},
		{"flags, suppressed", false, true, 0},
		{"event idx, enabled", true, false, writes},
		// avail_event starts at 0 and a device that suppresses never advances it: only
		// the first publication passes it.
		{"event idx, suppressed", true, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			features := sstdev.DriverFeatures &^ protocol.FeatureEventIdx
			if tc.eventIdx {
				features = sstdev.DriverFeatures
			}
			b := &scriptedBackend{suppress: tc.suppress}
			d, err := sstdev.New(sstdev.Config{Backend: b, Features: features})
			require.NoError(t, err)
			t.Cleanup(func() { _ = d.Close() })
			stop := make(chan struct{})
			defer close(stop)
			go b.poll(stop)

			f, err := d.Open()
			require.NoError(t, err)
			defer f.Close()
			for i := range writes {
				assert.Equal(t, uint64(i), roundTrip(t, f, request(typeEcho, 0, uint64(i))).user)
			}
			notifies, _ := b.counts()
			assert.Equal(t, tc.notifies, notifies)
			assert.Equal(t, int64(tc.notifies), d.Stats().Notifies)
		})
	}
}

func TestShortAnswerIsEIO(t *testing.T) {
	b := &scriptedBackend{answer: answerShort}
	d, err := sstdev.New(sstdev.Config{Backend: b})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	f, err := d.Open()
	require.NoError(t, err)
	defer f.Close()
	_, err = f.Write(request(typeEcho, 0, 1))
	requireErrno(t, err, "write", "/dev/sst0", syscall.EIO)
	_, err = f.Read(make([]byte, respSize))
	requireErrno(t, err, "read", "/dev/sst0", syscall.EAGAIN)
	st := d.Stats()
	assert.Equal(t, int64(1), st.Failed)
	assert.Equal(t, sstdev.NumSlots, st.FreeSlots)
}

// TestBrokenUsedRing has the device corrupt the used idx: the request in flight times
// out, later writes fail with EIO, and a reset recovers the device and every slot.
func TestBrokenUsedRing(t *testing.T) {
	b := &scriptedBackend{answer: answerCorrupt}
	d, err := sstdev.New(sstdev.Config{Backend: b, Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	f, err := d.Open()
	require.NoError(t, err)
	defer f.Close()

	_, err = f.Write(request(typeEcho, 0, 1))
	requireErrno(t, err, "write", "/dev/sst0", syscall.ETIMEDOUT)
	_, err = f.Write(request(typeEcho, 0, 2))
	requireErrno(t, err, "write", "/dev/sst0", syscall.EIO)
	assert.Equal(t, sstdev.NumSlots-1, d.Stats().FreeSlots, "the lost request's slot waits for the reset")

	b.setAnswer(answerOK)
	require.NoError(t, d.Reset())
	_, resets := b.counts()
	assert.Equal(t, 1, resets)
	requireAllFree(t, d)
	r := roundTrip(t, f, request(typeEcho, 0, 3))
	assert.Equal(t, uint64(3), r.user)
	assert.Equal(t, uint64(2), r.requestID, "the ids keep counting across the reset")
}

// An event entry the device returns with a bad length still gives its buffer back: the
// driver posts it again, so malformed events cannot drain the event queue.
func TestMalformedEventsKeepTheirBuffers(t *testing.T) {
	b := &scriptedBackend{}
	d, err := sstdev.New(sstdev.Config{Backend: b, Timeout: time.Second})
	require.NoError(t, err)
	defer d.Close()
	for i := 0; i < 3*sstdev.NumEventBuffers; i++ {
		require.True(t, b.returnEvent(protocol.EventSize+100), "event buffer %d is posted", i)
	}
	assert.True(t, b.returnEvent(protocol.EventSize), "and a well-formed event still has a buffer")
}
