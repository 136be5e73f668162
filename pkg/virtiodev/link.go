package virtiodev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Dialer opens one byte stream to the SST component (layer 5), over which the device
// writes raw 4104-byte SSTRequests and reads raw 4112-byte SSTResponses in request order.
// ctx is cancelled when the device shuts down: Dial must return promptly then, and a
// Dialer may tie the life of whatever serves the stream to it. Close on the returned
// stream must unblock a pending Read or Write (net.Conn and net.Pipe do).
type Dialer func(ctx context.Context) (io.ReadWriteCloser, error)

// UnixDialer connects to an SST component listening on the Unix stream socket at path
// (`sstemu sst --socket PATH`, or the real acalsim.VirtIODevice).
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// PipeDialer connects to an in-process SST component: each dial makes an in-memory
// stream, runs serve on one end in a new goroutine (with the device's lifetime ctx) and
// returns the other end. serve is typically the component's ServeConn; the end it gets is
// closed when it returns. The stream behaves like net.Pipe (closing either end ends both)
// but is buffered, so neither side waits for the other to read: a round trip costs fewer
// goroutine hand-offs, and a burst of answers reaches the device in one read.
func PipeDialer(serve func(ctx context.Context, conn io.ReadWriteCloser) error) Dialer {
	return func(ctx context.Context) (io.ReadWriteCloser, error) {
		dev, comp := newMemConns()
		go func() {
			_ = serve(ctx, comp)
			_ = comp.Close()
		}()
		return dev, nil
	}
}

// Sizes of the link's buffers.
const (
	// maxWriteBatch is how many queued requests the writer sends in one Write.
	maxWriteBatch = 16
	// readBufSize is the reader's buffer: several responses, so a burst costs few reads.
	readBufSize = 16 * protocol.ResponseSize
)

// ErrUnsolicited is the reason a link is dropped when layer 5 sends a response with no
// request outstanding: the stream is out of step and cannot be trusted any more.
var ErrUnsolicited = errors.New("virtiodev: SST sent a response with no request outstanding")

// TimeoutError is the reason a link is dropped when layer 5 did not answer in time.
type TimeoutError struct {
	Waited, Limit time.Duration
}

// Error implements error.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("virtiodev: SST did not answer within %v (oldest request waited %v)", e.Limit, e.Waited)
}

// forwarded carries one request forwarded to layer 5 from the device goroutine to its
// completion. They are pooled: a steady stream of requests allocates nothing.
type forwarded struct {
	req    [protocol.RequestSize]byte
	chain  virtqueue.Chain // the popped chain to answer
	gen    uint64          // attachment generation the chain belongs to
	sentAt time.Duration   // when the writer sent it, since link.epoch (with a timeout only)
}

// linkClient is what the link reports to: the Device, or a test double.
type linkClient interface {
	// complete finishes a forwarded slot. With st == StatusOK, resp holds the
	// ResponseSize bytes layer 5 sent; otherwise the link failed and the client answers
	// with st itself. resp is scratch owned by the caller, which the client may
	// overwrite; complete must not block for long.
	complete(s *forwarded, resp []byte, st protocol.Status)
	// flush is called after a run of complete calls, when no further response is
	// buffered: the moment to raise an interrupt.
	flush()
	// linkChanged reports that connection number conn (1, 2, …) came up or went down.
	linkChanged(up bool, conn uint64)
}

// link keeps the device connected to layer 5: it dials, runs one session per
// connection, and after a failure redials with exponential back-off.
type link struct {
	dial          Dialer
	client        linkClient
	minWait       time.Duration
	maxWait       time.Duration
	timeout       time.Duration
	window        int // most requests written and not yet answered; 0: no bound
	log           zerolog.Logger
	epoch         time.Time
	cur           atomic.Pointer[session]
	conns         uint64 // connections made; only the run goroutine touches it
	dialFailures  atomic.Uint64
	timeoutDrops  atomic.Uint64
	protocolDrops atomic.Uint64
}

func newLink(cfg *Config, client linkClient) *link {
	return &link{
		dial: cfg.Dialer, client: client,
		minWait: cfg.ReconnectMin, maxWait: cfg.ReconnectMax, timeout: cfg.ResponseTimeout,
		window: cfg.MaxInFlight, log: cfg.Logger, epoch: time.Now(),
	}
}

// run connects and reconnects until ctx is cancelled; it returns after the last session
// has been torn down and every request in it completed.
func (l *link) run(ctx context.Context) {
	wait := l.minWait
	for ctx.Err() == nil {
		conn, err := l.dial(ctx)
		if err == nil {
			start := time.Now()
			l.serve(ctx, conn)
			if time.Since(start) >= l.maxWait {
				wait = l.minWait
			}
		} else {
			l.dialFailures.Add(1)
			l.log.Debug().Err(err).Dur("retry_in", wait).Msg("cannot reach SST")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, l.maxWait)
	}
}

// forward queues s for layer 5 and reports true, or reports false at once when no
// connection is up (the caller then answers NO_DEVICE). It never blocks on I/O. On a
// stream that can take a write without waiting (the in-memory pipe), when the writer is
// idle with nothing queued, it sends s itself instead of handing it to the writer.
func (l *link) forward(s *forwarded) bool {
	ss := l.cur.Load()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	if ss.dead {
		ss.mu.Unlock()
		return false
	}
	if ss.direct != nil && !ss.writing && ss.written == ss.q.len() && (l.window == 0 || ss.written < l.window) {
		if l.timeout > 0 {
			s.sentAt = time.Since(l.epoch)
		}
		// Sent and counted as written under mu: the reader cannot match a response to
		// s before the write is complete.
		if ss.direct.tryWrite(s.req[:]) {
			ss.q.push(s)
			ss.written++
			ss.mu.Unlock()
			return true
		}
	}
	ss.q.push(s)
	ss.mu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default:
	}
	return true
}

// directWriter is a stream that takes a whole write at once or refuses it, never waiting
// (the in-memory pipe).
type directWriter interface {
	tryWrite(b []byte) bool
}

// session is one connection to layer 5: a writer goroutine sends queued requests, a
// reader goroutine matches each response to the oldest request sent. Both share a FIFO
// of the slots in flight.
type session struct {
	l    *link
	conn io.ReadWriteCloser
	id   uint64

	mu      sync.Mutex
	q       fifo // slots in flight, oldest first
	written int  // the first `written` slots of q have been handed to conn
	writing bool // the writer has taken slots of q and not finished writing them
	dead    bool // set once; no slot enters q after it
	failSt  protocol.Status
	failErr error

	direct directWriter // conn, if writes to it never wait; nil otherwise

	wake chan struct{} // the writer has work
	done chan struct{} // closed when the session fails
}

// serve runs one connection until it fails or ctx is cancelled, then completes every
// slot still in flight with the failure status.
func (l *link) serve(ctx context.Context, conn io.ReadWriteCloser) {
	l.conns++
	s := &session{l: l, conn: conn, id: l.conns, wake: make(chan struct{}, 1), done: make(chan struct{})}
	s.direct, _ = conn.(directWriter)
	l.cur.Store(s)
	l.log.Info().Uint64("conn", s.id).Msg("connected to SST")
	l.client.linkChanged(true, s.id)

	var wg sync.WaitGroup
	wg.Go(s.writer)
	wg.Go(s.reader)
	if l.timeout > 0 {
		wg.Go(s.watchdog)
	}
	select {
	case <-ctx.Done():
		s.fail(ctx.Err(), protocol.StatusNoDevice)
	case <-s.done:
	}
	wg.Wait()
	l.cur.CompareAndSwap(s, nil)

	s.mu.Lock()
	lost := make([]*forwarded, 0, s.q.len())
	for s.q.len() > 0 {
		lost = append(lost, s.q.pop())
	}
	st, why := s.failSt, s.failErr
	s.mu.Unlock()
	resp := make([]byte, protocol.ResponseSize)
	for _, it := range lost {
		l.client.complete(it, resp, st)
	}
	if len(lost) > 0 {
		l.client.flush()
	}
	ev := l.log.Warn()
	if ctx.Err() != nil {
		// The device is closing: the link ends by design (the cancelled context, or the
		// EOF of an in-process component stopped by the same context).
		ev = l.log.Info()
	}
	ev.Uint64("conn", s.id).Err(why).Int("in_flight_failed", len(lost)).Msg("SST link down")
	l.client.linkChanged(false, s.id)
}

// fail marks the session dead (first caller wins), records why and closes the stream,
// which unblocks the reader and the writer.
func (s *session) fail(err error, st protocol.Status) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead, s.failErr, s.failSt = true, err, st
	s.mu.Unlock()
	close(s.done)
	_ = s.conn.Close()
}

// writer sends queued requests in batches, never more than the window in flight. It
// copies each batch out of its slots and counts them as written before writing, so a
// response can only ever match a slot the writer is done with. While it holds a batch,
// forward queues requests for it instead of sending them itself, so the stream keeps the
// order of q. On a stream other than the in-memory pipe each request is one Write: the
// real SST component reads each request with a single read and drops one that arrives
// in pieces, and one write of 4104 bytes, with the window bounding what is queued in the
// socket, arrives whole.
func (s *session) writer() {
	var batch [maxWriteBatch]*forwarded
	buf := make([]byte, maxWriteBatch*protocol.RequestSize)
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			s.writing = false
			if s.dead {
				s.mu.Unlock()
				return
			}
			k := min(s.q.len()-s.written, maxWriteBatch)
			if s.l.window > 0 {
				k = min(k, s.l.window-s.written) // the reader wakes us as answers free the window
			}
			for i := range k {
				batch[i] = s.q.at(s.written + i)
			}
			s.writing = k > 0
			s.mu.Unlock()
			if k == 0 {
				break
			}
			for i := range k {
				copy(buf[i*protocol.RequestSize:], batch[i].req[:])
			}
			s.mu.Lock()
			s.written += k
			if s.l.timeout > 0 {
				now := time.Since(s.l.epoch)
				for i := range k {
					batch[i].sentAt = now
				}
			}
			s.mu.Unlock()
			clear(batch[:k])
			if err := s.write(buf[:k*protocol.RequestSize]); err != nil {
				s.fail(fmt.Errorf("virtiodev: writing to SST: %w", err), protocol.StatusNoDevice)
				return
			}
		}
	}
}

// write sends b, whole requests: in one Write on the in-memory pipe, one Write per
// request on any other stream.
func (s *session) write(b []byte) error {
	if s.direct != nil {
		_, err := s.conn.Write(b)
		return err
	}
	for len(b) > 0 {
		if _, err := s.conn.Write(b[:protocol.RequestSize]); err != nil {
			return err
		}
		b = b[protocol.RequestSize:]
	}
	return nil
}

// reader reads whole responses (never acting on a short read) and completes the oldest
// written slot with each, handing the client the response where it was read.
func (s *session) reader() {
	fr := newFrameReader(s.conn, readBufSize)
	for {
		resp, err := fr.next(protocol.ResponseSize)
		if err != nil {
			s.fail(fmt.Errorf("virtiodev: reading from SST: %w", err), protocol.StatusNoDevice)
			return
		}
		s.mu.Lock()
		if s.written == 0 {
			s.mu.Unlock()
			s.l.protocolDrops.Add(1)
			s.fail(ErrUnsolicited, protocol.StatusNoDevice)
			return
		}
		it := s.q.pop()
		s.written--
		wake := s.l.window > 0 && s.q.len() > s.written // requests wait for the window
		s.mu.Unlock()
		if wake {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		s.l.client.complete(it, resp, protocol.StatusOK)
		if fr.buffered() < protocol.ResponseSize {
			s.l.client.flush()
		}
	}
}

// maxEmptyReads is how many reads in a row may return nothing before frameReader gives
// up on the stream, as bufio does.
const maxEmptyReads = 100

// frameReader reads fixed-size frames from a stream into its own buffer and lends each
// out in place, so a response is not copied again on its way to guest memory.
type frameReader struct {
	r          io.Reader
	buf        []byte
	head, tail int // buf[head:tail] is read but not yet lent out
}

func newFrameReader(r io.Reader, size int) *frameReader {
	return &frameReader{r: r, buf: make([]byte, size)}
}

// next returns the next n bytes of the stream (n at most the buffer's size), waiting for
// all of them. The slice is the caller's to read and overwrite until the following call.
// The error is the stream's, or io.ErrUnexpectedEOF when it ends inside a frame.
func (f *frameReader) next(n int) ([]byte, error) {
	if f.head == f.tail {
		f.head, f.tail = 0, 0
	}
	for empty := 0; f.tail-f.head < n; {
		if len(f.buf)-f.head < n {
			f.tail = copy(f.buf, f.buf[f.head:f.tail])
			f.head = 0
		}
		k, err := f.r.Read(f.buf[f.tail:])
		f.tail += k
		switch {
		case f.tail-f.head >= n:
		case errors.Is(err, io.EOF) && f.tail > f.head:
			return nil, io.ErrUnexpectedEOF
		case err != nil:
			return nil, err
		case k == 0:
			if empty++; empty >= maxEmptyReads {
				return nil, io.ErrNoProgress
			}
		}
	}
	b := f.buf[f.head : f.head+n]
	f.head += n
	return b, nil
}

// buffered returns how many bytes have been read but not lent out.
func (f *frameReader) buffered() int { return f.tail - f.head }

// watchdog drops the session when the oldest written request has waited longer than
// the response timeout.
func (s *session) watchdog() {
	period := max(s.l.timeout/4, time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var waited time.Duration
		if s.written > 0 {
			waited = time.Since(s.l.epoch) - s.q.at(0).sentAt
		}
		s.mu.Unlock()
		if waited > s.l.timeout {
			s.l.timeoutDrops.Add(1)
			s.fail(&TimeoutError{Waited: waited, Limit: s.l.timeout}, protocol.StatusTimeout)
			return
		}
	}
}

// fifo is a growable ring of slots.
type fifo struct {
	buf  []*forwarded
	head int
	n    int
}

func (f *fifo) len() int { return f.n }

// at returns the i-th oldest slot; i < len.
func (f *fifo) at(i int) *forwarded { return f.buf[(f.head+i)&(len(f.buf)-1)] }

func (f *fifo) push(s *forwarded) {
	if f.n == len(f.buf) {
		grown := make([]*forwarded, max(2*len(f.buf), 2*protocol.QueueSize))
		for i := range f.n {
			grown[i] = f.at(i)
		}
		f.buf, f.head = grown, 0
	}
	f.buf[(f.head+f.n)&(len(f.buf)-1)] = s
	f.n++
}

// pop removes and returns the oldest slot; len > 0.
func (f *fifo) pop() *forwarded {
	s := f.buf[f.head]
	f.buf[f.head] = nil
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.n--
	return s
}
