package virtqueue

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sstQueueSize is the queue size virtio-sst uses (docs/sst-protocol.md §The virtqueues).
const sstQueueSize = 128

// pair is a driver and a device sharing one queue in one guest memory.
type pair struct {
	mem *GuestMemory
	l   Layout
	drv *Driver
	dev *DeviceQueue
}

func newPair(t testing.TB, memSize uint64, size uint16, f Features) *pair {
	t.Helper()
	mem := NewGuestMemory(memSize)
	l, err := mem.AllocQueue(size)
	require.NoError(t, err)
	drv, err := NewDriver(mem, l, f)
	require.NoError(t, err)
	dev, err := NewDeviceQueue(mem, l, f)
	require.NoError(t, err)
	return &pair{mem: mem, l: l, drv: drv, dev: dev}
}

func (p *pair) alloc(t testing.TB, n uint64) uint64 {
	t.Helper()
	a, err := p.mem.Alloc(n, 8)
	require.NoError(t, err)
	return a
}

func TestRoundTrip(t *testing.T) {
	for _, f := range []Features{{}, {EventIdx: true}} {
		t.Run(map[bool]string{false: "flags", true: "event_idx"}[f.EventIdx], func(t *testing.T) {
			p := newPair(t, 1<<20, sstQueueSize, f)
			req := p.alloc(t, 10)
			rsp1 := p.alloc(t, 4)
			rsp2 := p.alloc(t, 6)
			require.NoError(t, p.mem.WriteAt([]byte("0123456789"), req))

			head, err := p.drv.Add([]Buffer{{Addr: req, Len: 10}, {Addr: rsp1, Len: 4, Writable: true}, {Addr: rsp2, Len: 6, Writable: true}})
			require.NoError(t, err)
			assert.Equal(t, sstQueueSize-3, p.drv.NumFree())

			_, ok, err := p.dev.Pop()
			require.NoError(t, err)
			assert.False(t, ok, "not visible before Publish")

			notify, err := p.drv.Publish()
			require.NoError(t, err)
			assert.True(t, notify, "a fresh device wants the first notification")

			c, ok, err := p.dev.Pop()
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, head, c.Head)
			assert.Equal(t, []Segment{{req, 10}}, c.Readable)
			assert.Equal(t, []Segment{{rsp1, 4}, {rsp2, 6}}, c.Writable)
			assert.EqualValues(t, 10, c.ReadableLen())
			assert.EqualValues(t, 10, c.WritableLen())

			got := make([]byte, 16)
			n, err := c.Gather(got)
			require.NoError(t, err)
			assert.Equal(t, "0123456789", string(got[:n]))

			n, err = c.Scatter([]byte("abcdefgh"))
			require.NoError(t, err)
			assert.Equal(t, 8, n)
			require.NoError(t, p.dev.PushUsed(c.Head, uint32(n)))
			assert.True(t, p.dev.NeedsInterrupt())
			assert.False(t, p.dev.NeedsInterrupt(), "nothing pushed since")

			e, ok, err := p.drv.PopUsed()
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, UsedElem{ID: head, Len: 8}, e)
			assert.Equal(t, sstQueueSize, p.drv.NumFree())

			out := make([]byte, 8)
			require.NoError(t, p.mem.ReadAt(out, rsp1))
			assert.Equal(t, []byte("abcd\x00\x00\x00\x00"), out, "rsp1 (4 bytes) then the alignment gap before rsp2 untouched")
			require.NoError(t, p.mem.ReadAt(out[:6], rsp2))
			assert.True(t, bytes.Equal([]byte("efgh\x00\x00"), out[:6]))

			_, ok, err = p.drv.PopUsed()
			require.NoError(t, err)
			assert.False(t, ok)
		})
	}
}
