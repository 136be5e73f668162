package tcpfront

import (
	"fmt"
	"math"
	"strconv"
)

// Limits on a request that do not depend on the server's configuration.
const (
	// MaxJSONBytes is the largest JSON part a frame may declare.
	MaxJSONBytes = 64 << 10
	// MaxRank is the largest number of dimensions of a MATMUL operand.
	MaxRank = 8
	// MaxDim is the largest value of any single dimension, stride, padding or dilation; it
	// keeps every value an int on 32-bit hosts and every sum below int64 overflow.
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

// sizer counts elements of an op's tensors against the op's byte budget, so that no
// product can overflow and nothing is allocated for an op that would exceed it.
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

// take returns the element count of shape (whose dims are already checked) and charges it
// to the budget. field names the tensor in errors.
func (s *sizer) take(field string, shape []int) (int64, *FrameError) {
	n := int64(1)
	for _, d := range shape {
		if int64(d) > s.tensor/n {
			return 0, fieldErr(KindLimit, field, "tensor of shape %v exceeds %d bytes", shape, s.tensor*float32Size)
		}
		n *= int64(d)
	}
	if n > s.budget {
		return 0, fieldErr(KindLimit, field, "op exceeds its limit of %d bytes at tensor of shape %v",
			s.limit, shape)
	}
	s.budget -= n
	return n, nil
}

// matmulShape applies torch.matmul's shape rules: a 1-D A is promoted to [1,k] and a 1-D B
// to [k,1], the promoted dimensions are dropped from the result again, and leading (batch)
// dimensions broadcast as in NumPy. Dims must already be checked positive.
func matmulShape(a, b []int) ([]int, *FrameError) {
	ka := a[len(a)-1]
	kb := b[0]
	if len(b) >= 2 {
		kb = b[len(b)-2]
	}
	if ka != kb {
		return nil, fieldErr(KindField, "B_shape", "inner dimensions disagree: A_shape %v has %d, B_shape %v has %d", a, ka, b, kb)
	}
	var batchA, batchB []int
	if len(a) > 2 {
		batchA = a[:len(a)-2]
	}
	if len(b) > 2 {
		batchB = b[:len(b)-2]
	}
	nb := max(len(batchA), len(batchB))
	out := make([]int, 0, nb+2)
	for i := range nb {
		da, db := 1, 1
		if j := i - (nb - len(batchA)); j >= 0 {
			da = batchA[j]
		}
		if j := i - (nb - len(batchB)); j >= 0 {
			db = batchB[j]
		}
		switch {
		case da == db || db == 1:
			out = append(out, da)
		case da == 1:
			out = append(out, db)
		default:
			return nil, fieldErr(KindField, "B_shape", "batch dimensions do not broadcast: A_shape %v, B_shape %v", a, b)
		}
	}
	if len(a) >= 2 {
		out = append(out, a[len(a)-2])
	}
	if len(b) >= 2 {
		out = append(out, b[len(b)-1])
	}
	return out, nil
}

// convParams are the validated hyper-parameters of a CONV op.
type convParams struct {
	input, weight             [4]int
	stride, padding, dilation [2]int
	groups                    int
}

// conv2dShape returns the NCHW output shape of PyTorch's conv2d for p, or an error naming
// the field that makes the convolution impossible.
func conv2dShape(p convParams) ([4]int, *FrameError) {
	n, c, h, w := p.input[0], p.input[1], p.input[2], p.input[3]
	o, cg, kh, kw := p.weight[0], p.weight[1], p.weight[2], p.weight[3]
	g := p.groups
	if c%g != 0 {
		return [4]int{}, fieldErr(KindField, "groups", "groups %d does not divide input channels %d", g, c)
	}
	if o%g != 0 {
		return [4]int{}, fieldErr(KindField, "groups", "groups %d does not divide output channels %d", g, o)
	}
	if cg*g != c {
		return [4]int{}, fieldErr(KindField, "weight_shape[1]", "weight has %d channels per group, input has %d channels in %d groups", cg, c, g)
	}
	var out [4]int
	out[0], out[1] = n, o
	for i, in := range [2]int{h, w} {
		k := [2]int{kh, kw}[i]
		// All terms are ≤ MaxDim, so int64 cannot overflow here.
		span := int64(p.dilation[i])*int64(k-1) + 1
		padded := int64(in) + 2*int64(p.padding[i])
		if padded < span {
			return [4]int{}, fieldErr(KindField, "weight_shape["+strconv.Itoa(2+i)+"]",
				"dilated kernel extent %d exceeds padded input extent %d", span, padded)
		}
		extent := (padded-span)/int64(p.stride[i]) + 1
		if extent > MaxDim {
			return [4]int{}, fieldErr(KindLimit, "padding", "output extent %d exceeds %d", extent, MaxDim)
		}
		out[2+i] = int(extent)
	}
	return out, nil
}
