package virtiodev

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/refsst"
	"github.com/sstemu/sstemu/pkg/protocol"
)

// gatedClient is a recClient whose first completion waits for release: the link's reader
// stalls, as it does when the machine is busy, and the answers pile up in the socket.
type gatedClient struct {
	*recClient
	gate    chan struct{}
	stalled chan struct{}
	first   bool
	once    sync.Once
}

// release lets the reader go on; it may be called more than once.
func (c *gatedClient) release() { c.once.Do(func() { close(c.gate) }) }

func (c *gatedClient) complete(s *forwarded, resp []byte, st protocol.Status) {
	if !c.first {
		c.first = true // only the reader goroutine completes while the link is up
		close(c.stalled)
		<-c.gate
	}
	c.recClient.complete(s, resp, st)
}

// TestWindowAgainstRealSST forwards a full virtqueue of GEMMs to a fake of the real SST
// component while the link's reader is stalled. With the default window the fake never
// holds more than the window's answers unread and survives; without one it overruns and
// closes the link, as the real component does under 48–64 clients.
func TestWindowAgainstRealSST(t *testing.T) {
	const n = protocol.QueueSize
	for _, tt := range []struct {
		name   string
		window int
	}{{"default window", DefaultSSTWindow}, {"no window", 0}} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sst.sock")
			fake, err := refsst.Listen(path, refsst.Tutorial)
			require.NoError(t, err)
			defer fake.Close()

			client := &gatedClient{recClient: newRecClient(), gate: make(chan struct{}), stalled: make(chan struct{})}
			cfg := Config{Dialer: UnixDialer(path), MaxInFlight: tt.window,
				ReconnectMin: time.Hour, ReconnectMax: time.Hour} // one connection only
			l := newLink(&cfg, client)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); l.run(ctx) }()
			defer func() { client.release(); cancel(); <-done }()
			client.waitLink(t, true)

			slots := make([]*forwarded, n)
			for i := range slots {
				slots[i] = new(forwarded)
				r := protocol.Request{Type: protocol.ReqGEMM, RequestID: uint64(i)}
				r.SetGEMM(protocol.GEMM{M: 4, N: 16, K: uint32(8 + i), DtypeSize: 4})
				require.NoError(t, r.Encode(slots[i].req[:]))
				if !l.forward(slots[i]) {
					require.Zero(t, tt.window, "link down with a window")
					break // without one the fake may have overrun already
				}
			}
			wctx, wcancel := context.WithTimeout(context.Background(), waitLimit)
			defer wcancel()
			select {
			case <-client.stalled:
			case <-wctx.Done():
				t.Fatal("no answer reached the link")
			}
			if tt.window == 0 {
				require.NoError(t, fake.Wait(wctx, func(s refsst.Stats) bool { return s.Overruns > 0 }),
					"without a window the fake must overrun")
				client.release()
				client.waitLink(t, false)
				return
			}
			// The reader took one answer off the window before it stalled, so the writer
			// sent one more: window+1 requests, and no more until the reader goes on.
			require.NoError(t, fake.Wait(wctx, func(s refsst.Stats) bool { return s.Requests >= uint64(tt.window+1) }))
			assert.Equal(t, uint64(tt.window+1), fake.Stats().Requests, "the window holds")
			client.release()
			require.NoError(t, fake.Wait(wctx, func(s refsst.Stats) bool { return s.Requests == n }))
			require.Eventually(t, func() bool {
				client.mu.Lock()
				defer client.mu.Unlock()
				return len(client.done) == n
			}, waitLimit, time.Millisecond)
			client.mu.Lock()
			defer client.mu.Unlock()
			for i, s := range slots {
				got := client.done[s]
				require.Len(t, got, 1)
				require.Equal(t, protocol.StatusOK, got[0].st, "request %d", i)
				var resp protocol.Response
				require.NoError(t, resp.Decode(got[0].resp))
				cycles, _, _, _ := refsst.TutorialGEMMCycles(4, 16, uint64(8+i), 4)
				assert.Equal(t, uint64(i), resp.RequestID)
				assert.Equal(t, cycles, resp.Result)
			}
			assert.Zero(t, fake.Stats().Overruns)
			assert.Equal(t, uint64(1), fake.Stats().Conns)
		})
	}
}
