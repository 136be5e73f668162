package linalg

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
)

// Error kinds. Every error returned (or panicked) by this package is an *Error whose Kind is
// one of these, so callers can test with errors.Is and read the details with errors.As.
var (
	// ErrBadDim: a dimension or parameter is out of its allowed range (negative size,
	// zero stride, groups not dividing the channels, empty convolution output, ...).
	ErrBadDim = errors.New("invalid dimension")
	// ErrShapeMismatch: the operands' shapes cannot be combined (inner sizes differ,
	// batch dimensions do not broadcast, weight channels do not match the input).
	ErrShapeMismatch = errors.New("incompatible shapes")
	// ErrLength: a data slice's length does not match its shape.
	ErrLength = errors.New("data length does not match shape")
	// ErrOverflow: a product of dimensions does not fit in an int.
	ErrOverflow = errors.New("size overflows int")
)

// Error reports what was wrong with an operator's arguments and where.
type Error struct {
	Op     string // operator: "sgemm", "gemm", "matmul", "conv2d"
	Field  string // argument or field at fault, e.g. "k", "BShape[0]", "Groups"
	Kind   error  // one of ErrBadDim, ErrShapeMismatch, ErrLength, ErrOverflow
	Detail string // human-readable specifics (values involved)
}

// Error formats the error as "linalg: op: field: kind: detail".
func (e *Error) Error() string {
	return fmt.Sprintf("linalg: %s: %s: %v: %s", e.Op, e.Field, e.Kind, e.Detail)
}

// Unwrap returns the error kind, for errors.Is.
func (e *Error) Unwrap() error { return e.Kind }

func newError(op, field string, kind error, format string, args ...any) *Error {
	return &Error{Op: op, Field: field, Kind: kind, Detail: fmt.Sprintf(format, args...)}
}

// mulInt returns a·b for non-negative a and b, and false if the product overflows int.
func mulInt(a, b int) (int, bool) {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi != 0 || lo > math.MaxInt {
		return 0, false
	}
	return int(lo), true
}

// product returns the product of non-negative dims, and false on overflow.
func product(dims ...int) (int, bool) {
	p := 1
	for _, d := range dims {
		var ok bool
		if p, ok = mulInt(p, d); !ok {
			return 0, false
		}
	}
	return p, true
}
