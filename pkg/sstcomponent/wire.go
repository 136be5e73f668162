package sstcomponent

import (
	"encoding/binary"
	"io"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// The serve loop reads requests and writes answers in place, without protocol's whole-
// structure Decode and Encode: a GEMM timing request touches 32 of its 4080 payload bytes
// and its answer 40, so copying and clearing the rest of every structure would be most of
// the component's own work.

var byteOrder = binary.LittleEndian // every wire structure is little-endian

// fixedRequestSize is how much of a request's payload the handlers of every type but ECHO
// and WRITE read: the GEMM fields (M, N, K, dtype_size, a_offset, b_offset), the longest
// of the fixed-field payloads.
const fixedRequestSize = protocol.GEMMHeaderSize

// fixedResultSize bounds the payload bytes the fixed-field answers set: GEMM's cycles,
// compute cycles, memory cycles, memory bytes, result_offset and its padding.
const fixedResultSize = 40

// decodeRequest fills req from the encoded request b (RequestSize bytes). It copies only
// the part of the payload that req's type is handled from: all of it for ECHO (answered
// with it) and WRITE (which stores its data), the header and the entries it counts for
// GEMM_LIST, the first fixedRequestSize bytes otherwise.
// The rest of req.Payload keeps bytes of earlier requests, which no handler reads.
func decodeRequest(req *protocol.Request, b []byte) {
	decodeRequestAs(req, protocol.RequestType(byteOrder.Uint32(b[protocol.RequestTypeOffset:])), b)
}

// decodeRequestAs is decodeRequest for a request whose type t was read already (by the
// device that routed it): b's own type field is not read again, and every other byte of b
// is read once, so a driver changing b meanwhile cannot make it another type.
func decodeRequestAs(req *protocol.Request, t protocol.RequestType, b []byte) {
	req.Type = t
	req.Flags = byteOrder.Uint32(b[protocol.RequestFlagsOffset:])
	req.RequestID = byteOrder.Uint64(b[protocol.RequestIDOffset:])
	req.UserData = byteOrder.Uint64(b[protocol.RequestUserDataOffset:])
	payload := b[protocol.RequestHeaderSize:protocol.RequestSize]
	switch req.Type {
	case protocol.ReqEcho, protocol.ReqWrite:
		copy(req.Payload[:], payload)
	case protocol.ReqGEMMList:
		// The header first, then as many entries as it counts (at most the list's
		// room), each byte read once.
		copy(req.Payload[:protocol.GEMMListHeaderSize], payload)
		n := min(int(req.GEMMListHeader().Count), protocol.MaxGEMMListEntries)
		copy(req.Payload[protocol.GEMMListHeaderSize:protocol.GEMMListSize(n)], payload[protocol.GEMMListHeaderSize:])
	default:
		copy(req.Payload[:fixedRequestSize], payload)
	}
}

// reply is an answer under construction, reused for every request of a connection. used
// bounds the leading payload bytes that may be non-zero; every byte after it is zero, so
// starting the next answer clears only those bytes and encoding copies only them.
type reply struct {
	protocol.Response
	used int
}

// start begins the answer to req: status OK, request_id and user_data copied, all else
// zero (as protocol.Response.ReplyTo does), with room for a fixed-field result.
func (r *reply) start(req *protocol.Request) {
	clear(r.Payload[:r.used])
	r.used = fixedResultSize
	r.Status, r.Reserved, r.Result = protocol.StatusOK, 0, 0
	r.RequestID, r.UserData = req.RequestID, req.UserData
}

// setUsed records that the first n payload bytes may have been written.
func (r *reply) setUsed(n int) { r.used = max(r.used, n) }

// encode writes the answer's ResponseSize bytes into b: the header, the used payload and
// zeros.
func (r *reply) encode(b []byte) {
	b = b[:protocol.ResponseSize]
	byteOrder.PutUint32(b[protocol.ResponseStatusOffset:], uint32(r.Status))
	byteOrder.PutUint32(b[protocol.ResponseReservedOffset:], r.Reserved)
	byteOrder.PutUint64(b[protocol.ResponseRequestIDOffset:], r.RequestID)
	byteOrder.PutUint64(b[protocol.ResponseUserDataOffset:], r.UserData)
	byteOrder.PutUint64(b[protocol.ResponseResultOffset:], r.Result)
	n := copy(b[protocol.ResponseHeaderSize:], r.Payload[:r.used])
	clear(b[protocol.ResponseHeaderSize+n:])
}

// answerWriter batches encoded answers and writes them to the stream in one call. Unlike
// bufio.Writer it lends out the room for the next answer, which is encoded there, so an
// answer is written into the buffer once and never copied within it.
type answerWriter struct {
	w   io.Writer
	buf []byte
	n   int // bytes of buf holding answers not yet written
}

func newAnswerWriter(w io.Writer, size int) *answerWriter {
	return &answerWriter{w: w, buf: make([]byte, size)}
}

// next returns the room for one answer, writing out the batch first if it is full. The
// answer counts once commit is called.
func (aw *answerWriter) next() ([]byte, error) {
	if len(aw.buf)-aw.n < protocol.ResponseSize {
		if err := aw.flush(); err != nil {
			return nil, err
		}
	}
	return aw.buf[aw.n : aw.n+protocol.ResponseSize], nil
}

// commit adds the answer encoded into next's room to the batch.
func (aw *answerWriter) commit() { aw.n += protocol.ResponseSize }

// flush writes out every committed answer.
func (aw *answerWriter) flush() error {
	if aw.n == 0 {
		return nil
	}
	n, err := aw.w.Write(aw.buf[:aw.n])
	if err == nil && n < aw.n {
		err = io.ErrShortWrite
	}
	if err != nil {
		return err
	}
	aw.n = 0
	return nil
}
