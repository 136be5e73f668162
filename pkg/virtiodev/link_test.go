package virtiodev

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// completion is one linkClient.complete call as a recClient saw it.
type completion struct {
	st   protocol.Status
	resp []byte // copy of the bytes layer 5 sent (status OK only)
}

// recClient records what the link reports.
type recClient struct {
	mu    sync.Mutex
	done  map[*slot][]completion
	links chan bool
}

func newRecClient() *recClient {
	return &recClient{done: map[*slot][]completion{}, links: make(chan bool, 16)}
}

func (c *recClient) complete(s *slot, resp []byte, st protocol.Status) {
	cp := completion{st: st}
	if st == protocol.StatusOK {
		cp.resp = bytes.Clone(resp)
	}
	c.mu.Lock()
	c.done[s] = append(c.done[s], cp)
	c.mu.Unlock()
}

func (c *recClient) flush() {}

func (c *recClient) linkChanged(up bool, _ uint64) { c.links <- up }

func (c *recClient) waitLink(t *testing.T, want bool) {
	t.Helper()
	select {
	case up := <-c.links:
		require.Equal(t, want, up)
	case <-time.After(waitLimit):
		t.Fatalf("link never went up=%v", want)
	}
}

// onceDialer dials through PipeDialer(serve) the first time and fails afterwards.
func onceDialer(serve func(ctx context.Context, conn io.ReadWriteCloser) error) Dialer {
	var mu sync.Mutex
	used := false
	pipe := PipeDialer(serve)
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		mu.Lock()
		defer mu.Unlock()
		if used {
			return nil, errFakeDown
		}
		used = true
		return pipe(ctx)
	}
}

// FuzzLinkResponses feeds the link an arbitrary response stream. Layer 5 reads all n
// requests, writes data and hangs up. Whatever data holds, every request must complete
// exactly once: the first min(n, len(data)/4112) with the matching 4112-byte chunk of
// data, in order, and the rest NO_DEVICE.
func FuzzLinkResponses(f *testing.F) {
	resp := func(id uint64) []byte {
		r := protocol.Response{Status: protocol.StatusOK, RequestID: id, Result: id * 3}
		b, _ := r.MarshalBinary()
		return b
	}
	f.Add(uint8(1), resp(1))
	f.Add(uint8(3), append(append(resp(1), resp(2)...), 1, 2, 3))
	f.Add(uint8(2), append(append(resp(1), resp(2)...), resp(3)...)) // one unsolicited
	f.Add(uint8(4), []byte{})
	f.Add(uint8(1), resp(1)[:protocol.ResponseSize-1])
	f.Fuzz(func(t *testing.T, nreq uint8, data []byte) {
		n := int(nreq%8) + 1
		serve := func(ctx context.Context, conn io.ReadWriteCloser) error {
			buf := make([]byte, n*protocol.RequestSize)
			if _, err := io.ReadFull(conn, buf); err != nil {
				return err
			}
			_, err := conn.Write(data)
			return err
		}
		client := newRecClient()
		cfg := Config{Dialer: onceDialer(serve), ReconnectMin: time.Millisecond, ReconnectMax: time.Millisecond}
		l := newLink(&cfg, client)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); l.run(ctx) }()
		defer func() { cancel(); <-done }()

		client.waitLink(t, true)
		slots := make([]*slot, n)
		for i := range slots {
			slots[i] = new(slot)
			slots[i].req[0] = byte(i)
			require.True(t, l.forward(slots[i]), "link up but forward refused")
		}
		client.waitLink(t, false)

		answered := min(n, len(data)/protocol.ResponseSize)
		client.mu.Lock()
		defer client.mu.Unlock()
		for i, s := range slots {
			got := client.done[s]
			require.Len(t, got, 1, "request %d completed %d times", i, len(got))
			if i < answered {
				assert.Equal(t, protocol.StatusOK, got[0].st, "request %d", i)
				assert.Equal(t, data[i*protocol.ResponseSize:(i+1)*protocol.ResponseSize], got[0].resp, "request %d", i)
			} else {
				assert.Equal(t, protocol.StatusNoDevice, got[0].st, "request %d", i)
			}
		}
		assert.False(t, l.forward(new(slot)), "forward accepted with the link down")
	})
}

func TestMemConn(t *testing.T) {
	t.Run("bytes arrive in order across wrap-around", func(t *testing.T) {
		a, b := newMemConns()
		const total = 3*memPipeSize + 12345
		src := make([]byte, total)
		for i := range src {
			src[i] = byte(i * 31)
		}
		go func() {
			for off := 0; off < total; off += 1000 {
				_, _ = a.Write(src[off:min(total, off+1000)])
			}
			_ = a.Close()
		}()
		got, err := io.ReadAll(b)
		require.NoError(t, err)
		assert.Equal(t, src, got)
	})
	t.Run("close ends blocked reads and writes on both ends", func(t *testing.T) {
		a, b := newMemConns()
		readErr := make(chan error, 1)
		go func() {
			_, err := b.Read(make([]byte, 10))
			readErr <- err
		}()
		writeErr := make(chan error, 1)
		go func() {
			_, err := b.Write(make([]byte, 2*memPipeSize)) // more than fits: blocks
			writeErr <- err
		}()
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, a.Close())
		for _, ch := range []chan error{readErr, writeErr} {
			select {
			case err := <-ch:
				assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe), "got %v", err)
			case <-time.After(waitLimit):
				t.Fatal("blocked call not released by Close")
			}
		}
		_, err := a.Write([]byte{1})
		assert.ErrorIs(t, err, io.ErrClosedPipe)
		require.NoError(t, b.Close())
	})
	t.Run("buffered data is read before EOF", func(t *testing.T) {
		a, b := newMemConns()
		_, err := a.Write([]byte("hello"))
		require.NoError(t, err)
		require.NoError(t, a.Close())
		got, err := io.ReadAll(b)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(got))
	})
	t.Run("empty read", func(t *testing.T) {
		a, _ := newMemConns()
		n, err := a.Read(nil)
		assert.Zero(t, n)
		assert.NoError(t, err)
	})
}

func TestFIFOGrows(t *testing.T) {
	var f fifo
	slots := make([]*slot, 3*QueueSize+5)
	for i := range slots {
		slots[i] = new(slot)
	}
	// Interleave pushes and pops so that the ring wraps before it grows.
	next := 0
	for i, s := range slots {
		f.push(s)
		if i%3 == 2 {
			require.Same(t, slots[next], f.pop())
			next++
		}
	}
	for f.len() > 0 {
		require.Same(t, slots[next], f.pop())
		next++
	}
	assert.Equal(t, len(slots), next)
}
