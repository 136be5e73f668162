package tcpfront

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/sstemu/sstemu/pkg/linalg"
)

// Limits on a request that do not depend on the server's configuration.
const (
	// MaxJSONBytes is the largest JSON part a frame may declare.
	MaxJSONBytes = 64 << 10
	// MaxDim is the largest value of any single dimension, stride, padding, dilation or
	// group count on the wire; it keeps every value an int on 32-bit hosts. (The shape
	// rules themselves, including the rank limit linalg.MaxRank, are linalg's Plan*.)
	MaxDim = math.MaxInt32
	// MaxTensorBytes is the largest tensor the u32 length prefix can describe; it bounds
	// the result as well, whose length prefix is also a u32.
	MaxTensorBytes = math.MaxUint32
	// DefaultMaxOpBytes is Server.MaxOpBytes when left zero: inputs plus output of one op.
	DefaultMaxOpBytes = 1 << 30
	// DefaultMaxInflightBytes is Server.MaxInflightBytes when left zero: the memory all
	// connections' ops may hold at once.
	DefaultMaxInflightBytes = 4 << 30
	// float32Size is the size of one element of the only supported dtype.
	float32Size = 4
)

// fieldErr builds a KindField error (or another kind) about a JSON field.
func fieldErr(kind ErrorKind, field, format string, args ...any) *FrameError {
	return &FrameError{Kind: kind, Field: field, Reason: fmt.Sprintf(format, args...)}
}

// checkDim checks one dimension: positive and at most MaxDim. The error names field, or
// field[index] if index ≥ 0 (built only on error).
func checkDim(field string, index int, v int64) *FrameError {
	if v > 0 && v <= MaxDim {
		return nil
	}
	if index >= 0 {
		field += "[" + strconv.Itoa(index) + "]"
	}
	if v <= 0 {
		return fieldErr(KindField, field, "dimension must be positive, got %d", v)
	}
	return fieldErr(KindLimit, field, "dimension %d exceeds %d", v, MaxDim)
}

// sizer charges the element counts of an op's tensors, from its linalg.Plan, to the op's
// byte budget, so that nothing is allocated for an op that would exceed it. It is the size
// limit, kept apart from the shape rules: an op planned for timing alone has none.
type sizer struct {
	budget int64 // elements still allowed for the whole op
	tensor int64 // elements allowed for any single tensor
	limit  int64 // the op's byte limit, for messages
}

func newSizer(maxOpBytes int64) sizer {
	tensor := min(maxOpBytes, MaxTensorBytes) / float32Size
	return sizer{budget: maxOpBytes / float32Size, tensor: tensor, limit: maxOpBytes}
}

// used returns the bytes charged so far.
func (s *sizer) used() int64 { return s.limit/float32Size*float32Size - s.budget*float32Size }

// take charges a tensor of n elements to the budget. field names the tensor in errors,
// and shape describes it (nil: described by its element count).
func (s *sizer) take(field string, n int64, shape []int) *FrameError {
	if n > s.tensor {
		return fieldErr(KindLimit, field, "%s exceeds %d bytes", describe(n, shape), s.tensor*float32Size)
	}
	if n > s.budget {
		return fieldErr(KindLimit, field, "op exceeds its limit of %d bytes at %s", s.limit, describe(n, shape))
	}
	s.budget -= n
	return nil
}

// describe names a tensor in a size error.
func describe(n int64, shape []int) string {
	if shape == nil {
		return strconv.FormatInt(n, 10) + " elements"
	}
	return fmt.Sprintf("tensor of shape %v", shape)
}

// wireFields maps the field names of linalg's errors to the JSON keys they come from.
var wireFields = map[string]string{
	"AShape": "A_shape", "BShape": "B_shape",
	"InputShape": "input_shape", "WeightShape": "weight_shape",
	"Stride": "stride", "Padding": "padding", "Dilation": "dilation", "Groups": "groups",
}

// shapeErr turns the error of a linalg planner into a FrameError naming the JSON field at
// fault (with its index, e.g. "B_shape[0]"): bad_field for shapes that break the rules,
// too_large for sizes that do not fit in an int.
func shapeErr(err error) *FrameError {
	var le *linalg.Error
	if !errors.As(err, &le) {
		return &FrameError{Kind: KindField, Field: "json", Reason: "invalid op", Err: err}
	}
	kind := KindField
	if errors.Is(le, linalg.ErrOverflow) {
		kind = KindLimit
	}
	field, index, _ := strings.Cut(le.Field, "[")
	if w, ok := wireFields[field]; ok {
		field = w
	}
	if index != "" {
		field += "[" + index
	}
	return &FrameError{Kind: kind, Field: field, Reason: le.Kind.Error() + ": " + le.Detail}
}
