package virtqueue

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inWindow is an independent reference for vring_need_event: walk the indices the peer
// moved through, old, old+1, …, new-1, and see whether event is among them.
func inWindow(event, newIdx, old uint16) bool {
	for i := old; i != newIdx; i++ {
		if i == event {
			return true
		}
	}
	return false
}

func TestNeedEvent(t *testing.T) {
	cases := []struct {
		event, newIdx, old uint16
		want               bool
	}{
		{0, 1, 0, true},                 // §2.7.7 note: used_event 0 → notify after the first buffer
		{2, 2, 1, false},                // idx reached 2, event asks for idx to reach 3
		{2, 3, 2, true},                 // now it did
		{2, 5, 0, true},                 // a batch that passes the event
		{5, 5, 0, false},                // a batch that stops just short
		{0xffff, 2, 0xfffe, true},       // wraps past 65535 and passes event 65535
		{0, 2, 0xfffe, true},            // wraps and passes event 0
		{3, 2, 0xfffe, false},           // wraps but stops short of 3
		{0xfffd, 2, 0xfffe, false},      // event already behind old
		{7, 7, 7, false},                // nothing moved
		{0x8000, 0x8001, 0, true},       // a half-space batch
		{0x8001, 0x8001, 0, false},      // stops short
		{0x7fff, 0x0000, 0x8000, false}, // window [0x8000, 0xffff]; event one before it
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, needEvent(tc.event, tc.newIdx, tc.old), "event %#x new %#x old %#x", tc.event, tc.newIdx, tc.old)
		assert.Equal(t, tc.want, inWindow(tc.event, tc.newIdx, tc.old), "reference disagrees with hand value")
	}
}

func TestNeedEventMatchesReference(t *testing.T) {
	// Every old near the wrap, moves up to 300, every event in a band around them.
	for old := uint16(0xff00); old != 0x0100; old++ {
		for move := uint16(0); move < 300; move += 7 {
			newIdx := old + move
			for event := old - 20; event != newIdx+20; event++ {
				if needEvent(event, newIdx, old) != inWindow(event, newIdx, old) {
					t.Fatalf("event %#x new %#x old %#x", event, newIdx, old)
				}
			}
		}
	}
}

// addPublish adds one single-buffer chain, publishes it and reports the driver's notify.
func (p *pair) addPublish(t *testing.T) bool {
	t.Helper()
	b := p.alloc(t, 8)
	_, err := p.drv.Add([]Buffer{{Addr: b, Len: 8, Writable: true}})
	require.NoError(t, err)
	notify, err := p.drv.Publish()
	require.NoError(t, err)
	return notify
}

func (p *pair) popPush(t *testing.T) {
	t.Helper()
	c, ok, err := p.dev.Pop()
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, p.dev.PushUsed(c.Head, 0))
}

func (p *pair) popUsed(t *testing.T) {
	t.Helper()
	_, ok, err := p.drv.PopUsed()
	require.NoError(t, err)
	require.True(t, ok)
}

func (p *pair) u16(t *testing.T, addr uint64) uint16 {
	t.Helper()
	v, err := p.mem.ReadU16(addr)
	require.NoError(t, err)
	return v
}

func TestSuppressionWithFlags(t *testing.T) {
	p := newPair(t, 1<<16, 8, Features{})

	// Available buffer notifications (§2.7.10): used.flags NO_NOTIFY.
	assert.True(t, p.addPublish(t))
	require.NoError(t, p.dev.DisableNotifications())
	assert.EqualValues(t, UsedFNoNotify, p.u16(t, p.l.Used+offFlags))
	assert.False(t, p.addPublish(t), "device asked not to be notified")
	pending, err := p.dev.EnableNotifications()
	require.NoError(t, err)
	assert.True(t, pending, "two chains wait although no notification came")
	assert.Zero(t, p.u16(t, p.l.Used+offFlags))
	assert.True(t, p.addPublish(t))

	// Used buffer notifications (§2.7.7): avail.flags NO_INTERRUPT.
	p.popPush(t)
	assert.True(t, p.dev.NeedsInterrupt())
	require.NoError(t, p.drv.DisableInterrupts())
	assert.EqualValues(t, AvailFNoInterrupt, p.u16(t, p.l.Avail+offFlags))
	p.popPush(t)
	assert.False(t, p.dev.NeedsInterrupt(), "driver asked not to be interrupted")
	pending, err = p.drv.EnableInterrupts()
	require.NoError(t, err)
	assert.True(t, pending, "two used entries wait")
	assert.Zero(t, p.u16(t, p.l.Avail+offFlags))
	p.popPush(t)
	assert.True(t, p.dev.NeedsInterrupt())
	assert.False(t, p.dev.NeedsInterrupt(), "nothing new pushed")
	p.popUsed(t)
	p.popUsed(t)
	p.popUsed(t)
	pending, err = p.drv.EnableInterrupts()
	require.NoError(t, err)
	assert.False(t, pending)
	pending, err = p.dev.EnableNotifications()
	require.NoError(t, err)
	assert.False(t, pending)
}

func TestSuppressionWithEventIdx(t *testing.T) {
	t.Run("available buffer notifications", func(t *testing.T) {
		p := newPair(t, 1<<16, 8, Features{EventIdx: true})
		availEvent := func() uint16 { return p.u16(t, p.l.availEvent()) }
		// avail_event starts at 0: the first chain (idx 0→1) notifies.
		assert.True(t, p.addPublish(t))
		assert.False(t, p.addPublish(t), "idx 1→2 does not pass avail_event 0")
		p.popPush(t)
		p.popPush(t)
		assert.EqualValues(t, 2, availEvent(), "device wants a kick for entry 2")
		assert.True(t, p.addPublish(t), "idx 2→3 passes avail_event 2")

		// A busy device stops advancing avail_event; flags stay 0 (§2.7.10.2).
		require.NoError(t, p.dev.DisableNotifications())
		assert.Zero(t, p.u16(t, p.l.Used+offFlags))
		p.popPush(t)
		assert.EqualValues(t, 2, availEvent(), "frozen")
		assert.False(t, p.addPublish(t), "idx 3→4 does not pass the frozen avail_event 2")
		pending, err := p.dev.EnableNotifications()
		require.NoError(t, err)
		assert.True(t, pending, "entry 3 waits")
		assert.EqualValues(t, 3, availEvent(), "re-enabled at the device's next entry")
		p.popPush(t)
		assert.EqualValues(t, 4, availEvent())
		assert.True(t, p.addPublish(t), "idx 4→5 passes avail_event 4")
	})
	t.Run("used buffer notifications", func(t *testing.T) {
		p := newPair(t, 1<<16, 8, Features{EventIdx: true})
		usedEvent := func() uint16 { return p.u16(t, p.l.usedEvent()) }
		for i := 0; i < 4; i++ {
			p.addPublish(t)
		}
		// used_event starts at 0: the first used entry (idx 0→1) interrupts (§2.7.7 note).
		p.popPush(t)
		assert.True(t, p.dev.NeedsInterrupt())
		p.popPush(t)
		assert.False(t, p.dev.NeedsInterrupt(), "idx 1→2 does not pass used_event 0")
		p.popUsed(t)
		p.popUsed(t)
		assert.EqualValues(t, 2, usedEvent(), "driver wants an interrupt for entry 2")
		p.popPush(t)
		assert.True(t, p.dev.NeedsInterrupt(), "idx 2→3 passes used_event 2")

		require.NoError(t, p.drv.DisableInterrupts())
		assert.Zero(t, p.u16(t, p.l.Avail+offFlags), "flags stay 0 under EVENT_IDX (§2.7.7.1)")
		assert.EqualValues(t, 2+0x8000, usedEvent())
		p.popPush(t)
		assert.False(t, p.dev.NeedsInterrupt(), "idx 3→4 with interrupts disabled")
		pending, err := p.drv.EnableInterrupts()
		require.NoError(t, err)
		assert.True(t, pending, "entries 2 and 3 wait")
		p.popUsed(t)
		p.popUsed(t)
		assert.EqualValues(t, 4, usedEvent())

		p.addPublish(t)
		p.popPush(t)
		assert.True(t, p.dev.NeedsInterrupt(), "idx 4→5 passes used_event 4")
		p.popUsed(t)
		p.addPublish(t)
		p.addPublish(t)
		p.popPush(t)
		p.popPush(t)
		assert.True(t, p.dev.NeedsInterrupt(), "a batch 5→7 passes used_event 5")
	})
}
