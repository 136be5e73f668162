package virtiodev

import (
	"io"
	"sync"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// memPipeSize is the buffer of each direction of a memPipe: 64 requests' worth, so a
// burst of requests or responses never waits for the other side.
const memPipeSize = 64 * protocol.RequestSize

// memPipe is one direction of an in-memory, buffered byte stream. Unlike net.Pipe, whose
// every Write waits for a matching Read, a writer returns as soon as its bytes are in
// the buffer and a reader takes everything buffered at once, so a stream of small
// messages costs far fewer goroutine hand-offs.
type memPipe struct {
	mu       sync.Mutex
	readable sync.Cond // signalled when data arrives or the pipe closes
	writable sync.Cond // signalled when room appears or the pipe closes
	buf      []byte    // ring buffer
	r, n     int       // read position and bytes buffered
	closed   bool
}

func newMemPipe(size int) *memPipe {
	p := &memPipe{buf: make([]byte, size)}
	p.readable.L = &p.mu
	p.writable.L = &p.mu
	return p
}

func (p *memPipe) read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.n == 0 && !p.closed {
		p.readable.Wait()
	}
	if p.n == 0 {
		return 0, io.EOF
	}
	total := 0
	for p.n > 0 && total < len(b) {
		k := copy(b[total:], p.buf[p.r:min(len(p.buf), p.r+p.n)])
		p.r = (p.r + k) % len(p.buf)
		p.n -= k
		total += k
	}
	p.writable.Signal()
	return total, nil
}

func (p *memPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	total := 0
	for total < len(b) {
		for p.n == len(p.buf) && !p.closed {
			p.writable.Wait()
		}
		if p.closed {
			return total, io.ErrClosedPipe
		}
		w := (p.r + p.n) % len(p.buf)
		k := copy(p.buf[w:min(len(p.buf), w+len(p.buf)-p.n)], b[total:])
		p.n += k
		total += k
		p.readable.Signal()
	}
	return total, nil
}

func (p *memPipe) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.readable.Broadcast()
	p.writable.Broadcast()
}

// memConn is one end of a pair made by newMemConns.
type memConn struct {
	in, out *memPipe
	once    sync.Once
}

// newMemConns returns the two ends of a buffered in-memory stream.
func newMemConns() (a, b io.ReadWriteCloser) {
	ab, ba := newMemPipe(memPipeSize), newMemPipe(memPipeSize)
	return &memConn{in: ba, out: ab}, &memConn{in: ab, out: ba}
}

// Read implements io.Reader: it returns what is buffered, waiting for at least one byte,
// and io.EOF once the stream is closed and drained.
func (c *memConn) Read(b []byte) (int, error) { return c.in.read(b) }

// Write implements io.Writer: it buffers all of b, waiting for room as needed, or fails
// with io.ErrClosedPipe once either end is closed.
func (c *memConn) Write(b []byte) (int, error) { return c.out.write(b) }

// Close closes both directions; blocked reads and writes on either end return.
func (c *memConn) Close() error {
	c.once.Do(func() {
		c.in.close()
		c.out.close()
	})
	return nil
}
