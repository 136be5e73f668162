package virtiodev

import (
	"bufio"
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

// slot carries one request forwarded to layer 5 from the device goroutine to its
// completion. Slots are pooled: a steady stream of requests allocates nothing.
type slot struct {
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
	complete(s *slot, resp []byte, st protocol.Status)
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
		log: cfg.Logger, epoch: time.Now(),
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
			l.log.Debug().Err(err).Dur("retry_in", wait).Msg("virtiodev: cannot reach SST")
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
// connection is up (the caller then answers NO_DEVICE). It never blocks on I/O.
func (l *link) forward(s *slot) bool {
	ss := l.cur.Load()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	if ss.dead {
		ss.mu.Unlock()
		return false
	}
	ss.q.push(s)
	ss.mu.Unlock()
	select {
	case ss.wake <- struct{}{}:
	default:
	}
	return true
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
	dead    bool // set once; no slot enters q after it
	failSt  protocol.Status
	failErr error

	wake chan struct{} // the writer has work
	done chan struct{} // closed when the session fails
}

// serve runs one connection until it fails or ctx is cancelled, then completes every
// slot still in flight with the failure status.
func (l *link) serve(ctx context.Context, conn io.ReadWriteCloser) {
	l.conns++
	s := &session{l: l, conn: conn, id: l.conns, wake: make(chan struct{}, 1), done: make(chan struct{})}
	l.cur.Store(s)
	l.log.Info().Uint64("conn", s.id).Msg("virtiodev: connected to SST")
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
	lost := make([]*slot, 0, s.q.len())
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
	l.log.Warn().Uint64("conn", s.id).Err(why).Int("in_flight_failed", len(lost)).Msg("virtiodev: SST link down")
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

// writer sends queued requests in batches. It copies each batch out of its slots and
// counts them as written before the Write, so a response can only ever match a slot the
// writer is done with.
func (s *session) writer() {
	var batch [maxWriteBatch]*slot
	buf := make([]byte, maxWriteBatch*protocol.RequestSize)
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			if s.dead {
				s.mu.Unlock()
				return
			}
			k := min(s.q.len()-s.written, maxWriteBatch)
			for i := range k {
				batch[i] = s.q.at(s.written + i)
			}
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
			if _, err := s.conn.Write(buf[:k*protocol.RequestSize]); err != nil {
				s.fail(fmt.Errorf("virtiodev: writing to SST: %w", err), protocol.StatusNoDevice)
				return
			}
		}
	}
}

// reader reads whole responses (never acting on a short read) and completes the oldest
// written slot with each.
func (s *session) reader() {
	br := bufio.NewReaderSize(s.conn, readBufSize)
	resp := make([]byte, protocol.ResponseSize)
	for {
		if _, err := io.ReadFull(br, resp); err != nil {
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
		s.mu.Unlock()
		s.l.client.complete(it, resp, protocol.StatusOK)
		if br.Buffered() < protocol.ResponseSize {
			s.l.client.flush()
		}
	}
}

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
	buf  []*slot
	head int
	n    int
}

func (f *fifo) len() int { return f.n }

// at returns the i-th oldest slot; i < len.
func (f *fifo) at(i int) *slot { return f.buf[(f.head+i)&(len(f.buf)-1)] }

func (f *fifo) push(s *slot) {
	if f.n == len(f.buf) {
		grown := make([]*slot, max(2*len(f.buf), 2*QueueSize))
		for i := range f.n {
			grown[i] = f.at(i)
		}
		f.buf, f.head = grown, 0
	}
	f.buf[(f.head+f.n)&(len(f.buf)-1)] = s
	f.n++
}

// pop removes and returns the oldest slot; len > 0.
func (f *fifo) pop() *slot {
	s := f.buf[f.head]
	f.buf[f.head] = nil
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.n--
	return s
}
