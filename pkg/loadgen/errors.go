package loadgen

import (
	"errors"
	"fmt"
)

// Sentinel causes of an *OpError, for errors.Is.
var (
	// ErrBadArgs: the GEMM call's dimensions or slice lengths are inconsistent.
	ErrBadArgs = errors.New("bad GEMM arguments")
	// ErrBadLength: the response's length prefix disagrees with M·N·4.
	ErrBadLength = errors.New("response length disagrees with M·N·4")
	// ErrNoAnswer: the server closed the connection before the first byte of the response.
	ErrNoAnswer = errors.New("server closed the connection without answering")
	// ErrTruncated: the server closed the connection in the middle of the response.
	ErrTruncated = errors.New("server closed the connection in the middle of the response")
	// ErrTimeout: the op did not complete within ClientOptions.Timeout.
	ErrTimeout = errors.New("no complete answer within the op timeout")
	// ErrUnusable: an earlier op on this client failed or was interrupted, so the stream is
	// out of step; dial a new client.
	ErrUnusable = errors.New("client unusable after an earlier failure")
	// ErrClientClosed: Close was called.
	ErrClientClosed = errors.New("client closed")
	// ErrBadTiming: the timing trailer asked for with ClientOptions.Timing is too long or
	// not a JSON object.
	ErrBadTiming = errors.New("bad timing trailer")
)

// Phase names the step of an op that failed.
type Phase string

// The phases of an op, in order.
const (
	PhaseArgs   Phase = "checking arguments"
	PhaseStart  Phase = "starting the op"
	PhaseSend   Phase = "sending the request"
	PhaseLength Phase = "reading the response length"
	PhaseResult Phase = "reading the result"
	PhaseTiming Phase = "reading the timing record"
)

// OpError says which op failed, against which server, in which phase, and why.
type OpError struct {
	Addr    string // server address
	OpID    int64  // op_id sent in the request's JSON
	M, N, K int
	Phase   Phase
	Detail  string // e.g. "server announced 60 bytes, want M·N·4 = 256"
	Err     error  // a sentinel above, a context error, or the I/O error
}

// Error formats the op, the phase, the cause and the detail.
func (e *OpError) Error() string {
	s := fmt.Sprintf("loadgen: op %d (GEMM %d×%d×%d) on %s: %s: %v", e.OpID, e.M, e.N, e.K, e.Addr, e.Phase, e.Err)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns the cause.
func (e *OpError) Unwrap() error { return e.Err }
