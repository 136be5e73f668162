package tcpfront

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
	"github.com/sstemu/sstemu/pkg/optrace"
)

// connState is where a connection's goroutine is; Shutdown closes only idle ones.
type connState uint8

const (
	stateIdle   connState = iota // waiting for the first byte of a frame
	stateActive                  // reading a frame, executing it or writing its answer
	stateClosed                  // closed by Shutdown
)

// conn is one client connection and the buffers it reuses from op to op.
type conn struct {
	s    *Server
	nc   net.Conn
	id   uint64
	rd   *connReader
	br   *bufio.Reader
	dec  *Decoder
	wbuf []byte
	jbuf []byte    // JSON of the timing trailer, or of a TIME or INFO answer
	out  []float32 // storage offered to the Executor for the next small op's result
	log  zerolog.Logger

	// The op's record and spans for the Recorder, kept here so that recording allocates
	// nothing per op (the Recorder keeps neither).
	recs  [1]optrace.Record
	spans optrace.Spans

	frame int64            // index of the current frame on this connection, for logs
	op    *deviceserver.Op // the op being executed, for logs

	mu    sync.Mutex
	state connState

	reserved int64 // bytes of the server's in-flight budget held by the current op

	writeDeadline time.Time // the write deadline last set (see armWriteDeadline)

	streamer deviceserver.GEMMStreamer // the Executor, if it computes GEMMs as B arrives
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	rd := &connReader{nc: nc, readTimeout: orDefault(s.ReadTimeout, DefaultReadTimeout)}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		if !s.DisableQuickAck {
			if rc, err := tc.SyscallConn(); err == nil {
				rd.raw = rc
				quickAck(rc)
			}
		}
	}
	br := bufio.NewReaderSize(rd, readBufferSize)
	c := &conn{
		s: s, nc: nc, id: id, rd: rd, br: br,
		dec: NewDecoder(br, s.maxOpBytes()),
		log: s.Logger.With().Uint64("conn", id).Str("remote", nc.RemoteAddr().String()).Logger(),
	}
	c.dec.admit = c.admit
	if gs, ok := s.Executor.(deviceserver.GEMMStreamer); ok && !s.DisableStreaming {
		c.streamer = gs
		c.dec.streamB = streamable
	}
	return c
}

// streamable tells which GEMMs are computed while B arrives: those for which linalg says
// it pays (B spans more than one K-block, and M is small enough that B's transfer is a
// real part of the op's time).
func streamable(op *deviceserver.Op) bool {
	g := op.GEMM
	return linalg.StreamPays(linalg.GEMMShape{M: g.M, N: g.N, K: g.K})
}

// streamBlocks is how many K-blocks of B a streamed GEMM holds at once: one being read
// while the other is being added, each at most linalg's block (≈ 1 MiB), less than the
// B the op's budget already counts.
const streamBlocks = 2

// executeStreamed reads a streamed GEMM's B block by block while the executor's stream
// adds the previous block on another goroutine; it returns the result, when the last
// byte of B arrived, and the error of whichever side failed (reading: a *FrameError).
func (c *conn) executeStreamed(req *Request) (*deviceserver.Result, time.Time, error) {
	ctx := c.s.baseCtx
	st, err := c.streamer.StartGEMM(ctx, req.Op)
	if err != nil {
		return nil, time.Time{}, err
	}
	g := req.Op.GEMM
	rows := st.BlockRows()
	full := make(chan []float32, streamBlocks)
	free := make(chan []float32, streamBlocks)
	for range streamBlocks {
		free <- make([]float32, rows*g.N)
	}
	added := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic adding B's rows: %v", p)
				for b := range full {
					free <- b
				}
			}
			added <- err
		}()
		for b := range full {
			if err == nil {
				err = st.Add(b)
			}
			free <- b
		}
	}()
	// If reading B panics (serve recovers it), the adder and the timing request still end.
	closed := false
	defer func() {
		if !closed {
			close(full)
			<-added
			st.Abort()
		}
	}()
	var rerr error
	for left := g.K; left > 0; {
		kb := min(rows, left)
		b := (<-free)[:kb*g.N]
		if rerr = c.dec.ReadB(b); rerr != nil {
			break
		}
		full <- b
		left -= kb
	}
	close(full)
	closed = true
	arrived := time.Now()
	aerr := <-added
	if rerr == nil {
		rerr = aerr
	}
	if rerr != nil {
		st.Abort()
		return nil, arrived, rerr
	}
	res, err := st.Finish()
	return res, arrived, err
}

// admit reserves an op's memory in the server-wide budget before its tensors are read,
// waiting for other ops to finish if need be; serveOne releases it once the answer is out.
func (c *conn) admit(bytes int64) *FrameError {
	if bytes > c.s.memLimit {
		return &FrameError{Kind: KindLimit, Field: "op", Reason: "op needs " + strconv.FormatInt(bytes, 10) +
			" bytes, more than the server's in-flight limit of " + strconv.FormatInt(c.s.memLimit, 10)}
	}
	if err := c.s.memory.Acquire(c.s.baseCtx, bytes); err != nil {
		return &FrameError{Kind: KindRead, Field: "op", Reason: "server closing", Err: err}
	}
	c.reserved = bytes
	return nil
}

// connReader is the connection as the bufio.Reader sees it: inside a frame every read
// must make progress within the read timeout, and before it the quick-ACK option is
// re-armed (see quickAck).
type connReader struct {
	nc          net.Conn
	raw         syscall.RawConn // nil: no quick ACKs
	readTimeout time.Duration
	inFrame     bool
	deadlineSet bool // a read deadline is set on nc
}

// setDeadline sets nc's read deadline to d, or clears it for a zero d; clearing one that
// is not set costs nothing.
func (r *connReader) setDeadline(d time.Time) {
	if d.IsZero() && !r.deadlineSet {
		return
	}
	_ = r.nc.SetReadDeadline(d)
	r.deadlineSet = !d.IsZero()
}

// Read reads from the connection. Inside a frame it first re-arms quick ACKs, which also
// sends the ACK still pending for what has arrived so far: a client sending the frame in
// pieces with Nagle on waits for exactly that ACK before its next piece. The read of a
// frame's first bytes does without (one setsockopt fewer per op): a client that wrote the
// frame in one go has nothing to wait for, and one that did not is answered by the next
// read, which is inside the frame.
func (r *connReader) Read(p []byte) (int, error) {
	if r.inFrame {
		if r.readTimeout > 0 {
			r.setDeadline(time.Now().Add(r.readTimeout))
		}
		if r.raw != nil {
			quickAck(r.raw)
		}
	}
	return r.nc.Read(p)
}

// setState moves the connection to idle or active unless Shutdown has begun, in which case
// it reports false and the goroutine must end. The check and the move are atomic with
// respect to closeIfIdle, so an op is either drained or never started.
func (c *conn) setState(st connState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed || c.s.inShutdown.Load() {
		return false
	}
	c.state = st
	return true
}

// closeIfIdle closes the connection if it is waiting for a frame.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateIdle {
		c.state = stateClosed
		_ = c.nc.Close()
	}
}

// serve runs the connection's op loop until the client leaves, a request is bad, or the
// server shuts down.
func (c *conn) serve() {
	defer func() {
		if p := recover(); p != nil {
			fe := &FrameError{Kind: KindExecutor, Field: "execute", Reason: fmt.Sprintf("panic: %v", p), stack: debug.Stack()}
			if c.op != nil {
				fe.OpID, fe.HasOpID = c.op.ID, true
			}
			c.fail(fe, zerolog.ErrorLevel)
		}
		_ = c.nc.Close()
		c.s.removeConn(c)
		c.log.Debug().Msg("connection closed")
	}()
	c.log.Debug().Msg("connection opened")
	idle := c.s.IdleTimeout
	for frame := int64(0); ; frame++ {
		if !c.setState(stateIdle) {
			return
		}
		c.rd.inFrame = false
		var deadline time.Time // none, unless IdleTimeout: a frame's is not the wait for the next
		if idle > 0 {
			deadline = time.Now().Add(idle)
		}
		c.rd.setDeadline(deadline)
		if _, err := c.br.Peek(1); err != nil {
			c.log.Debug().Err(err).Int64("frames", frame).Msg("connection idle end")
			return
		}
		if !c.setState(stateActive) {
			return
		}
		c.rd.inFrame = true
		c.frame = frame
		if !c.serveOne() {
			return
		}
	}
}

// serveOne decodes, executes and answers one frame; false means the connection must close.
func (c *conn) serveOne() bool {
	s := c.s
	defer func() {
		if c.reserved > 0 {
			s.memory.Release(c.reserved)
			c.reserved = 0
		}
	}()
	start := time.Now()
	req, err := c.dec.Decode()
	if err != nil {
		var fe *FrameError
		if !errors.As(err, &fe) {
			fe = &FrameError{Kind: KindRead, Field: "frame", Reason: "read failed", Err: err}
		}
		c.fail(fe, zerolog.WarnLevel)
		return false
	}
	decode := time.Since(start)
	s.counters.inFlight.Add(1)
	defer s.counters.inFlight.Add(-1)
	switch req.Type {
	case OpTime:
		s.counters.bytesIn.Add(uint64(req.Size))
		return c.serveTime(req, start, decode)
	case OpInfo:
		s.counters.bytesIn.Add(uint64(req.Size))
		return c.serveInfo(req, start, decode)
	}
	op := req.Op
	c.op = op // not cleared by a defer: serve's recover needs it during a panic
	var res *deviceserver.Result
	if req.StreamB {
		var arrived time.Time
		res, arrived, err = c.executeStreamed(req)
		req.Size = c.dec.pos
		var fe *FrameError
		if errors.As(err, &fe) {
			c.fail(fe, zerolog.WarnLevel)
			return false
		}
		if err == nil {
			decode = arrived.Sub(start)
		}
	} else {
		if req.OutElems <= keptOutElems {
			if int64(cap(c.out)) < req.OutElems {
				c.out = make([]float32, req.OutElems)
			}
			op.Out = c.out
		}
		res, err = s.Executor.Execute(s.baseCtx, op)
	}
	s.counters.bytesIn.Add(uint64(req.Size))
	if err == nil {
		err = checkResult(res, req)
	}
	if err != nil {
		c.fail(&FrameError{Kind: KindExecutor, Field: "execute", Offset: req.Size, Reason: "executor failed",
			OpID: op.ID, HasOpID: true, FrameSize: req.Size, Err: err}, zerolog.ErrorLevel)
		return false
	}
	c.op = nil
	// The op's end, and the start of its answer's write: from start and the monotonic
	// clock alone, which costs half of what time.Now does.
	now := start.Add(time.Since(start))
	rec := s.opRecord(op, res, workOf(opBatches(op)), decode, now.Sub(start))
	var trailer []byte
	if req.Timing {
		trailer = rec.AppendJSON(c.jbuf[:0])
		if cap(trailer) <= maxKeptJSON {
			c.jbuf = trailer
		}
	}
	// Counted before the write so that a client holding its answer sees it in Stats.
	s.counters.opsByType[op.Type].Add(1)
	out := LengthPrefixSize + float32Size*len(res.Data)
	if req.Timing {
		out += LengthPrefixSize + len(trailer)
		s.counters.trailers.Add(1)
	}
	s.counters.bytesOut.Add(uint64(out))
	if err := c.writeResponse(res.Data, trailer, now); err != nil {
		c.fail(&FrameError{Kind: KindWrite, Field: "response", Reason: "writing the response failed",
			OpID: op.ID, HasOpID: true, FrameSize: req.Size, Err: err}, zerolog.WarnLevel)
		return false
	}
	if s.Recorder.Enabled() {
		c.recs[0] = rec
		c.spans = optrace.Spans{Conn: c.id, Frame: c.frame, Name: rec.Op, Start: start,
			Decode: decode, Compute: res.ComputeTime, Timing: res.TimingTime, Total: rec.ServerUS.Total,
			HasCompute: true, HasTiming: true}
		s.Recorder.Add(c.recs[:], &c.spans)
	}
	if e := c.log.Debug(); e.Enabled() {
		t := res.Timing
		e.Int64("op_id", op.ID).Str("op", opName(op.Type)).Ints("shape", req.OutShape).
			Bool("timed", t.Timed).Uint64("cycles", t.Cycles).Dur("took_ms", time.Since(start)).Msg("op done")
	}
	return true
}

// maxKeptJSON is the largest JSON buffer a connection keeps for its next answer.
const maxKeptJSON = 64 << 10

// recordSizeHint is about the size of one timing record's JSON (500 bytes with the longest
// preset name and 20-digit counts), for sizing a TIME answer's buffer up front.
const recordSizeHint = 512

// serveTime times a TIME frame's entries and answers u32 BE T | {"op_id", "results"}.
func (c *conn) serveTime(req *Request, start time.Time, decode time.Duration) bool {
	s := c.s
	f := req.Time
	recs, timing := s.timeFrame(s.baseCtx, f, decode, start)
	buf := c.jbuf[:0]
	if need := len(recs) * recordSizeHint; cap(buf) < need {
		buf = make([]byte, 0, need) // one allocation, not a doubling series of copies
	}
	js := appendTimeResponse(buf, f.OpID, recs)
	if cap(js) <= maxKeptJSON {
		c.jbuf = js
	}
	s.counters.opsByType[OpTime].Add(1)
	s.counters.timeEntries.Add(uint64(len(recs)))
	s.counters.bytesOut.Add(uint64(LengthPrefixSize + len(js)))
	if err := c.writeJSONFrame(js); err != nil {
		c.fail(&FrameError{Kind: KindWrite, Field: "response", Reason: "writing the response failed",
			OpID: f.OpID, HasOpID: true, FrameSize: req.Size, Err: err}, zerolog.WarnLevel)
		return false
	}
	if s.Recorder.Enabled() {
		total := time.Duration(0)
		if len(recs) > 0 {
			total = recs[0].ServerUS.Total
		}
		s.Recorder.Add(recs, &optrace.Spans{Conn: c.id, Frame: c.frame, Name: "time", Start: start,
			Decode: decode, Timing: timing, Total: total, HasTiming: true})
	}
	c.log.Debug().Int64("op_id", f.OpID).Int("entries", len(recs)).Dur("took_ms", time.Since(start)).Msg("time done")
	return true
}

// serveInfo answers an INFO frame: u32 BE T | the server's description.
func (c *conn) serveInfo(req *Request, start time.Time, decode time.Duration) bool {
	s := c.s
	js := s.appendInfo(c.jbuf[:0], req.InfoOpID)
	c.jbuf = js
	s.counters.opsByType[OpInfo].Add(1)
	s.counters.bytesOut.Add(uint64(LengthPrefixSize + len(js)))
	if err := c.writeJSONFrame(js); err != nil {
		c.fail(&FrameError{Kind: KindWrite, Field: "response", Reason: "writing the response failed",
			OpID: req.InfoOpID, HasOpID: true, FrameSize: req.Size, Err: err}, zerolog.WarnLevel)
		return false
	}
	if s.Recorder.Enabled() && s.Recorder.Trace != nil {
		s.Recorder.Trace.Add(nil, &optrace.Spans{Conn: c.id, Frame: c.frame, Name: "info", Start: start,
			Decode: decode, Total: time.Since(start)})
	}
	return true
}

// checkResult verifies that the executor's result has as many elements as the op's
// output shape (which also keeps it within the response's u32 length).
func checkResult(res *deviceserver.Result, req *Request) error {
	if res == nil {
		return errors.New("no result")
	}
	if int64(len(res.Data)) != req.OutElems {
		return fmt.Errorf("result has %d elements, the output shape %v has %d", len(res.Data), req.OutShape, req.OutElems)
	}
	return nil
}

// armWriteDeadline sets the write deadline of an answer whose write starts now to now +
// WriteTimeout, unless the one set before has more than ¾ of WriteTimeout still to run:
// setting a deadline updates a runtime timer (≈ 100 ns here, more than time.Now; see
// golang/go#15133, and fasthttp, which re-arms its deadlines the same way), and a stream
// of small answers would pay it for every op. A write is so given at least ¾ of
// WriteTimeout and at most all of it.
func (c *conn) armWriteDeadline(now time.Time) {
	wt := orDefault(c.s.WriteTimeout, DefaultWriteTimeout)
	if wt <= 0 || c.writeDeadline.Sub(now) > wt-wt/4 {
		return
	}
	c.writeDeadline = now.Add(wt)
	_ = c.nc.SetWriteDeadline(c.writeDeadline)
}

// writeResponse sends the u32 big-endian byte length and the little-endian float32 data,
// then, if trailer is not nil, the timing trailer u32 BE len(trailer) | trailer, in one
// write (one writev for results above writeCopyMax), so that with TCP_NODELAY the answer
// leaves in as few segments as possible. now is when the write starts.
func (c *conn) writeResponse(data []float32, trailer []byte, now time.Time) error {
	c.armWriteDeadline(now)
	size := len(data) * float32Size
	if size <= writeCopyMax || !hostLittleEndian {
		buf := binary.BigEndian.AppendUint32(c.wbuf[:0], uint32(size))
		buf = appendFloat32s(buf, data)
		if trailer != nil {
			buf = binary.BigEndian.AppendUint32(buf, uint32(len(trailer)))
			buf = append(buf, trailer...)
		}
		if cap(buf) <= writeCopyMax+2*LengthPrefixSize+maxKeptJSON {
			c.wbuf = buf
		}
		_, err := c.nc.Write(buf)
		return err
	}
	var hdr [2 * LengthPrefixSize]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(size))
	bufs := net.Buffers{hdr[:LengthPrefixSize], float32Bytes(data)}
	if trailer != nil {
		binary.BigEndian.PutUint32(hdr[LengthPrefixSize:], uint32(len(trailer)))
		bufs = append(bufs, hdr[LengthPrefixSize:], trailer)
	}
	_, err := bufs.WriteTo(c.nc)
	return err
}

// fail counts and logs the one line that explains why the connection closes.
func (c *conn) fail(fe *FrameError, level zerolog.Level) {
	c.s.counters.errors[fe.Kind].Add(1)
	if c.s.hardClosed.Load() {
		return
	}
	e := c.log.WithLevel(level).Str("kind", fe.Kind.String()).Str("field", fe.Field).Int64("offset", fe.Offset)
	if fe.HasOpID {
		e = e.Int64("op_id", fe.OpID)
	}
	e = e.Int64("frame", c.frame)
	msg := "bad request, closing connection"
	switch fe.Kind {
	case KindExecutor:
		msg = "op failed, closing connection"
	case KindWrite:
		msg = "answer not delivered, closing connection"
	case KindTimeout:
		msg = "client stalled inside a frame, closing connection"
	}
	if fe.stack != nil {
		e = e.Str("stack", string(fe.stack))
	}
	e.Str("reason", fe.Reason).AnErr("error", fe.Err).Msg(msg)
}
