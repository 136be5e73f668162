package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Client buffer sizes.
const (
	// readBufferSize lets a small response arrive in one read syscall.
	readBufferSize = 64 << 10
	// copyMax: a one-write frame up to this size is copied into one buffer and written;
	// a larger one is written with one writev of views of the tensors (no copy).
	copyMax = 64 << 10
	// portableChunk is the scratch size for encoding or decoding tensors on big-endian hosts.
	portableChunk = 32 << 10
)

// aLongTimeAgo is a deadline in the past, which interrupts blocked I/O at once.
var aLongTimeAgo = time.Unix(1, 0)

// ClientOptions choose how a Client sends its requests.
type ClientOptions struct {
	// Pieces sends every op as the reference PyTorch client does: five writes (header and
	// JSON, length of A, A, length of B, B) with Nagle's algorithm on (no TCP_NODELAY).
	// Otherwise the whole frame goes out in one write with TCP_NODELAY on.
	Pieces bool
	// Timeout bounds each op, from its first write to the last byte of its answer; an op
	// that takes longer fails with ErrTimeout. 0: no bound besides the op's context.
	Timeout time.Duration
	// Timing asks for the op's timing record ("timing": true) and reads the trailer after
	// the result (docs/wire.md); Client.LastTiming returns it.
	Timing bool
}

// Client is one DeviceGEMM connection issuing one op at a time. It is not safe for
// concurrent use. After any failed op (other than bad arguments or a context that was
// already done) the connection is closed and every later op fails with ErrUnusable.
type Client struct {
	addr    string
	conn    *net.TCPConn
	br      *bufio.Reader
	pieces  bool
	timing  bool
	timeout time.Duration
	nextID  int64

	buf       []byte        // header, JSON and (one-write, small) tensors
	lens      [8]byte       // the two tensor length prefixes, for pieces and writev
	iov       [4][]byte     // writev of a large one-write frame
	scratch   []byte        // the response length; tensors on big-endian hosts
	interrupt chan struct{} // the context watcher has finished interrupting
	err       error         // sticky failure
	record    []byte        // the last op's timing record (Timing only)
}

// Dial connects to a DeviceGEMM server at addr.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", addr, err)
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close()
		return nil, fmt.Errorf("loadgen: dial %s: not a TCP connection (%T)", addr, nc)
	}
	if err := tc.SetNoDelay(!opts.Pieces); err != nil {
		_ = tc.Close()
		return nil, fmt.Errorf("loadgen: dial %s: setting TCP_NODELAY: %w", addr, err)
	}
	return &Client{
		addr: addr, conn: tc, pieces: opts.Pieces, timing: opts.Timing, timeout: opts.Timeout,
		br:        bufio.NewReaderSize(tc, readBufferSize),
		interrupt: make(chan struct{}, 1),
	}, nil
}

// Close closes the connection. Later ops fail with ErrClientClosed.
func (c *Client) Close() error {
	if errors.Is(c.err, ErrClientClosed) {
		return nil
	}
	failed := c.err != nil // the failure already closed the connection
	c.err = ErrClientClosed
	if err := c.conn.Close(); err != nil && !failed {
		return fmt.Errorf("loadgen: closing the connection to %s: %w", c.addr, err)
	}
	return nil
}

// GEMM sends C[m,n] = A[m,k]·B[k,n] (row-major float32) to the server and reads the result
// into out, which must hold exactly m·n elements and is overwritten. ctx bounds the op: its
// deadline (or the client's Timeout, if sooner) becomes the connection's, and cancelling it
// interrupts the op (which then leaves the client unusable). Every failure is an *OpError.
func (c *Client) GEMM(ctx context.Context, m, n, k int, a, b, out []float32) error {
	id := c.nextID
	c.nextID++
	fail := func(e *OpError) error {
		e.Addr, e.OpID, e.M, e.N, e.K = c.addr, id, m, n, k
		return e
	}
	if detail := checkArgs(m, n, k, len(a), len(b), len(out)); detail != "" {
		return fail(&OpError{Phase: PhaseArgs, Err: ErrBadArgs, Detail: detail})
	}
	if c.err != nil {
		if errors.Is(c.err, ErrClientClosed) {
			return fail(&OpError{Phase: PhaseStart, Err: ErrClientClosed})
		}
		return fail(&OpError{Phase: PhaseStart, Err: ErrUnusable, Detail: c.err.Error()})
	}
	if err := ctx.Err(); err != nil {
		return fail(&OpError{Phase: PhaseStart, Err: err})
	}
	deadline, hasDeadline := ctx.Deadline()
	connDeadline, opDeadline := deadline, time.Time{}
	if c.timeout > 0 {
		opDeadline = time.Now().Add(c.timeout)
		if !hasDeadline || opDeadline.Before(deadline) {
			connDeadline = opDeadline
		}
	}
	_ = c.conn.SetDeadline(connDeadline)
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			_ = c.conn.SetDeadline(aLongTimeAgo)
			c.interrupt <- struct{}{}
		})
		defer func() {
			if !stop() {
				<-c.interrupt // let it finish before the next op sets its own deadline
			}
		}()
	}
	var oe *OpError
	if err := c.send(m, n, k, id, a, b); err != nil {
		oe = &OpError{Phase: PhaseSend, Err: err}
	} else {
		oe = readResponse(c.br, out, &c.scratch)
		if oe == nil && c.timing {
			c.record, oe = readTiming(c.br, c.record)
		}
	}
	if oe == nil {
		return nil
	}
	cerr := ctx.Err()
	if cerr == nil && hasDeadline && !time.Now().Before(deadline) {
		cerr = context.DeadlineExceeded // the connection's deadline fired before ctx's timer
	}
	switch {
	case cerr != nil:
		oe.Detail = joinDetail(oe.Detail, oe.Err.Error())
		oe.Err = cerr
	case !opDeadline.IsZero() && errors.Is(oe.Err, os.ErrDeadlineExceeded):
		oe.Detail = joinDetail(oe.Detail, "timeout "+c.timeout.String())
		oe.Err = ErrTimeout
	}
	c.err = fail(oe)
	_ = c.conn.Close()
	return c.err
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// checkArgs returns what is wrong with a GEMM call's sizes, or "".
func checkArgs(m, n, k, lenA, lenB, lenC int) string {
	if m < 1 || n < 1 || k < 1 {
		return fmt.Sprintf("M, N and K must be at least 1, got %d, %d, %d", m, n, k)
	}
	for _, t := range []struct {
		name       string
		rows, cols int
		got        int
	}{{"A", m, k, lenA}, {"B", k, n, lenB}, {"C", m, n, lenC}} {
		if t.rows > maxTensorBytes/Float32Size/t.cols {
			return fmt.Sprintf("%s is %d×%d: more than a u32 length prefix can announce", t.name, t.rows, t.cols)
		}
		if t.got != t.rows*t.cols {
			return fmt.Sprintf("len(%s) = %d, want %d×%d = %d", t.name, t.got, t.rows, t.cols, t.rows*t.cols)
		}
	}
	return ""
}

// send writes one request frame.
func (c *Client) send(m, n, k int, id int64, a, b []float32) error {
	c.buf = appendHeader(c.buf[:0], id, m, n, k, c.timing)
	binary.BigEndian.PutUint32(c.lens[0:4], uint32(len(a)*Float32Size))
	binary.BigEndian.PutUint32(c.lens[4:8], uint32(len(b)*Float32Size))
	if c.pieces {
		if _, err := c.conn.Write(c.buf); err != nil {
			return err
		}
		if _, err := c.conn.Write(c.lens[0:4]); err != nil {
			return err
		}
		if err := c.writeTensor(a); err != nil {
			return err
		}
		if _, err := c.conn.Write(c.lens[4:8]); err != nil {
			return err
		}
		return c.writeTensor(b)
	}
	size := len(c.buf) + 2*LengthPrefixSize + (len(a)+len(b))*Float32Size
	if hostLittleEndian && size > copyMax {
		c.buf = append(c.buf, c.lens[0:4]...)
		c.iov = [4][]byte{c.buf, float32Bytes(a), c.lens[4:8], float32Bytes(b)}
		bufs := net.Buffers(c.iov[:])
		_, err := bufs.WriteTo(c.conn)
		c.iov = [4][]byte{}
		return err
	}
	c.buf = append(c.buf, c.lens[0:4]...)
	c.buf = appendFloat32s(c.buf, a)
	c.buf = append(c.buf, c.lens[4:8]...)
	c.buf = appendFloat32s(c.buf, b)
	_, err := c.conn.Write(c.buf)
	if cap(c.buf) > copyMax {
		c.buf = nil // a big-endian host's large frame: do not keep it
	}
	return err
}

// writeTensor writes t as little-endian float32s in one write (a view on little-endian
// hosts; chunks of portableChunk bytes otherwise).
func (c *Client) writeTensor(t []float32) error {
	if hostLittleEndian {
		_, err := c.conn.Write(float32Bytes(t))
		return err
	}
	for len(t) > 0 {
		chunk := min(len(t), portableChunk/Float32Size)
		c.scratch = appendFloat32s(c.scratch[:0], t[:chunk])
		if _, err := c.conn.Write(c.scratch); err != nil {
			return err
		}
		t = t[chunk:]
	}
	return nil
}

// readResponse reads one response into out, which holds the M·N elements expected, using
// scratch as its buffer. It returns nil, or an *OpError with Phase, Err and Detail set.
func readResponse(r io.Reader, out []float32, scratch *[]byte) *OpError {
	if cap(*scratch) < LengthPrefixSize {
		*scratch = make([]byte, LengthPrefixSize)
	}
	pre := (*scratch)[:LengthPrefixSize] // not a local array: it would escape to the heap
	if got, err := io.ReadFull(r, pre); err != nil {
		return readErr(PhaseLength, got, LengthPrefixSize, err)
	}
	announced := binary.BigEndian.Uint32(pre)
	want := uint64(len(out)) * Float32Size
	if uint64(announced) != want {
		return &OpError{Phase: PhaseLength, Err: ErrBadLength,
			Detail: fmt.Sprintf("server announced %d bytes, want M·N·4 = %d", announced, want)}
	}
	if got, err := readFloat32s(r, out, scratch); err != nil {
		return readErr(PhaseResult, got, int(want), err)
	}
	return nil
}

// LastTiming returns the timing record of the last successful op (ClientOptions.Timing),
// valid until the next op.
func (c *Client) LastTiming() []byte { return c.record }

// readTiming reads the trailer u32 BE T | T bytes of JSON into buf.
func readTiming(r io.Reader, buf []byte) ([]byte, *OpError) {
	var pre [LengthPrefixSize]byte
	if got, err := io.ReadFull(r, pre[:]); err != nil {
		return buf, readErr(PhaseTiming, got, LengthPrefixSize, err)
	}
	t := binary.BigEndian.Uint32(pre[:])
	if t < 2 || t > MaxTimingBytes {
		return buf, &OpError{Phase: PhaseTiming, Err: ErrBadTiming,
			Detail: fmt.Sprintf("server announced %d bytes, want 2 … %d", t, MaxTimingBytes)}
	}
	if cap(buf) < int(t) {
		buf = make([]byte, t)
	}
	buf = buf[:t]
	if got, err := io.ReadFull(r, buf); err != nil {
		return buf, readErr(PhaseTiming, got, int(t), err)
	}
	if buf[0] != '{' || buf[t-1] != '}' {
		return buf, &OpError{Phase: PhaseTiming, Err: ErrBadTiming, Detail: "not a JSON object"}
	}
	return buf, nil
}

// readFloat32s fills dst with little-endian float32s read from r and returns how many bytes
// it read: straight into dst's storage on little-endian hosts, through scratch otherwise.
func readFloat32s(r io.Reader, dst []float32, scratch *[]byte) (int, error) {
	if hostLittleEndian {
		return io.ReadFull(r, float32Bytes(dst))
	}
	if cap(*scratch) < portableChunk {
		*scratch = make([]byte, portableChunk)
	}
	done := 0
	for len(dst) > 0 {
		chunk := min(len(dst), portableChunk/Float32Size)
		buf := (*scratch)[:chunk*Float32Size]
		got, err := io.ReadFull(r, buf)
		done += got
		if err != nil {
			return done, err
		}
		decodeFloat32s(dst[:chunk], buf)
		dst = dst[chunk:]
	}
	return done, nil
}

// readErr classifies a failed read of want bytes of which got arrived.
func readErr(phase Phase, got, want int, err error) *OpError {
	detail := fmt.Sprintf("got %d of %d bytes", got, want)
	switch {
	case errors.Is(err, io.EOF) && got == 0 && phase == PhaseLength:
		return &OpError{Phase: phase, Err: ErrNoAnswer}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &OpError{Phase: phase, Err: ErrTruncated, Detail: detail}
	}
	return &OpError{Phase: phase, Err: err, Detail: detail}
}
