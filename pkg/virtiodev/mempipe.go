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
	for p.n == 0 && !p.closed {
		p.readable.Wait()
	}
	if p.n == 0 {
		p.mu.Unlock()
		return 0, io.EOF
	}
	total := 0
	for p.n > 0 && total < len(b) {
		k := copy(b[total:], p.buf[p.r:min(len(p.buf), p.r+p.n)])
		p.r = (p.r + k) % len(p.buf)
		p.n -= k
		total += k
	}
	p.mu.Unlock()
	// Signalled after unlocking, so that a woken writer does not wait for the mutex.
	p.writable.Signal()
	return total, nil
}

func (p *memPipe) write(b []byte) (int, error) {
	p.mu.Lock()
	total := 0
	for total < len(b) {
		for p.n == len(p.buf) && !p.closed {
			p.writable.Wait()
		}
		if p.closed {
			p.mu.Unlock()
			return total, io.ErrClosedPipe
		}
		total += p.put(b[total:])
		if total < len(b) {
			p.readable.Signal() // the pipe is full: the reader must make room
		}
	}
	p.mu.Unlock()
	p.readable.Signal()
	return total, nil
}

// tryWrite buffers all of b and reports true if it fits now and the pipe is open. It never
// waits, and buffers nothing when it reports false.
func (p *memPipe) tryWrite(b []byte) bool {
	p.mu.Lock()
	if p.closed || len(p.buf)-p.n < len(b) {
		p.mu.Unlock()
		return false
	}
	p.put(b)
	p.mu.Unlock()
	p.readable.Signal()
	return true
}

// put copies as much of b as there is room for into the ring and returns how much; the
// caller holds mu.
func (p *memPipe) put(b []byte) int {
	total := 0
	for total < len(b) && p.n < len(p.buf) {
		w := (p.r + p.n) % len(p.buf)
		k := copy(p.buf[w:min(len(p.buf), w+len(p.buf)-p.n)], b[total:])
		p.n += k
		total += k
	}
	return total
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

// tryWrite implements directWriter: it buffers all of b at once or nothing, never waiting.
func (c *memConn) tryWrite(b []byte) bool { return c.out.tryWrite(b) }

// Close closes both directions; blocked reads and writes on either end return.
func (c *memConn) Close() error {
	c.once.Do(func() {
		c.in.close()
		c.out.close()
	})
	return nil
}
