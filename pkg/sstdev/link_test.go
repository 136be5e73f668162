package sstdev_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/virtiodev"
)

// gatedLink is a link to a fakeL5 whose first connection lasts until drop is closed and
// whose later connections are dialled only once allow is closed.
type gatedLink struct {
	l5          fakeL5
	drop, allow chan struct{}
	dials       atomic.Int64
}

func newGatedLink() *gatedLink {
	return &gatedLink{drop: make(chan struct{}), allow: make(chan struct{})}
}

func (g *gatedLink) dial(ctx context.Context) (io.ReadWriteCloser, error) {
	if g.dials.Add(1) == 1 {
		return virtiodev.PipeDialer(func(ctx context.Context, conn io.ReadWriteCloser) error {
			go func() {
				select {
				case <-g.drop:
				case <-ctx.Done():
				}
				_ = conn.Close()
			}()
			return g.l5.serve(ctx, conn)
		})(ctx)
	}
	select {
	case <-g.allow:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return virtiodev.PipeDialer(g.l5.serve)(ctx)
}

// TestWaitLinkUp follows the link through up, down and up again: WaitLinkUp returns once
// the device's LINK_UP event arrived, waits while the latest event is LINK_DOWN, and
// gives up with the context or with Close.
func TestWaitLinkUp(t *testing.T) {
	g := newGatedLink()
	b, err := virtiodev.New(virtiodev.Config{Dialer: g.dial, ReconnectMin: time.Millisecond, ReconnectMax: time.Millisecond})
	require.NoError(t, err)
	d, err := sstdev.New(sstdev.Config{Backend: b})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })

	waitLinkUp(t, d)
	waitLinkUp(t, d) // up already: returns at once
	assert.True(t, d.Stats().LinkUp)
	f, err := d.Open()
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, uint64(1), f.LinkGeneration(), "one LINK_UP so far")

	close(g.drop)
	eventually(t, "LINK_DOWN recorded", func() bool { return !d.Stats().LinkUp })
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, d.WaitLinkUp(short), context.DeadlineExceeded, "the link is down and stays down")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- d.WaitLinkUp(ctx)
	}()
	close(g.allow)
	require.NoError(t, <-done, "the reconnection's LINK_UP ends the wait")
	assert.True(t, d.Stats().LinkUp)
	assert.Equal(t, uint64(2), f.LinkGeneration(), "the re-established link is a new generation")
	assert.Equal(t, int64(2), g.dials.Load())
}

func TestWaitLinkUpClosed(t *testing.T) {
	never := func(ctx context.Context) (io.ReadWriteCloser, error) { <-ctx.Done(); return nil, ctx.Err() }
	b, err := virtiodev.New(virtiodev.Config{Dialer: never})
	require.NoError(t, err)
	d, err := sstdev.New(sstdev.Config{Backend: b})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, d.WaitLinkUp(ctx), context.Canceled)

	done := make(chan error, 1)
	go func() { done <- d.WaitLinkUp(context.Background()) }()
	require.NoError(t, d.Close())
	require.ErrorIs(t, <-done, sstdev.ErrClosed)
	require.ErrorIs(t, d.WaitLinkUp(context.Background()), sstdev.ErrClosed)
}
