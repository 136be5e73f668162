package perfmodel

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error this package returns wraps exactly one of them, so callers
// can test with errors.Is and still print the detailed message.
var (
	// ErrOverflow: a quantity of the estimate (FLOPs, bytes, cycles) exceeds 2^64-1.
	ErrOverflow = errors.New("perfmodel: 64-bit overflow")
	// ErrInvalidOp: the operation has a zero dimension or a zero element size.
	ErrInvalidOp = errors.New("perfmodel: invalid op")
	// ErrInvalidParam: a model parameter is zero, out of range or not representable.
	ErrInvalidParam = errors.New("perfmodel: invalid parameter")
	// ErrUnknownKind: New was asked for a model kind it does not know.
	ErrUnknownKind = errors.New("perfmodel: unknown model kind")
	// ErrUnknownPreset: LookupPreset was asked for a preset it does not know.
	ErrUnknownPreset = errors.New("perfmodel: unknown preset")
	// ErrUnknownParam: a ParamID or parameter name that is not defined.
	ErrUnknownParam = errors.New("perfmodel: unknown parameter")
	// ErrUnknownDataflow: ParseDataflow was given a name it does not know.
	ErrUnknownDataflow = errors.New("perfmodel: unknown dataflow")
	// ErrReplayTooLarge: a SCALE-Sim replay would take more steps than its bound.
	ErrReplayTooLarge = errors.New("perfmodel: SCALE-Sim replay too large")
)

// OverflowError reports which quantity of which model overflowed 64 bits for which op.
type OverflowError struct {
	Model    string // model kind, e.g. "roofline"
	Quantity string // e.g. "flops", "memory bytes", "compute cycles"
	Op       Op
}

// Error implements error.
func (e *OverflowError) Error() string {
	return fmt.Sprintf("perfmodel: %s: %s of %v overflows 64 bits", e.Model, e.Quantity, e.Op)
}

// Is makes errors.Is(err, ErrOverflow) true.
func (e *OverflowError) Is(target error) bool { return target == ErrOverflow }

// InvalidOpError reports which field of an op is invalid and why.
type InvalidOpError struct {
	Op     Op
	Field  string // "M", "N", "K", "DtypeSize" or "Batch"
	Reason string
}

// Error implements error.
func (e *InvalidOpError) Error() string {
	return fmt.Sprintf("perfmodel: invalid op %v: %s %s", e.Op, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidOp) true.
func (e *InvalidOpError) Is(target error) bool { return target == ErrInvalidOp }

// InvalidParamError reports which parameter is invalid, for which model kind (empty when
// the check is not specific to one, as in Params.Set), with the offending value.
type InvalidParamError struct {
	Kind   string
	Param  string
	Value  string
	Reason string
}

// Error implements error.
func (e *InvalidParamError) Error() string {
	where := "perfmodel"
	if e.Kind != "" {
		where += ": " + e.Kind
	}
	return fmt.Sprintf("%s: invalid parameter %s=%s: %s", where, e.Param, e.Value, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidParam) true.
func (e *InvalidParamError) Is(target error) bool { return target == ErrInvalidParam }

// ReplayTooLargeError reports the work a replay would need and the bound it exceeds.
type ReplayTooLargeError struct {
	Op        Op
	Work, Max uint64 // steps the replay would take (saturating), and the bound
}

// Error implements error.
func (e *ReplayTooLargeError) Error() string {
	return fmt.Sprintf("perfmodel: SCALE-Sim replay of %v needs %d steps, more than %d", e.Op, e.Work, e.Max)
}

// Is makes errors.Is(err, ErrReplayTooLarge) true.
func (e *ReplayTooLargeError) Is(target error) bool { return target == ErrReplayTooLarge }
