package tcpfront

import (
	"bytes"
	"encoding/json"
	"math/bits"
	"strconv"
	"strings"

	"github.com/sstemu/sstemu/pkg/deviceserver"
	"github.com/sstemu/sstemu/pkg/linalg"
)

// Op types of the frames that carry no tensors (docs/wire.md): TIME asks for the timing of
// shapes alone, INFO describes the server.
const (
	OpTime deviceserver.OpType = 0x04
	OpInfo deviceserver.OpType = 0x05
)

// Limits of a TIME frame (docs/wire.md, "TIME"). No tensor-size limit applies to its
// entries; their summed work is bounded instead, so that one frame cannot occupy a device
// for ever.
const (
	// MaxTimeJSONBytes is the largest JSON a TIME frame may declare: 4096 entries of about
	// 250 bytes each.
	MaxTimeJSONBytes = 1 << 20
	// MaxTimeEntries is the most entries of one TIME frame.
	MaxTimeEntries = 4096
	// MaxTimeGEMMs bounds the GEMMs all entries of a frame lower to, summed.
	MaxTimeGEMMs = 1 << 32
	// MaxTimeFLOPs bounds the FLOPs of all entries of a frame, summed (2^60 ≈ 1.2·10^18,
	// some thousand forward passes of LLaMA-2-70B over 4096 tokens).
	MaxTimeFLOPs = 1 << 60
)

// Entry op names of a TIME frame, also the "op" of timing records.
const (
	opNameGEMM   = "gemm"
	opNameConv   = "conv"
	opNameMatmul = "matmul"
)

// TimeEntry is one validated entry of a TIME frame: the GEMMs it lowers to and its work,
// or why it cannot be timed.
type TimeEntry struct {
	OpID    int64  // the entry's op_id, or the frame's
	Op      string // gemm, conv or matmul
	Batches []linalg.GEMMBatch
	// GEMMs, FLOPs and OperandBytes are summed over Batches: the GEMM count, 2·M·N·K each,
	// and (M·K + K·N + M·N)·4 bytes each.
	GEMMs, FLOPs, OperandBytes uint64
	// Err says why the entry cannot be timed (a bad shape, or the frame's work limit);
	// the entry then has no batches.
	Err string
}

// TimeFrame is a decoded TIME request.
type TimeFrame struct {
	OpID    int64
	Entries []TimeEntry
}

// timeJSON is the JSON of a TIME frame.
type timeJSON struct {
	OpID *int64             `json:"op_id"`
	Ops  *[]json.RawMessage `json:"ops"`
}

// timeEntryJSON is one entry: the fields of its op (GEMM, MATMUL or CONV) and "op".
type timeEntryJSON struct {
	Op          *string `json:"op"`
	OpID        *int64  `json:"op_id"`
	M           *int64  `json:"M"`
	N           *int64  `json:"N"`
	K           *int64  `json:"K"`
	AShape      []int64 `json:"A_shape"`
	BShape      []int64 `json:"B_shape"`
	InputShape  []int64 `json:"input_shape"`
	WeightShape []int64 `json:"weight_shape"`
	Stride      *pair   `json:"stride"`
	Padding     *pair   `json:"padding"`
	Dilation    *pair   `json:"dilation"`
	Groups      *int64  `json:"groups"`
	DType       *string `json:"dtype"`
}

// parseTime decodes and checks a TIME frame's JSON. A malformed frame (not one JSON object
// with an integer op_id and an array of 1 … MaxTimeEntries ops) is a *FrameError; a bad
// entry is not: it comes back with Err set, and the others are still planned.
func parseTime(js []byte) (*TimeFrame, *FrameError) {
	if f, ok := parseTimeFast(js); ok {
		return f, nil
	}
	var v timeJSON
	if fe := unmarshal(js, &v, true); fe != nil {
		return nil, fe
	}
	if v.OpID == nil {
		return nil, fieldErr(KindField, "op_id", "missing")
	}
	fail := func(fe *FrameError) (*TimeFrame, *FrameError) {
		fe.OpID, fe.HasOpID = *v.OpID, true
		return nil, fe
	}
	switch {
	case v.Ops == nil:
		return fail(fieldErr(KindField, "ops", "missing"))
	case len(*v.Ops) == 0:
		return fail(fieldErr(KindField, "ops", "no entries (want 1 to %d)", MaxTimeEntries))
	case len(*v.Ops) > MaxTimeEntries:
		return fail(fieldErr(KindLimit, "ops", "%d entries exceed %d", len(*v.Ops), MaxTimeEntries))
	}
	f := &TimeFrame{OpID: *v.OpID, Entries: make([]TimeEntry, len(*v.Ops))}
	for i, raw := range *v.Ops {
		planEntry(raw, f.OpID, &f.Entries[i])
	}
	f.bound()
	return f, nil
}

// bound sums the entries' work in order and turns every entry that would take the frame
// past MaxTimeGEMMs or MaxTimeFLOPs into an error.
func (f *TimeFrame) bound() {
	var gemms, flops uint64
	for i := range f.Entries {
		e := &f.Entries[i]
		if e.Err != "" {
			continue
		}
		g, c1 := bits.Add64(gemms, e.GEMMs, 0)
		fl, c2 := bits.Add64(flops, e.FLOPs, 0)
		if c1 != 0 || c2 != 0 || g > MaxTimeGEMMs || fl > MaxTimeFLOPs {
			e.Err = "the frame's entries up to this one exceed its work limit (" +
				strconv.FormatUint(MaxTimeGEMMs, 10) + " GEMMs, " + strconv.FormatUint(MaxTimeFLOPs, 10) + " FLOPs)"
			e.Batches = nil
			continue
		}
		gemms, flops = g, fl
	}
}

// planEntry decodes one entry into e, or sets e.Err.
func planEntry(raw json.RawMessage, frameID int64, e *TimeEntry) {
	e.OpID = frameID
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		e.Err = "entry is not a JSON object"
		return
	}
	var v timeEntryJSON
	if fe := unmarshal(raw, &v, true); fe != nil {
		// Decoded leniently, the entry still says which op (and op_id) it is, so that
		// the record names them, and an unknown key is reported as matmul's are.
		var id struct {
			Op   *string `json:"op"`
			OpID *int64  `json:"op_id"`
		}
		if unmarshal(raw, &id, false) == nil {
			if id.OpID != nil {
				e.OpID = *id.OpID
			}
			if id.Op != nil {
				e.Op = *id.Op
			}
			if name, ok := unknownField(fe); ok {
				if id.Op == nil {
					e.Err = name + ": not a field of a TIME entry"
				} else {
					e.Err = name + ": not a field of op " + *id.Op
				}
				return
			}
		}
		e.Err = entryErr(fe)
		return
	}
	planDecoded(&v, e)
}

// unknownField returns the key a strict decode refused, from encoding/json's error (which
// has no type of its own for it).
func unknownField(fe *FrameError) (string, bool) {
	if fe.Err == nil {
		return "", false
	}
	name, ok := strings.CutPrefix(fe.Err.Error(), `json: unknown field "`)
	if !ok {
		return "", false
	}
	return strings.TrimSuffix(name, `"`), true
}

// planDecoded checks a decoded entry and plans it into e (whose OpID is the frame's), or
// sets e.Err.
func planDecoded(v *timeEntryJSON, e *TimeEntry) {
	if v.OpID != nil {
		e.OpID = *v.OpID
	}
	if v.Op == nil {
		e.Err = "op: missing (want gemm, matmul or conv)"
		return
	}
	e.Op = *v.Op
	if v.DType != nil && *v.DType != DTypeFloat32 {
		e.Err = "dtype: unsupported dtype " + strconv.Quote(*v.DType) + " (only \"float32\")"
		return
	}
	var batches []linalg.GEMMBatch
	var fe *FrameError
	switch e.Op {
	case opNameGEMM:
		batches, fe = entryGEMM(v)
	case opNameMatmul:
		batches, fe = entryMatmul(v)
	case opNameConv:
		batches, fe = entryConv(v)
	default:
		e.Err = "op: unknown op " + strconv.Quote(e.Op) + " (want gemm, matmul or conv)"
		return
	}
	if fe != nil {
		e.Err = entryErr(fe)
		return
	}
	if msg := e.sum(batches); msg != "" {
		e.Err = msg
		return
	}
	e.Batches = batches
}

// entryErr formats a field error for a record's "error".
func entryErr(fe *FrameError) string {
	msg := fe.Reason
	if fe.Field != "" {
		msg = fe.Field + ": " + msg
	}
	if fe.Err != nil && fe.Kind == KindJSON {
		msg += " (" + fe.Err.Error() + ")"
	}
	return msg
}

// Which entry keys each op takes (op, op_id and dtype: all of them).
const (
	keysGEMM   = keyM | keyN | keyK | keyA | keyB
	keysMatmul = keyA | keyB
	keysConv   = keyInput | keyWeight | keyStride | keyPadding | keyDilation | keyGroups
)

// Entry keys as bits, in the order entryKeyNames lists them.
const (
	keyM = 1 << iota
	keyN
	keyK
	keyA
	keyB
	keyInput
	keyWeight
	keyStride
	keyPadding
	keyDilation
	keyGroups
)

var entryKeyNames = [...]string{"M", "N", "K", "A_shape", "B_shape", "input_shape", "weight_shape", "stride", "padding", "dilation", "groups"}

// keys returns the op-specific keys set in v.
func (v *timeEntryJSON) keys() int {
	k := 0
	for i, set := range [...]bool{v.M != nil, v.N != nil, v.K != nil, v.AShape != nil, v.BShape != nil,
		v.InputShape != nil, v.WeightShape != nil, v.Stride != nil, v.Padding != nil, v.Dilation != nil, v.Groups != nil} {
		if set {
			k |= 1 << i
		}
	}
	return k
}

// unused returns an error naming the first key set in v that op (taking the keys allowed)
// does not take.
func unused(v *timeEntryJSON, op string, allowed int) *FrameError {
	extra := v.keys() &^ allowed
	for i, name := range entryKeyNames {
		if extra&(1<<i) != 0 {
			return fieldErr(KindField, name, "not a field of op %s", op)
		}
	}
	return nil
}

// The entries are planned by the ops' own planners, so by the same shape rules, but not
// sized: no tensor-size limit applies to TIME.

func entryGEMM(v *timeEntryJSON) ([]linalg.GEMMBatch, *FrameError) {
	if fe := unused(v, opNameGEMM, keysGEMM); fe != nil {
		return nil, fe
	}
	if v.AShape == nil && v.BShape == nil {
		return entryGEMMDims(v)
	}
	g := gemmJSON{M: v.M, N: v.N, K: v.K, AShape: v.AShape, BShape: v.BShape}
	// A_shape and B_shape are optional here; given, they must agree as in a GEMM op.
	if g.AShape == nil && v.M != nil && v.K != nil {
		g.AShape = []int64{*v.M, *v.K}
	}
	if g.BShape == nil && v.K != nil && v.N != nil {
		g.BShape = []int64{*v.K, *v.N}
	}
	var p plan
	if fe := p.planGEMM(&g); fe != nil {
		return nil, fe
	}
	return p.shapes.Batches(), nil
}

// entryGEMMDims plans a GEMM entry given by M, N and K alone, the form clients send. It
// applies planGEMM's rules (the shapes [M, K] and [K, N] it would build agree by
// construction) without building a tensor plan, which no TIME entry needs.
func entryGEMMDims(v *timeEntryJSON) ([]linalg.GEMMBatch, *FrameError) {
	m, n, k, fe := gemmDims(v.M, v.N, v.K)
	if fe != nil {
		return nil, fe
	}
	lp, err := linalg.PlanGEMM(linalg.GEMMShape{M: m, N: n, K: k})
	if err != nil {
		return nil, shapeErr(err)
	}
	return lp.Batches(), nil
}

func entryMatmul(v *timeEntryJSON) ([]linalg.GEMMBatch, *FrameError) {
	if fe := unused(v, opNameMatmul, keysMatmul); fe != nil {
		return nil, fe
	}
	var p plan
	if fe := p.planMatmul(&matmulJSON{AShape: v.AShape, BShape: v.BShape}); fe != nil {
		return nil, fe
	}
	return p.shapes.Batches(), nil
}

func entryConv(v *timeEntryJSON) ([]linalg.GEMMBatch, *FrameError) {
	if fe := unused(v, opNameConv, keysConv); fe != nil {
		return nil, fe
	}
	var p plan
	if fe := p.planConv(&convJSON{InputShape: v.InputShape, WeightShape: v.WeightShape,
		Stride: v.Stride, Padding: v.Padding, Dilation: v.Dilation, Groups: v.Groups}); fe != nil {
		return nil, fe
	}
	return p.shapes.Batches(), nil
}

// maxDeviceDim is the largest GEMM dimension a timing request carries (u32 fields).
const maxDeviceDim = 1<<32 - 1

// sum fills the entry's work from batches, with overflow checks; it returns why the
// entry cannot be timed, or "".
func (e *TimeEntry) sum(batches []linalg.GEMMBatch) string {
	var gemms, flops, bytes uint64
	ok := true
	mul := func(a, b uint64) uint64 {
		hi, lo := bits.Mul64(a, b)
		ok = ok && hi == 0
		return lo
	}
	add := func(a, b uint64) uint64 {
		s, c := bits.Add64(a, b, 0)
		ok = ok && c == 0
		return s
	}
	for _, b := range batches {
		g := b.Shape
		if uint64(g.M) > maxDeviceDim || uint64(g.N) > maxDeviceDim || uint64(g.K) > maxDeviceDim {
			return "the op lowers to a GEMM " + strconv.Itoa(g.M) + "×" + strconv.Itoa(g.N) + "×" + strconv.Itoa(g.K) +
				" that does not fit the device's 32-bit dimensions"
		}
		m, n, k, cnt := uint64(g.M), uint64(g.N), uint64(g.K), uint64(b.Count)
		gemms = add(gemms, cnt)
		flops = add(flops, mul(cnt, mul(mul(mul(2, m), n), k)))
		elems := add(add(mul(m, k), mul(k, n)), mul(m, n))
		bytes = add(bytes, mul(cnt, mul(elems, float32Size)))
	}
	if !ok {
		return "the op's FLOPs or bytes overflow 64 bits"
	}
	e.GEMMs, e.FLOPs, e.OperandBytes = gemms, flops, bytes
	return ""
}

// infoJSON is the JSON of an INFO frame.
type infoJSON struct {
	OpID *int64 `json:"op_id"`
}

// parseInfo decodes an INFO frame's JSON and returns its op_id.
func parseInfo(js []byte) (int64, *FrameError) {
	var v infoJSON
	if fe := unmarshal(js, &v, true); fe != nil {
		return 0, fe
	}
	if v.OpID == nil {
		return 0, fieldErr(KindField, "op_id", "missing")
	}
	return *v.OpID, nil
}

// PlanTimeGEMMs plans count GEMMs of M×N×K exactly as a TIME entry of them would be
// planned (a gemm entry for count 1, else a matmul of [count, M, K] by [count, K, N]), with
// TIME's shape rules, MaxDim and work limits, so that `sstemu estimate` refuses what TIME
// refuses. The entry's Err says why it cannot be timed, "" if it can.
func PlanTimeGEMMs(count, m, n, k int64) TimeEntry {
	var v timeEntryJSON
	op := opNameGEMM
	if count == 1 {
		v.M, v.N, v.K = &m, &n, &k
	} else {
		op = opNameMatmul
		v.AShape, v.BShape = []int64{count, m, k}, []int64{count, k, n}
	}
	v.Op = &op
	f := TimeFrame{Entries: make([]TimeEntry, 1)}
	planDecoded(&v, &f.Entries[0])
	f.bound()
	return f.Entries[0]
}
