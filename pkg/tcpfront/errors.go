package tcpfront

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrorKind classifies why a connection was closed or a frame rejected. It names the
// counters of Stats.Errors and the "kind" field of log lines.
type ErrorKind uint8

// The error kinds. Every bad request maps to exactly one of them.
const (
	KindMagic     ErrorKind = iota // the first four bytes are not 0xDEADBEEF
	KindOpType                     // the op type byte is not GEMM, CONV or MATMUL
	KindJSON                       // the JSON is not UTF-8, not JSON, or has a field of the wrong type
	KindField                      // a field is missing, non-positive or inconsistent with another
	KindDType                      // dtype is not "float32"
	KindLength                     // a tensor's length prefix disagrees with its shape
	KindLimit                      // the JSON or the op is larger than the server accepts
	KindTruncated                  // the stream ended in the middle of a frame
	KindTimeout                    // the client stalled in the middle of a frame
	KindRead                       // the connection failed while reading (e.g. reset)
	KindExecutor                   // the executor failed or returned a malformed result
	KindWrite                      // writing the response failed or timed out
	KindConnLimit                  // the connection was refused because MaxConns were open
	numKinds
)

var kindNames = [numKinds]string{
	KindMagic:     "bad_magic",
	KindOpType:    "unknown_op",
	KindJSON:      "bad_json",
	KindField:     "bad_field",
	KindDType:     "bad_dtype",
	KindLength:    "bad_length",
	KindLimit:     "too_large",
	KindTruncated: "truncated",
	KindTimeout:   "timeout",
	KindRead:      "read_error",
	KindExecutor:  "executor",
	KindWrite:     "write_error",
	KindConnLimit: "too_many_conns",
}

// AllErrorKinds lists every ErrorKind, in order, for callers that export counters.
func AllErrorKinds() []ErrorKind {
	kinds := make([]ErrorKind, numKinds)
	for i := range kinds {
		kinds[i] = ErrorKind(i)
	}
	return kinds
}

// String returns the kind's snake_case name, as used in logs and Stats.
func (k ErrorKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText lets ErrorKind be a JSON map key (Stats.Errors).
func (k ErrorKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// FrameError says what was wrong with a request frame and where. Offset counts bytes from
// the start of the frame (the first magic byte); Field names the frame field or JSON key.
type FrameError struct {
	Kind      ErrorKind
	Field     string // e.g. "magic", "json_length", "A_shape[1]", "tensor B length"
	Offset    int64  // byte offset in the frame where the bad field starts or the data ended
	Reason    string // human-readable detail
	OpID      int64  // op_id from the JSON, valid if HasOpID
	HasOpID   bool
	FrameSize int64  // bytes of this frame consumed before the error
	Err       error  // underlying error (I/O, JSON), if any
	stack     []byte // the goroutine's stack, for a recovered panic
}

// Error formats the error with its kind, field and offset.
func (e *FrameError) Error() string {
	s := fmt.Sprintf("tcpfront: %s: %s at frame offset %d: %s", e.Kind, e.Field, e.Offset, e.Reason)
	if e.HasOpID {
		s += " (op_id " + strconv.FormatInt(e.OpID, 10) + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *FrameError) Unwrap() error { return e.Err }

// KindOf returns the ErrorKind of err if it is (or wraps) a *FrameError.
func KindOf(err error) (ErrorKind, bool) {
	var fe *FrameError
	if errors.As(err, &fe) {
		return fe.Kind, true
	}
	return 0, false
}
