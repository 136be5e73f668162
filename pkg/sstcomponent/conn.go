package sstcomponent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Stream buffer sizes: each holds several whole structures, so pipelined requests are
// read and answered in batches.
const (
	readBufferSize  = 16 * protocol.RequestSize
	writeBufferSize = 16 * protocol.ResponseSize
)

// TruncatedError reports a stream that ended in the middle of a request.
type TruncatedError struct {
	Got int // bytes of the unfinished request received
}

// Error implements error.
func (e *TruncatedError) Error() string {
	return fmt.Sprintf("sstcomponent: stream ended %d bytes into a %d-byte request", e.Got, protocol.RequestSize)
}

// ConnError reports an I/O failure on a connection.
type ConnError struct {
	Op  string // "read", "flush" or "close"
	Err error
}

// Error implements error.
func (e *ConnError) Error() string { return "sstcomponent: connection " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the I/O error.
func (e *ConnError) Unwrap() error { return e.Err }

// conn is one stream being served, with its buffers and request/response structures
// reused for every request.
type conn struct {
	comp *Component
	rwc  io.ReadWriteCloser
	id   uint64
	br   *bufio.Reader
	aw   *answerWriter
	req  protocol.Request
	resp reply

	mu    sync.Mutex // guards stats; held while a request is handled
	stats Stats

	closing atomic.Bool   // shutdown or cancellation asked this connection to stop
	done    chan struct{} // closed once the connection has ended and been untracked
	direct  *Direct       // the Direct session this is, which has no stream (rwc nil)
}

func newConn(c *Component, rwc io.ReadWriteCloser, id uint64) *conn {
	if rwc == nil { // a Direct session
		return &conn{comp: c, id: id, done: make(chan struct{})}
	}
	return &conn{
		comp: c,
		rwc:  rwc,
		id:   id,
		br:   bufio.NewReaderSize(rwc, readBufferSize),
		aw:   newAnswerWriter(rwc, writeBufferSize),
		done: make(chan struct{}),
	}
}

// interrupt asks the connection to stop after answering what it has already received:
// a read deadline in the past wakes a blocked read without losing buffered requests.
func (cn *conn) interrupt() {
	if cn.direct != nil {
		_ = cn.direct.Close()
		return
	}
	cn.closing.Store(true)
	if d, ok := cn.rwc.(interface{ SetReadDeadline(time.Time) error }); ok {
		if d.SetReadDeadline(time.Unix(1, 0)) == nil {
			return
		}
	}
	_ = cn.rwc.Close()
}

// serve is the request loop: read a whole request, answer it, flush when no further whole
// request is buffered.
func (cn *conn) serve() (err error) {
	log := cn.comp.log.With().Uint64("conn", cn.id).Logger()
	if nc, ok := cn.rwc.(net.Conn); ok && nc.RemoteAddr() != nil {
		if remote := nc.RemoteAddr().String(); remote != "" && remote != "@" { // unnamed Unix peers say "@"
			log = log.With().Str("remote", remote).Logger()
		}
	}
	log.Info().Msg("client connected")
	defer func() {
		if cerr := cn.rwc.Close(); err == nil && cerr != nil && !cn.closing.Load() && !errors.Is(cerr, net.ErrClosed) {
			err = &ConnError{Op: "close", Err: cerr}
		}
		log.Info().Err(err).Msg("client disconnected")
	}()

	for {
		b, rerr := cn.br.Peek(protocol.RequestSize)
		if rerr != nil {
			return cn.endOfStream(len(b), rerr)
		}
		decodeRequest(&cn.req, b) // b is exactly RequestSize long
		_, _ = cn.br.Discard(protocol.RequestSize)

		cn.mu.Lock()
		cn.comp.handle(&cn.req, &cn.resp, &cn.stats, &log)
		cn.mu.Unlock()

		out, err := cn.aw.next()
		if err != nil {
			return &ConnError{Op: "flush", Err: err}
		}
		cn.resp.encode(out)
		cn.aw.commit()
		if cn.br.Buffered() < protocol.RequestSize || cn.comp.flushEach {
			if err := cn.aw.flush(); err != nil {
				return &ConnError{Op: "flush", Err: err}
			}
		}
	}
}

// endOfStream decides what a failed read means, given the bytes of an unfinished request
// already received. Every answer has been flushed by then: the loop flushes whenever no
// whole request is buffered.
func (cn *conn) endOfStream(partial int, err error) error {
	switch {
	case cn.closing.Load():
		if partial > 0 {
			cn.comp.log.Info().Uint64("conn", cn.id).Int("bytes", partial).Msg("shutdown dropped an unfinished request")
		}
		return nil
	case errors.Is(err, io.EOF) && partial == 0:
		return nil
	case errors.Is(err, io.EOF):
		cn.mu.Lock()
		cn.stats.Truncated++
		cn.mu.Unlock()
		terr := &TruncatedError{Got: partial}
		cn.comp.log.Warn().Uint64("conn", cn.id).Err(terr).Msg("truncated request")
		return terr
	default:
		return &ConnError{Op: "read", Err: err}
	}
}
