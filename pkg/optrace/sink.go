package optrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBufferBytes is the default bound on the bytes a sink holds while its writer is
// busy (a slow disk): beyond it, items are dropped and counted.
const DefaultBufferBytes = 4 << 20

// A sink hands its items to the writer in batches: as soon as flushBytes are pending, and
// otherwise at most flushInterval after the first pending item, so that a busy server
// pays one write per batch rather than a wake-up and a write per op, and a quiet one still
// has its records on disk within the interval.
const (
	flushBytes    = 64 << 10
	flushInterval = 5 * time.Millisecond
)

// SinkStats counts what a sink did with the items it was given.
type SinkStats struct {
	Items   uint64 `json:"items"`   // items written
	Bytes   uint64 `json:"bytes"`   // bytes written
	Dropped uint64 `json:"dropped"` // items dropped: the buffer was full, or the writer had failed
	Error   string `json:"error,omitempty"`
}

// sink writes whole items (trace events, log lines) to w from its own goroutine. Add never
// blocks on w: items wait in a buffer of at most limit bytes, and an item that does not fit
// is dropped and counted. Every write to w is a sequence of whole items, so a file cut off
// by SIGKILL ends at an item boundary (unless the kernel split the write itself).
type sink struct {
	w     io.Writer
	limit int

	mu        sync.Mutex
	pending   []byte // whole items not yet handed to the writer
	spare     []byte // the writer's previous buffer, reused
	queued    uint64 // items in pending
	inflight  uint64 // items in the writer's current write
	closing   bool
	abandoned bool // close gave up on a stuck writer: what it still writes is not counted
	err       error

	wake chan struct{} // capacity 1: pending has data, or closing
	done chan struct{} // the writer goroutine has ended

	items, bytes, dropped atomic.Uint64
}

func newSink(w io.Writer, limit int) *sink {
	if limit <= 0 {
		limit = DefaultBufferBytes
	}
	s := &sink{w: w, limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.run()
	return s
}

// add queues item, or drops it if the buffer is full, the writer failed or the sink is
// closed. It reports whether the item was queued.
func (s *sink) add(item []byte) bool {
	s.mu.Lock()
	if s.closing || s.err != nil || len(s.pending)+len(item) > s.limit {
		s.mu.Unlock()
		s.dropped.Add(1)
		return false
	}
	first := len(s.pending) == 0
	s.pending = append(s.pending, item...)
	s.queued++
	if first || len(s.pending) >= flushBytes {
		select { // under mu: close cannot close wake in between
		case s.wake <- struct{}{}:
		default:
		}
	}
	s.mu.Unlock()
	return true
}

// run writes the pending items in batches until the sink is closed and drained.
func (s *sink) run() {
	defer close(s.done)
	timer := time.NewTimer(flushInterval)
	timer.Stop()
	for open := true; open; {
		_, open = <-s.wake // the first item of a batch, or close
		if open && !s.full() {
			timer.Reset(flushInterval)
			open = s.waitBatch(timer)
		}
		s.drain()
	}
}

// waitBatch waits until a whole batch is pending or the timer fires; it reports false once
// the sink is closed.
func (s *sink) waitBatch(timer *time.Timer) bool {
	defer timer.Stop()
	for {
		select {
		case _, open := <-s.wake:
			if !open {
				return false
			}
			if s.full() {
				return true
			}
		case <-timer.C:
			return true
		}
	}
}

// full reports whether a whole batch is pending.
func (s *sink) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) >= flushBytes || s.closing
}

// drain writes pending items until none is left.
func (s *sink) drain() {
	for {
		s.mu.Lock()
		buf, n := s.pending, s.queued
		if len(buf) == 0 {
			s.mu.Unlock()
			return
		}
		s.pending, s.spare, s.queued, s.inflight = s.spare[:0], nil, 0, n
		s.mu.Unlock()
		_, err := s.w.Write(buf)
		s.mu.Lock()
		s.inflight = 0
		if s.abandoned { // close already counted these items as dropped
			s.mu.Unlock()
			return
		}
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			s.dropped.Add(n)
		} else {
			s.items.Add(n)
			s.bytes.Add(uint64(len(buf)))
		}
		if cap(buf) <= 2*s.limit {
			s.spare = buf[:0]
		}
		s.mu.Unlock()
	}
}

// ErrWriterStuck is returned by a close whose context ended while the writer was still
// blocked in a write (a FIFO nobody reads, a stalled network file system): the items not
// yet written are counted as dropped and the tail is not written.
var ErrWriterStuck = errors.New("optrace: the writer did not finish in time")

// close writes what is pending, then what tail returns (directly, after the writer has
// stopped; tail may be nil), and returns the first write error. If ctx ends first, close
// counts every item not yet written as dropped, writes nothing more and returns
// ErrWriterStuck; the writer goroutine is left to return when its write does (closing the
// underlying file usually ends it).
func (s *sink) close(ctx context.Context, tail func(SinkStats) []byte) error {
	s.mu.Lock()
	already := s.closing
	s.closing = true
	if !already {
		close(s.wake)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
	case <-ctx.Done():
		if stuck, err := s.abandon(ctx); stuck {
			return err
		}
	}
	var b []byte
	if !already && tail != nil {
		b = tail(s.stats())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil && len(b) > 0 {
		if _, err := s.w.Write(b); err != nil {
			s.err = err
		} else {
			s.bytes.Add(uint64(len(b)))
		}
	}
	return s.err
}

// abandon gives up on a writer still running when ctx ended: it counts the items not yet
// written as dropped and reports true, or false if the writer has finished after all.
func (s *sink) abandon(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
		return false, nil
	default:
	}
	if !s.abandoned {
		s.abandoned = true
		lost := s.queued + s.inflight
		s.dropped.Add(lost)
		s.queued, s.inflight, s.pending = 0, 0, nil
		s.err = fmt.Errorf("%w (%d items dropped): %w", ErrWriterStuck, lost, context.Cause(ctx))
	}
	return true, s.err
}

// stats returns the counters.
func (s *sink) stats() SinkStats {
	st := SinkStats{Items: s.items.Load(), Bytes: s.bytes.Load(), Dropped: s.dropped.Load()}
	s.mu.Lock()
	if s.err != nil {
		st.Error = s.err.Error()
	}
	s.mu.Unlock()
	return st
}
