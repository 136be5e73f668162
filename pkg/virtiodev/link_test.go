package virtiodev

import (
	"bytes"
	"context"
	"encoding/binary"
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
	done  map[*forwarded][]completion
	links chan bool
}

func newRecClient() *recClient {
	return &recClient{done: map[*forwarded][]completion{}, links: make(chan bool, 16)}
}

func (c *recClient) complete(s *forwarded, resp []byte, st protocol.Status) {
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
		slots := make([]*forwarded, n)
		for i := range slots {
			slots[i] = new(forwarded)
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
		assert.False(t, l.forward(new(forwarded)), "forward accepted with the link down")
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
	slots := make([]*forwarded, 3*protocol.QueueSize+5)
	for i := range slots {
		slots[i] = new(forwarded)
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

func TestMemConnTryWrite(t *testing.T) {
	a, b := newMemConns()
	tw, ok := a.(directWriter)
	require.True(t, ok, "memConn must offer non-blocking writes")
	first := bytes.Repeat([]byte{1}, memPipeSize-10)
	_, err := a.Write(first)
	require.NoError(t, err)
	assert.False(t, tw.tryWrite(bytes.Repeat([]byte{2}, 11)), "11 bytes accepted with room for 10")
	assert.True(t, tw.tryWrite(bytes.Repeat([]byte{3}, 10)), "10 bytes refused with room for 10")
	assert.False(t, tw.tryWrite([]byte{4}), "a byte accepted into a full pipe")

	got := make([]byte, memPipeSize)
	_, err = io.ReadFull(b, got)
	require.NoError(t, err)
	assert.Equal(t, append(first, bytes.Repeat([]byte{3}, 10)...), got, "a refused write left bytes behind")
	assert.True(t, tw.tryWrite([]byte{5}), "room was made by the read")
	require.NoError(t, b.Close())
	assert.False(t, tw.tryWrite([]byte{6}), "write accepted after close")
}

// chunkReader returns its data in reads of 1, 2, 3, … bytes, then err.
type chunkReader struct {
	data []byte
	next int
	err  error
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	c.next++
	n := copy(b[:min(len(b), c.next)], c.data)
	c.data = c.data[n:]
	return n, nil
}

func TestFrameReader(t *testing.T) {
	const frame = 7
	stream := make([]byte, 5*frame)
	for i := range stream {
		stream[i] = byte(i)
	}
	errBroken := errors.New("broken")
	tests := []struct {
		name   string
		data   []byte
		err    error // what the source returns once drained
		frames int   // whole frames expected
		want   error // the error after them
	}{
		{"frames across reads of every size", stream, io.EOF, 5, io.EOF},
		{"stream ends inside a frame", stream[:2*frame+3], io.EOF, 2, io.ErrUnexpectedEOF},
		{"stream fails", stream[:frame+1], errBroken, 1, errBroken},
		{"stream makes no progress", stream[:frame], nil, 1, io.ErrNoProgress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A buffer of two frames and a bit forces the unread part to move to the front.
			fr := newFrameReader(&chunkReader{data: tt.data, err: tt.err}, 2*frame+2)
			for i := range tt.frames {
				b, err := fr.next(frame)
				require.NoError(t, err, "frame %d", i)
				require.Equal(t, stream[i*frame:(i+1)*frame], b, "frame %d", i)
				clear(b) // lent out: the caller may overwrite it
			}
			_, err := fr.next(frame)
			assert.ErrorIs(t, err, tt.want)
		})
	}
}

// TestLinkKeepsOrderAcrossWritePaths forwards requests while layer 5 is not reading, so
// that the in-memory pipe fills and forwarding switches from writing itself to queueing
// for the writer while it drains them, then back. Each request must still get the answer
// to itself.
func TestLinkKeepsOrderAcrossWritePaths(t *testing.T) {
	const first, second, third = 3 * memPipeSize / protocol.RequestSize, 400, 40
	release := make(chan struct{})
	serve := func(ctx context.Context, conn io.ReadWriteCloser) error {
		<-release
		req := make([]byte, protocol.RequestSize)
		resp := make([]byte, protocol.ResponseSize)
		for {
			if _, err := io.ReadFull(conn, req); err != nil {
				return err
			}
			copy(resp[24:32], req[:8]) // result = the request's index
			if _, err := conn.Write(resp); err != nil {
				return err
			}
		}
	}
	client := newRecClient()
	cfg := Config{Dialer: onceDialer(serve), ReconnectMin: time.Millisecond, ReconnectMax: time.Millisecond}
	l := newLink(&cfg, client)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.run(ctx) }()
	defer func() { cancel(); <-done }()
	client.waitLink(t, true)

	var slots []*forwarded
	send := func(n int) {
		for range n {
			s := new(forwarded)
			binary.LittleEndian.PutUint64(s.req[:], uint64(len(slots)))
			slots = append(slots, s)
			require.True(t, l.forward(s), "forward refused")
		}
	}
	answered := func() int {
		client.mu.Lock()
		defer client.mu.Unlock()
		return len(client.done)
	}
	send(first)
	close(release)
	send(second) // while the writer drains the first
	eventually(t, "all answers", func() bool { return answered() == first+second })
	send(third) // with the writer idle again
	eventually(t, "all answers", func() bool { return answered() == first+second+third })

	client.mu.Lock()
	defer client.mu.Unlock()
	for i, s := range slots {
		got := client.done[s]
		require.Len(t, got, 1, "request %d completed %d times", i, len(got))
		require.Equal(t, protocol.StatusOK, got[0].st, "request %d", i)
		require.Equal(t, uint64(i), binary.LittleEndian.Uint64(got[0].resp[24:]), "request %d got another's answer", i)
	}
}
