package tcpfront

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/sstemu/sstemu/pkg/deviceserver"
)

// Frame layout of a request (docs/wire.md).
const (
	// Magic opens every request frame, big-endian on the wire.
	Magic uint32 = 0xDEADBEEF
	// HeaderSize is magic (4) + JSON length (4) + op type (1).
	HeaderSize = 9
	// LengthPrefixSize is the size of a tensor's (and the response's) u32 length prefix.
	LengthPrefixSize = 4

	offJSONLength = 4
	offOpType     = 8
)

// Buffer reuse by a Decoder: tensors up to retainElems elements keep their storage for the
// next frame; larger tensors are allocated in steps of growElems (doubling) as their bytes
// arrive, so that a client must send the bytes it announces before the server commits
// memory to them.
const (
	retainElems = 4 << 20 // 16 MiB per tensor slot
	growElems   = 1 << 20 // 4 MiB first step
)

// Request is one decoded frame: an op with its tensors (GEMM, CONV, MATMUL), or a TIME or
// INFO frame. A Request, and the Op it points to, belong to the Decoder and are valid
// until its next call to Decode, which reuses their storage.
type Request struct {
	// Type is the frame's op type.
	Type deviceserver.OpType
	// Op is the operator with its tensors; nil for TIME and INFO. The tensors' storage
	// belongs to the Decoder and is valid until its next call to Decode.
	Op *deviceserver.Op
	// Timing tells whether the client asked for the op's timing record ("timing": true).
	Timing bool
	// Time is the decoded TIME frame; nil for other types.
	Time *TimeFrame
	// InfoOpID is an INFO frame's op_id.
	InfoOpID int64
	// OutShape is the shape of the result the op must produce (torch's rules).
	OutShape []int
	// OutElems is the element count of OutShape (1 for a 0-d result).
	OutElems int64
	// Size is the frame's length in bytes (so far, if StreamB).
	Size int64
	// StreamB tells that the GEMM's B is still unread (Op.GEMM.B is nil): the caller must
	// read all K·N of its elements with the Decoder's ReadB before the next Decode.
	StreamB bool
}

// Decoder reads DeviceGEMM request frames from a byte stream. It validates every length
// and shape before allocating for it; see docs/wire.md for the limits. A Decoder is not
// safe for concurrent use.
type Decoder struct {
	r          io.Reader
	maxOpBytes int64
	json       []byte
	bufs       [2][]float32
	scratch    []byte
	pos        int64 // bytes consumed in the current frame
	// Storage reused from frame to frame, so that a small op's frame costs no allocation:
	// the header, a length prefix, the op's plan and the Request returned.
	hdr  [HeaderSize]byte
	pre  [LengthPrefixSize]byte
	plan plan
	req  Request
	// admit, if set, is asked for an op's memory (inputs, output, workspace) once its JSON
	// is checked and before any tensor is read; an error rejects the frame.
	admit func(bytes int64) *FrameError
	// streamB, if set, is asked about every op once A is read: true leaves B unread
	// (Request.StreamB), for the caller to read with ReadB while it computes.
	streamB func(op *deviceserver.Op) bool
	bLeft   int64 // elements of a streamed B still unread
	bOpID   int64 // the op whose B they are, for errors
}

// NewDecoder returns a Decoder reading from r that rejects ops whose inputs and output
// together exceed maxOpBytes (DefaultMaxOpBytes if ≤ 0). Wrap r in a bufio.Reader if it
// is a network connection.
func NewDecoder(r io.Reader, maxOpBytes int64) *Decoder {
	if maxOpBytes <= 0 {
		maxOpBytes = DefaultMaxOpBytes
	}
	return &Decoder{r: r, maxOpBytes: maxOpBytes}
}

// Decode reads the next frame. It returns io.EOF if the stream ends cleanly before the
// first byte of a frame, and a *FrameError for anything else that goes wrong, after which
// the stream is out of step and must be abandoned.
func (d *Decoder) Decode() (*Request, error) {
	if d.bLeft > 0 {
		return nil, &FrameError{Kind: KindRead, Field: namesAB[1].data, Offset: d.pos, FrameSize: d.pos, OpID: d.bOpID, HasOpID: true,
			Reason: "Decode called with " + strconv.FormatInt(d.bLeft, 10) + " elements of a streamed B unread"}
	}
	d.pos = 0
	hdr := d.hdr[:]
	if err := d.readMagic(hdr[:4]); err != nil {
		return nil, err
	}
	if err := d.readFull(hdr[offJSONLength:offOpType], "json_length"); err != nil {
		return nil, err
	}
	jsonLen := binary.BigEndian.Uint32(hdr[offJSONLength:])
	// The op type follows the length; its JSON limit depends on it, so it is read first
	// (one byte more), and both are checked before any JSON is read.
	if err := d.readFull(hdr[offOpType:], "op_type"); err != nil {
		return nil, err
	}
	t := deviceserver.OpType(hdr[offOpType])
	limit := uint32(MaxJSONBytes)
	if t == OpTime {
		limit = MaxTimeJSONBytes
	}
	if jsonLen > limit {
		return nil, d.errAt(offJSONLength, &FrameError{Kind: KindLimit, Field: "json_length",
			Reason: "JSON length " + strconv.FormatUint(uint64(jsonLen), 10) + " exceeds " + strconv.FormatUint(uint64(limit), 10)})
	}
	switch t {
	case deviceserver.OpGEMM, deviceserver.OpConv, deviceserver.OpMatmul, OpTime, OpInfo:
	default:
		return nil, d.errAt(offOpType, &FrameError{Kind: KindOpType, Field: "op_type",
			Reason: "unknown op type 0x" + strconv.FormatUint(uint64(t), 16)})
	}
	if t == OpTime && d.admit != nil {
		// A TIME frame's JSON may be 16 times an op's: charge it (and its decoded
		// entries, as large again at most) to the in-flight budget before reading it.
		if fe := d.admit(2 * int64(jsonLen)); fe != nil {
			return nil, d.errAt(HeaderSize, fe)
		}
	}
	if cap(d.json) < int(jsonLen) {
		d.json = make([]byte, jsonLen)
	}
	js := d.json[:jsonLen]
	if cap(d.json) > MaxJSONBytes {
		d.json = nil // a TIME frame's buffer is not kept for the next frame
	}
	if err := d.readFull(js, "json"); err != nil {
		return nil, err
	}
	switch t {
	case OpTime, OpInfo:
		return d.decodeNoTensors(t, js)
	}
	p := &d.plan
	if fe := parseJSON(t, js, d.maxOpBytes, p); fe != nil {
		return nil, d.errAt(HeaderSize+fe.Offset, fe)
	}
	if d.admit != nil {
		if fe := d.admit(p.bytes); fe != nil {
			fe.OpID, fe.HasOpID = p.op.ID, true
			return nil, d.errAt(HeaderSize+int64(jsonLen), fe)
		}
	}
	var tensors [2][]float32
	for i := range tensors {
		if i == 1 && t == deviceserver.OpGEMM && d.streamB != nil && d.streamB(&p.op) {
			if err := d.readPrefix(i, p); err != nil {
				var fe *FrameError
				if errors.As(err, &fe) {
					fe.OpID, fe.HasOpID = p.op.ID, true
				}
				return nil, err
			}
			d.bLeft, d.bOpID = p.inputs[1], p.op.ID
			p.op.GEMM.A = tensors[0]
			d.req = Request{Type: t, Op: &p.op, Timing: p.timing, OutShape: p.outShape, OutElems: p.outElems, Size: d.pos, StreamB: true}
			return &d.req, nil
		}
		data, err := d.readTensor(i, p)
		if err != nil {
			var fe *FrameError
			if errors.As(err, &fe) {
				fe.OpID, fe.HasOpID = p.op.ID, true
			}
			return nil, err
		}
		tensors[i] = data
	}
	op := &p.op
	switch t {
	case deviceserver.OpGEMM:
		op.GEMM.A, op.GEMM.B = tensors[0], tensors[1]
	case deviceserver.OpMatmul:
		op.Matmul.A, op.Matmul.B = tensors[0], tensors[1]
	case deviceserver.OpConv:
		op.Conv.Input, op.Conv.Weight = tensors[0], tensors[1]
	}
	d.req = Request{Type: t, Op: op, Timing: p.timing, OutShape: p.outShape, OutElems: p.outElems, Size: d.pos}
	return &d.req, nil
}

// decodeNoTensors finishes a TIME or INFO frame, whose JSON js is the whole frame after
// the header.
func (d *Decoder) decodeNoTensors(t deviceserver.OpType, js []byte) (*Request, error) {
	if !utf8.Valid(js) {
		return nil, d.errAt(HeaderSize+int64(invalidUTF8At(js)), &FrameError{Kind: KindJSON, Field: "json", Reason: "JSON is not valid UTF-8"})
	}
	d.req = Request{Type: t}
	req := &d.req
	var fe *FrameError
	if t == OpTime {
		req.Time, fe = parseTime(js)
	} else {
		req.InfoOpID, fe = parseInfo(js)
	}
	if fe != nil {
		return nil, d.errAt(HeaderSize+fe.Offset, fe)
	}
	req.Size = d.pos
	return req, nil
}

// readMagic reads the four magic bytes, rejecting the frame at the first wrong byte
// rather than waiting for all four.
func (d *Decoder) readMagic(b []byte) error {
	var want [4]byte
	binary.BigEndian.PutUint32(want[:], Magic)
	got := 0
	for got < len(b) {
		n, err := d.r.Read(b[got:])
		for i := got; i < got+n; i++ {
			if b[i] != want[i] {
				d.pos = int64(i)
				return d.errAt(int64(i), &FrameError{Kind: KindMagic, Field: "magic",
					Reason: "bad magic 0x" + strconv.FormatUint(uint64(binary.BigEndian.Uint32(pad4(b[:i+1]))), 16) + " (want 0xdeadbeef)"})
			}
		}
		got += n
		d.pos = int64(got)
		if err != nil {
			if got == 0 && errors.Is(err, io.EOF) {
				return io.EOF
			}
			if got == len(b) {
				break
			}
			return d.ioErr("magic", err)
		}
	}
	return nil
}

// pad4 returns b zero-padded to four bytes, for printing a partial magic.
func pad4(b []byte) []byte {
	var out [4]byte
	copy(out[:], b)
	return out[:]
}

// readFull reads len(b) bytes of field.
func (d *Decoder) readFull(b []byte, field string) error {
	n, err := io.ReadFull(d.r, b)
	d.pos += int64(n)
	if err != nil {
		return d.ioErr(field, err)
	}
	return nil
}

// ReadB reads the next len(dst) elements of a streamed B (Request.StreamB), in order;
// errors are *FrameError like Decode's, with the op's id. Asking for more elements than
// are left is an error that reads nothing.
func (d *Decoder) ReadB(dst []float32) error {
	if int64(len(dst)) > d.bLeft {
		return &FrameError{Kind: KindLength, Field: namesAB[1].data, Offset: d.pos, FrameSize: d.pos, OpID: d.bOpID, HasOpID: true,
			Reason: strconv.Itoa(len(dst)) + " elements asked of B, " + strconv.FormatInt(d.bLeft, 10) + " left"}
	}
	if err := d.readFloats(dst, namesAB[1].data); err != nil {
		var fe *FrameError
		if errors.As(err, &fe) {
			fe.OpID, fe.HasOpID = d.bOpID, true
		}
		return err
	}
	d.bLeft -= int64(len(dst))
	return nil
}

// readPrefix reads and checks the length prefix of tensor i of p.
func (d *Decoder) readPrefix(i int, p *plan) error {
	name := &p.names[i]
	start := d.pos
	if err := d.readFull(d.pre[:], name.length); err != nil {
		return err
	}
	n := p.inputs[i]
	if got := int64(binary.BigEndian.Uint32(d.pre[:])); got != n*float32Size {
		return d.errAt(start, &FrameError{Kind: KindLength, Field: name.length,
			Reason: "length prefix " + strconv.FormatInt(got, 10) + " disagrees with the " +
				strconv.FormatInt(n*float32Size, 10) + " bytes its shape implies"})
	}
	return nil
}

// readTensor reads the length prefix and data of tensor i of p.
func (d *Decoder) readTensor(i int, p *plan) ([]float32, error) {
	if err := d.readPrefix(i, p); err != nil {
		return nil, err
	}
	n := p.inputs[i]
	field := p.names[i].data
	buf := d.bufs[i]
	if int64(cap(buf)) >= n {
		buf = buf[:n]
		if err := d.readFloats(buf, field); err != nil {
			return nil, err
		}
	} else {
		// Grow as the data arrives (see growElems).
		buf = make([]float32, 0, min(n, growElems))
		for {
			end := int64(cap(buf))
			if err := d.readFloats(buf[len(buf):end], field); err != nil {
				return nil, err
			}
			buf = buf[:end]
			if end == n {
				break
			}
			buf = append(make([]float32, 0, min(2*end, n)), buf...)
		}
	}
	if n <= retainElems {
		d.bufs[i] = buf
	} else {
		d.bufs[i] = nil
	}
	return buf, nil
}

func (d *Decoder) readFloats(dst []float32, field string) error {
	n, err := readFloat32s(d.r, dst, &d.scratch)
	d.pos += n
	if err != nil {
		return d.ioErr(field, err)
	}
	return nil
}

// errAt stamps the frame offset and the bytes consumed on fe.
func (d *Decoder) errAt(off int64, fe *FrameError) *FrameError {
	fe.Offset = off
	fe.FrameSize = d.pos
	return fe
}

// ioErr classifies a read error in field: the stream ending (truncated), a read deadline
// (timeout) or another failure.
func (d *Decoder) ioErr(field string, err error) *FrameError {
	fe := &FrameError{Kind: KindRead, Field: field, Offset: d.pos, FrameSize: d.pos, Err: err, Reason: "read failed"}
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		fe.Kind, fe.Reason, fe.Err = KindTruncated, "stream ended inside the frame", nil
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		fe.Kind, fe.Reason = KindTimeout, "client stalled inside the frame"
	}
	return fe
}
