package tcpfront

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
)

// DTypeFloat32 is the only dtype the protocol carries.
const DTypeFloat32 = "float32"

// plan is a validated op before its tensors are read: the op with shapes filled in and
// its linalg.Plan, the element counts and names of the tensors that follow the JSON, and
// the output shape. A Decoder keeps one and plans every frame's op into it.
type plan struct {
	op       deviceserver.Op
	shapes   linalg.Plan // the shape rules applied once; op.Plan points here
	inputs   [2]int64    // element counts of the two tensors, in wire order
	inShapes [2][]int    // their shapes, for messages
	names    *[2]tensorName
	outShape []int
	outElems int64
	bytes    int64 // memory the op needs: inputs, output and workspace
	timing   bool  // the client asked for the timing trailer

	// Storage the fields above point into, so that a GEMM planned into a reused plan
	// allocates nothing: op.GEMM, inShapes' and outShape's elements (up to
	// linalg.MaxRank), and a GEMM's JSON with what the fast JSON parser decodes it to.
	gemm     deviceserver.GEMM
	dims     [2][linalg.MaxRank]int
	outDims  [linalg.MaxRank]int
	gemmJSON gemmJSON
	json     gemmStorage
}

// tensorName names a tensor and its length prefix in errors; fixed strings, so that the
// success path builds none.
type tensorName struct{ name, data, length string }

var (
	namesAB = [2]tensorName{
		{"A", "tensor A", "tensor A length"},
		{"B", "tensor B", "tensor B length"},
	}
	namesConv = [2]tensorName{
		{"input", "tensor input", "tensor input length"},
		{"weight", "tensor weight", "tensor weight length"},
	}
)

// gemmJSON is the JSON of a GEMM op (the reference client's). Pointers tell missing fields
// from zeros.
type gemmJSON struct {
	OpID   *int64  `json:"op_id"`
	M      *int64  `json:"M"`
	N      *int64  `json:"N"`
	K      *int64  `json:"K"`
	AShape []int64 `json:"A_shape"`
	BShape []int64 `json:"B_shape"`
	DType  *string `json:"dtype"`
	Timing *bool   `json:"timing"`
}

// matmulJSON is the JSON of a MATMUL op.
type matmulJSON struct {
	OpID   *int64  `json:"op_id"`
	AShape []int64 `json:"A_shape"`
	BShape []int64 `json:"B_shape"`
	DType  *string `json:"dtype"`
	Timing *bool   `json:"timing"`
}

// convJSON is the JSON of a CONV op.
type convJSON struct {
	OpID        *int64  `json:"op_id"`
	InputShape  []int64 `json:"input_shape"`
	WeightShape []int64 `json:"weight_shape"`
	Stride      *pair   `json:"stride"`
	Padding     *pair   `json:"padding"`
	Dilation    *pair   `json:"dilation"`
	Groups      *int64  `json:"groups"`
	DType       *string `json:"dtype"`
	Timing      *bool   `json:"timing"`
}

// pair is a CONV hyper-parameter: an integer for both axes or an [h, w] array.
type pair [2]int64

// UnmarshalJSON accepts n or [h, w] with integer elements.
func (p *pair) UnmarshalJSON(b []byte) error {
	var n int64
	if err := json.Unmarshal(b, &n); err == nil {
		*p = pair{n, n}
		return nil
	}
	var hw []int64
	if err := json.Unmarshal(b, &hw); err != nil || len(hw) != 2 {
		return errors.New("want an integer or an array of two integers")
	}
	*p = pair{hw[0], hw[1]}
	return nil
}

// parseJSON decodes the JSON of an op of type t into p, which it resets, and validates it
// against maxOpBytes. Offsets in returned errors are relative to the start of the JSON.
func parseJSON(t deviceserver.OpType, js []byte, maxOpBytes int64, p *plan) *FrameError {
	*p = plan{}
	if !utf8.Valid(js) {
		return &FrameError{Kind: KindJSON, Field: "json", Offset: int64(invalidUTF8At(js)), Reason: "JSON is not valid UTF-8"}
	}
	switch t {
	case deviceserver.OpGEMM:
		v := &p.gemmJSON
		if !parseGEMMFast(js, v, &p.json) {
			if fe := unmarshal(js, v, false); fe != nil {
				return fe
			}
		}
		return p.withOpID(v.OpID, v.DType, v.Timing, maxOpBytes, p.planGEMM(v))
	case deviceserver.OpMatmul:
		var v matmulJSON
		if fe := unmarshal(js, &v, true); fe != nil {
			return fe
		}
		return p.withOpID(v.OpID, v.DType, v.Timing, maxOpBytes, p.planMatmul(&v))
	case deviceserver.OpConv:
		var v convJSON
		if fe := unmarshal(js, &v, true); fe != nil {
			return fe
		}
		return p.withOpID(v.OpID, v.DType, v.Timing, maxOpBytes, p.planConv(&v))
	default:
		return &FrameError{Kind: KindOpType, Field: "op_type", Reason: "unknown op type " + strconv.Itoa(int(t))}
	}
}

// invalidUTF8At returns the index of the first byte of js that is not valid UTF-8.
func invalidUTF8At(js []byte) int {
	for i := 0; i < len(js); {
		r, n := utf8.DecodeRune(js[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(js)
}

// unmarshal decodes one JSON object into v; strict rejects unknown keys. Trailing
// non-space data is an error.
func unmarshal(js []byte, v any, strict bool) *FrameError {
	dec := json.NewDecoder(bytes.NewReader(js))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return jsonErr(err, dec.InputOffset())
	}
	if _, err := dec.Token(); err != io.EOF {
		return &FrameError{Kind: KindJSON, Field: "json", Offset: dec.InputOffset(), Reason: "data after the JSON object"}
	}
	return nil
}

// jsonErr turns an encoding/json error into a FrameError with the best offset known.
func jsonErr(err error, at int64) *FrameError {
	fe := &FrameError{Kind: KindJSON, Field: "json", Offset: at, Reason: "malformed JSON", Err: err}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		fe.Offset = max(syn.Offset-1, 0) // syn.Offset counts the offending byte; point at it
	case errors.As(err, &typ):
		fe.Offset, fe.Field, fe.Reason = typ.Offset, typ.Field, "field has the wrong type (want "+jsonTypeName(typ.Type)+")"
		if lit, ok := strings.CutPrefix(typ.Value, "number "); ok && isIntegerLiteral(lit) {
			// An integer too large for its field exceeds a limit, like any other
			// dimension above MaxDim; it is not a JSON type error.
			fe.Kind, fe.Reason = KindLimit, "integer "+lit+" out of range of "+typ.Type.String()
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		fe.Reason = "JSON ends early"
	}
	return fe
}

// jsonTypeName names the JSON a Go type decodes from: "a JSON object" for a struct or map
// (whose Go name, e.g. tcpfront.timeJSON, means nothing to a client), "a JSON array" for a
// slice, the Go type's name (int64, string, …) otherwise.
func jsonTypeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "a JSON object"
	case reflect.Slice, reflect.Array:
		return "a JSON array"
	case reflect.Pointer:
		return jsonTypeName(t.Elem())
	}
	return t.String()
}

// isIntegerLiteral reports whether lit is a JSON number without fraction or exponent.
func isIntegerLiteral(lit string) bool {
	digits := strings.TrimPrefix(lit, "-")
	if digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// withOpID checks op_id and dtype, common to all ops, then takes the result of the op's
// own planner (the shape rules: planned is its error), checks the plan's sizes against
// maxOpBytes (the limits), and stamps the op_id and the timing request on p, or the op_id
// on the error, in that order of precedence.
func (p *plan) withOpID(opID *int64, dtype *string, timing *bool, maxOpBytes int64, planned *FrameError) *FrameError {
	if opID == nil {
		return fieldErr(KindField, "op_id", "missing")
	}
	fe := checkDType(dtype)
	if fe == nil {
		fe = planned
	}
	if fe == nil {
		fe = p.size(maxOpBytes)
	}
	if fe != nil {
		fe.OpID, fe.HasOpID = *opID, true
		return fe
	}
	p.op.ID = *opID
	p.timing = timing != nil && *timing
	return nil
}

// checkDType checks that dtype is present and "float32".
func checkDType(dtype *string) *FrameError {
	switch {
	case dtype == nil:
		return fieldErr(KindField, "dtype", "missing")
	case *dtype != DTypeFloat32:
		return fieldErr(KindDType, "dtype", "unsupported dtype %q (only %q)", *dtype, DTypeFloat32)
	}
	return nil
}

// shape checks a shape field: present, with exactly rank dimensions if rank ≥ 0 (the wire
// format fixes GEMM's and CONV's; a MATMUL operand's rank is the plan's to check, so -1),
// every dimension valid. The shape is appended to dst.
func shape(field string, v []int64, rank int, dst []int) ([]int, *FrameError) {
	if v == nil {
		return nil, fieldErr(KindField, field, "missing")
	}
	if rank >= 0 && len(v) != rank {
		return nil, fieldErr(KindField, field, "want %d dimensions, got %d", rank, len(v))
	}
	out := dst
	for i, d := range v {
		if fe := checkDim(field, i, d); fe != nil {
			return nil, fe
		}
		out = append(out, int(d))
	}
	return out, nil
}

// shapes2 checks the two operands' shape fields by shape's rule, into p's storage.
func (p *plan) shapes2(fields [2]string, v [2][]int64, rank int) (a, b []int, fe *FrameError) {
	if a, fe = shape(fields[0], v[0], rank, p.dims[0][:0]); fe != nil {
		return nil, nil, fe
	}
	b, fe = shape(fields[1], v[1], rank, p.dims[1][:0])
	return a, b, fe
}

// dim checks a required scalar dimension.
func dim(field string, v *int64) (int, *FrameError) {
	if v == nil {
		return 0, fieldErr(KindField, field, "missing")
	}
	if fe := checkDim(field, -1, *v); fe != nil {
		return 0, fe
	}
	return int(*v), nil
}

// set makes p the plan of an op of type t whose shapes lp has validated; names and in (the
// inputs' shapes, for messages) describe the tensors that follow the JSON.
func (p *plan) set(t deviceserver.OpType, lp linalg.Plan, names *[2]tensorName, in [2][]int) {
	p.op.Type = t
	p.shapes, p.names, p.inShapes = lp, names, in
	p.outShape = lp.AppendOutShape(p.outDims[:0])
	p.op.Plan = &p.shapes
	for i, n := range lp.InputElems() {
		p.inputs[i] = int64(n)
	}
	p.outElems = int64(lp.OutElems())
}

// size charges the inputs, the output and the workspace to a fresh budget of maxOpBytes.
// It is the only size limit: the shape rules are the linalg plan's and need no tensors.
func (p *plan) size(maxOpBytes int64) *FrameError {
	s := newSizer(maxOpBytes)
	for i, n := range p.inputs {
		if fe := s.take(p.names[i].name, n, p.inShapes[i]); fe != nil {
			return fe
		}
	}
	if fe := s.take("output", p.outElems, p.outShape); fe != nil {
		return fe
	}
	// Scratch memory the computation needs besides inputs and output counts too: a few
	// bytes of tensors must not be able to make the server allocate terabytes.
	if ws := p.shapes.Workspace(); ws > 0 {
		if fe := s.take("workspace", int64(ws), nil); fe != nil {
			return fe
		}
	}
	p.bytes = s.used()
	return nil
}

// gemmDims reads a GEMM's M, N and K, each by dim's rule.
func gemmDims(mv, nv, kv *int64) (m, n, k int, fe *FrameError) {
	if m, fe = dim("M", mv); fe != nil {
		return
	}
	if n, fe = dim("N", nv); fe != nil {
		return
	}
	k, fe = dim("K", kv)
	return
}

// planGEMM plans a GEMM op into p.
func (p *plan) planGEMM(v *gemmJSON) *FrameError {
	m, n, k, fe := gemmDims(v.M, v.N, v.K)
	if fe != nil {
		return fe
	}
	a, b, fe := p.shapes2([2]string{"A_shape", "B_shape"}, [2][]int64{v.AShape, v.BShape}, 2)
	if fe != nil {
		return fe
	}
	if a[0] != m || a[1] != k {
		return fieldErr(KindField, "A_shape", "A_shape %v disagrees with [M, K] = [%d, %d]", a, m, k)
	}
	if b[0] != k || b[1] != n {
		return fieldErr(KindField, "B_shape", "B_shape %v disagrees with [K, N] = [%d, %d]", b, k, n)
	}
	lp, err := linalg.PlanGEMM(linalg.GEMMShape{M: m, N: n, K: k})
	if err != nil {
		return shapeErr(err)
	}
	p.set(deviceserver.OpGEMM, lp, &namesAB, [2][]int{a, b})
	p.gemm = deviceserver.GEMM{M: m, N: n, K: k}
	p.op.GEMM = &p.gemm
	return nil
}

// planMatmul plans a MATMUL op into p.
func (p *plan) planMatmul(v *matmulJSON) *FrameError {
	a, b, fe := p.shapes2([2]string{"A_shape", "B_shape"}, [2][]int64{v.AShape, v.BShape}, -1)
	if fe != nil {
		return fe
	}
	lp, err := linalg.PlanMatmul(a, b)
	if err != nil {
		return shapeErr(err)
	}
	p.set(deviceserver.OpMatmul, lp, &namesAB, [2][]int{a, b})
	p.op.Matmul = &deviceserver.Matmul{AShape: a, BShape: b}
	return nil
}

// Defaults of the optional CONV fields, as in torch.nn.functional.conv2d.
const (
	defaultStride   = 1
	defaultPadding  = 0
	defaultDilation = 1
	defaultGroups   = 1
)

// hyper checks an optional CONV pair: absent means def; each element in [lo, MaxDim].
func hyper(field string, v *pair, def, lo int64) ([2]int, *FrameError) {
	hw := pair{def, def}
	if v != nil {
		hw = *v
	}
	var out [2]int
	for i, x := range hw {
		if x < lo {
			return out, fieldErr(KindField, field, "must be at least %d, got %d", lo, x)
		}
		if x > MaxDim {
			return out, fieldErr(KindLimit, field, "%d exceeds %d", x, MaxDim)
		}
		out[i] = int(x)
	}
	return out, nil
}

// planConv plans a CONV op into p.
func (p *plan) planConv(v *convJSON) *FrameError {
	var c linalg.ConvParams
	in, w, fe := p.shapes2([2]string{"input_shape", "weight_shape"}, [2][]int64{v.InputShape, v.WeightShape}, 4)
	if fe != nil {
		return fe
	}
	c.InputShape, c.WeightShape = [4]int(in), [4]int(w)
	if c.Stride, fe = hyper("stride", v.Stride, defaultStride, 1); fe != nil {
		return fe
	}
	if c.Padding, fe = hyper("padding", v.Padding, defaultPadding, 0); fe != nil {
		return fe
	}
	if c.Dilation, fe = hyper("dilation", v.Dilation, defaultDilation, 1); fe != nil {
		return fe
	}
	g := int64(defaultGroups)
	if v.Groups != nil {
		g = *v.Groups
	}
	if fe := checkDim("groups", -1, g); fe != nil {
		return fe
	}
	c.Groups = int(g)
	lp, err := linalg.PlanConv2D(c)
	if err != nil {
		return shapeErr(err)
	}
	p.set(deviceserver.OpConv, lp, &namesConv, [2][]int{in, w})
	p.op.Conv = &deviceserver.Conv2D{
		InputShape: c.InputShape, WeightShape: c.WeightShape,
		Stride: c.Stride, Padding: c.Padding, Dilation: c.Dilation, Groups: c.Groups,
	}
	return nil
}
