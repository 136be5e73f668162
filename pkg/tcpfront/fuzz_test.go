package tcpfront

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sstemu/sstemu/pkg/deviceserver"
)

// fuzzMaxOpBytes keeps fuzzed frames from asking for much memory.
const fuzzMaxOpBytes = 1 << 20

func fuzzSeeds() [][]byte {
	gemm := frame(1, gemmJSONFor(1, 2, 3, 4), ramp(8, 1), ramp(12, 2))
	matmul := frame(3, `{"op_id": 2, "A_shape": [2, 1, 3], "B_shape": [4, 3, 2], "dtype": "float32"}`, ramp(6, 1), ramp(24, 2))
	conv := frame(2, `{"op_id": 3, "input_shape": [1, 2, 4, 4], "weight_shape": [2, 1, 3, 3], "stride": [1, 2], "padding": 1, "dilation": 1, "groups": 2, "dtype": "float32"}`,
		ramp(32, 1), ramp(18, 2))
	js, _ := llamaDecoderLayerJSON(4)
	timeF := frame(4, js)
	info := frame(5, `{"op_id": 5}`)
	seeds := [][]byte{handGEMMFrame, gemm, matmul, conv, append(append([]byte{}, gemm...), matmul...),
		timeF, info, append(append([]byte{}, info...), timeF...)}
	for _, f := range [][]byte{gemm, matmul, conv, timeF, info} {
		for _, cut := range []int{0, 3, 4, 8, 9, 20, len(f) - 5, len(f) - 1} {
			seeds = append(seeds, f[:cut])
		}
	}
	return seeds
}

// FuzzDecode feeds arbitrary streams to the decoder: it must never panic, must return
// io.EOF or a *FrameError on failure, and whatever it accepts must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder(bytes.NewReader(data), fuzzMaxOpBytes)
		var consumed int64
		for {
			req, err := d.Decode()
			if err != nil {
				var fe *FrameError
				if err != io.EOF && !errors.As(err, &fe) {
					t.Fatalf("error of type %T: %v", err, err)
				}
				return
			}
			consumed += req.Size
			if consumed > int64(len(data)) {
				t.Fatalf("decoded %d bytes from %d", consumed, len(data))
			}
			checkRequest(t, req)
		}
	})
}

// checkRequest checks that a decoded request's tensors and output agree with its shapes
// and its budget.
func checkRequest(t *testing.T, req *Request) {
	switch req.Type {
	case OpTime:
		checkTimeFrame(t, req.Time)
		return
	case OpInfo:
		return
	}
	na, nb := checkPlan(t, req.Op, req.OutShape, req.OutElems)
	a, b := tensors(req.Op)
	if len(a) != na || len(b) != nb {
		t.Fatalf("tensors of %d and %d elements, shapes imply %d and %d", len(a), len(b), na, nb)
	}
}

// checkPlan checks the output count and the op's size and returns the element counts its
// shapes imply for the two input tensors.
func checkPlan(t *testing.T, op *deviceserver.Op, outShape []int, outElems int64) (int, int) {
	n := int64(1)
	for _, dim := range outShape {
		if dim <= 0 {
			t.Fatalf("output shape %v", outShape)
		}
		n *= int64(dim)
	}
	if n != outElems {
		t.Fatalf("output shape %v but OutElems %d", outShape, outElems)
	}
	var na, nb int
	switch op.Type {
	case deviceserver.OpGEMM:
		g := op.GEMM
		na, nb = g.M*g.K, g.K*g.N
	case deviceserver.OpMatmul:
		na, nb = prod(op.Matmul.AShape), prod(op.Matmul.BShape)
	case deviceserver.OpConv:
		na, nb = prod(op.Conv.InputShape[:]), prod(op.Conv.WeightShape[:])
	default:
		t.Fatalf("op type %v", op.Type)
	}
	if 4*(int64(na)+int64(nb)+n) > fuzzMaxOpBytes {
		t.Fatalf("op of %d bytes accepted", 4*(int64(na)+int64(nb)+n))
	}
	return na, nb
}

func tensors(op *deviceserver.Op) ([]float32, []float32) {
	switch op.Type {
	case deviceserver.OpGEMM:
		return op.GEMM.A, op.GEMM.B
	case deviceserver.OpMatmul:
		return op.Matmul.A, op.Matmul.B
	case deviceserver.OpConv:
		return op.Conv.Input, op.Conv.Weight
	}
	return nil, nil
}

// FuzzParseJSON feeds arbitrary JSON for each op type to the JSON decoder and validator.
func FuzzParseJSON(f *testing.F) {
	f.Add(byte(1), []byte(gemmJSONFor(1, 4, 16, 8)))
	f.Add(byte(3), []byte(`{"op_id": 2, "A_shape": [2, 1, 3, 4], "B_shape": [5, 4, 6], "dtype": "float32"}`))
	f.Add(byte(3), []byte(`{"op_id": 2, "A_shape": [4], "B_shape": [4], "dtype": "float32"}`))
	f.Add(byte(2), []byte(`{"op_id": 3, "input_shape": [1, 3, 8, 8], "weight_shape": [4, 3, 3, 3], "stride": [2, 1], "padding": 1, "dilation": [1, 2], "groups": 1, "dtype": "float32"}`))
	f.Add(byte(2), []byte(`{"op_id": 3, "input_shape": [1, 3, 8, 8], "weight_shape": [4, 3, 3, 3], "padding": 2147483647, "dtype": "float32"}`))
	f.Add(byte(1), []byte("{\"op_id\": 1, \"dtype\": \"\xff\"}"))
	f.Add(byte(4), []byte(`{}`))
	// A plan reused from frame to frame, as the Decoder's, planned for an op of each
	// type before every input.
	var reused plan
	warm := []struct {
		t  deviceserver.OpType
		js string
	}{
		{deviceserver.OpConv, `{"op_id": 9, "input_shape": [2, 4, 9, 9], "weight_shape": [8, 2, 3, 3], "groups": 2, "dtype": "float32", "timing": true}`},
		{deviceserver.OpMatmul, `{"op_id": 8, "A_shape": [3, 1, 5, 6, 7, 2, 4, 3], "B_shape": [3, 2], "dtype": "float32"}`},
		{deviceserver.OpGEMM, `{"op_id": 7, "M": 3, "N": 5, "K": 2, "A_shape": [3, 2], "B_shape": [2, 5], "dtype": "float32", "timing": true}`},
	}
	f.Fuzz(func(t *testing.T, op byte, js []byte) {
		p := new(plan)
		fe := parseJSON(deviceserver.OpType(op), js, fuzzMaxOpBytes, p)
		for _, w := range warm {
			if fe := parseJSON(w.t, []byte(w.js), fuzzMaxOpBytes, &reused); fe != nil {
				t.Fatal(fe)
			}
			fe2 := parseJSON(deviceserver.OpType(op), js, fuzzMaxOpBytes, &reused)
			if !reflect.DeepEqual(fe, fe2) || fe == nil && !reflect.DeepEqual(p, &reused) {
				t.Fatalf("with a plan reused after a %s: %v, %+v; with a new one: %v, %+v", w.t, fe2, reused, fe, *p)
			}
		}
		if fe != nil {
			if fe.Offset < 0 || fe.Offset > int64(len(js)) {
				t.Fatalf("offset %d outside the JSON of %d bytes", fe.Offset, len(js))
			}
			return
		}
		na, nb := checkPlan(t, &p.op, p.outShape, p.outElems)
		if int64(na) != p.inputs[0] || int64(nb) != p.inputs[1] {
			t.Fatalf("plan expects tensors of %v elements, shapes imply %d and %d", p.inputs, na, nb)
		}
	})
}

// checkTimeFrame checks a decoded TIME frame: 1 … MaxTimeEntries entries, each either an
// error without batches or batches whose work matches its sums, within the frame's bound.
func checkTimeFrame(t *testing.T, f *TimeFrame) {
	if len(f.Entries) < 1 || len(f.Entries) > MaxTimeEntries {
		t.Fatalf("%d entries accepted", len(f.Entries))
	}
	var flops, gemms uint64
	for i, e := range f.Entries {
		if e.Err != "" {
			if e.Batches != nil {
				t.Fatalf("entry %d has an error and batches", i)
			}
			continue
		}
		var want TimeEntry
		if msg := want.sum(e.Batches); msg != "" {
			t.Fatalf("entry %d accepted, but its sums fail: %s", i, msg)
		}
		if want.FLOPs != e.FLOPs || want.GEMMs != e.GEMMs || want.OperandBytes != e.OperandBytes {
			t.Fatalf("entry %d: work %+v, batches give %+v", i, e, want)
		}
		flops += e.FLOPs
		gemms += e.GEMMs
		if flops > MaxTimeFLOPs || gemms > MaxTimeGEMMs {
			t.Fatalf("frame work %d FLOPs, %d GEMMs accepted", flops, gemms)
		}
	}
}

// FuzzParseTime feeds arbitrary JSON to the TIME decoder: it never panics; on success every
// entry is consistent, and the answer built from it (records for every entry) is valid
// JSON.
func FuzzParseTime(f *testing.F) {
	js, _ := llamaDecoderLayerJSON(1)
	f.Add([]byte(js))
	f.Add([]byte(`{"op_id": 1, "ops": [{"op": "conv", "input_shape": [1, 3, 8, 8], "weight_shape": [4, 3, 3, 3], "padding": [1, 2], "groups": 1}, 5, {"op": "x"}]}`))
	f.Add([]byte(`{"op_id": 1, "ops": [{"op": "matmul", "A_shape": [2, 1, 3, 4], "B_shape": [5, 4, 6], "op_id": -3, "dtype": "\u00ff"}]}`))
	f.Add([]byte(`{"op_id": 1, "ops": []}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		fr, fe := parseTime(js)
		if fe != nil {
			if fr != nil {
				t.Fatal("frame and error both returned")
			}
			return
		}
		checkTimeFrame(t, fr)
		s := &Server{Executor: &timingExecutor{}}
		s.init()
		recs, _ := s.timeFrame(context.Background(), fr, 0, time.Now())
		out := appendTimeResponse(nil, fr.OpID, recs)
		if !json.Valid(out) {
			t.Fatalf("answer is not JSON: %q", out)
		}
	})
}

// FuzzParseTimeFast checks the TIME fast path against the encoding/json path: whatever it
// accepts, the general decoder accepts too, with the same frame.
func FuzzParseTimeFast(f *testing.F) {
	js, _ := llamaDecoderLayerJSON(1)
	for _, s := range []string{js,
		`{"ops": [{"op": "gemm", "M": 1, "N": 2, "K": 3, "op_id": -9223372036854775808}], "op_id": 4}`,
		`{"op_id": 1, "ops": [{"op": "gemm", "M": 0, "N": 2, "K": 3}, {"op": "gemm", "M": 1, "N": 2, "K": 3, "A_shape": [1, 3], "B_shape": [3, 2], "dtype": "float32"}, {}]}`,
		`{"op_id": 1, "ops": [{"op": "matmul", "A_shape": [2, 3], "B_shape": [3]}, {"op": "x", "dtype": "f16"}]}`,
		`{"op_id": 1, "ops": [{"m": 1}]}`, `{"op_id": 1, "ops": [{"op": "gemm", "M": 1, "M": 2}]}`, `{"op_id": 1, "ops": []}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		fast, ok := parseTimeFast(js)
		if !ok {
			return
		}
		var v timeJSON
		if fe := unmarshal(js, &v, true); fe != nil || v.OpID == nil || v.Ops == nil {
			t.Fatalf("fast path accepted %q, encoding/json does not (%v)", js, fe)
		}
		ref := &TimeFrame{OpID: *v.OpID, Entries: make([]TimeEntry, len(*v.Ops))}
		for i, raw := range *v.Ops {
			planEntry(raw, ref.OpID, &ref.Entries[i])
		}
		ref.bound()
		if !reflect.DeepEqual(normalize(ref), normalize(fast)) {
			t.Fatalf("%q:\nfast %+v\nref  %+v", js, fast, ref)
		}
	})
}

// normalize makes empty and nil batch lists compare equal.
func normalize(f *TimeFrame) *TimeFrame {
	for i := range f.Entries {
		if len(f.Entries[i].Batches) == 0 {
			f.Entries[i].Batches = nil
		}
	}
	return f
}

// FuzzParseInfo: INFO's decoder never panics and accepts only {"op_id": integer}, the key
// matched as encoding/json matches it (case-insensitively, as for every op's JSON).
func FuzzParseInfo(f *testing.F) {
	f.Add([]byte(`{"op_id": 5}`))
	f.Add([]byte(`{"op_id": 5, "x": 1}`))
	f.Add([]byte(`{"op_id": "5"}`))
	f.Fuzz(func(t *testing.T, js []byte) {
		id, fe := parseInfo(js)
		if fe != nil {
			return
		}
		var v map[string]json.RawMessage
		if err := json.Unmarshal(js, &v); err != nil || len(v) != 1 {
			t.Fatalf("accepted %q", js)
		}
		var raw json.RawMessage
		for k, r := range v {
			if strings.EqualFold(k, "op_id") {
				raw = r
			}
		}
		var back int64
		if err := json.Unmarshal(raw, &back); err != nil || back != id {
			t.Fatalf("op_id %d from %q", id, js)
		}
	})
}

// sameBits reports whether a and b hold the same float32 bit patterns: the decoders copy
// bytes, so a NaN must come out as the same NaN (slices.Equal has NaN ≠ NaN).
func sameBits(a, b []float32) bool {
	return slices.EqualFunc(a, b, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
}

// FuzzDecodeStreamed decodes the same bytes twice, once whole and once with every GEMM's
// B streamed (Request.StreamB, read with ReadB in pieces of 3 elements): both must agree
// on every frame's tensors, and on the kind and offset of the error that ends the stream.
func FuzzDecodeStreamed(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		whole := NewDecoder(bytes.NewReader(data), fuzzMaxOpBytes)
		streamed := NewDecoder(bytes.NewReader(data), fuzzMaxOpBytes)
		streamed.streamB = func(*deviceserver.Op) bool { return true }
		for {
			wreq, werr := whole.Decode()
			sreq, serr := streamed.Decode()
			var b []float32
			if serr == nil && sreq.StreamB {
				n := sreq.Op.GEMM.K * sreq.Op.GEMM.N
				b = make([]float32, n)
				for i := 0; i < n && serr == nil; i += 3 {
					serr = streamed.ReadB(b[i:min(i+3, n)])
				}
				if serr == nil {
					sreq.Op.GEMM.B = b
				}
			}
			if (werr == nil) != (serr == nil) {
				t.Fatalf("whole: %v, streamed: %v", werr, serr)
			}
			if werr != nil {
				var wfe, sfe *FrameError
				if errors.As(werr, &wfe) != errors.As(serr, &sfe) {
					t.Fatalf("whole: %v, streamed: %v", werr, serr)
				}
				if wfe != nil && (wfe.Kind != sfe.Kind || wfe.Offset != sfe.Offset || wfe.OpID != sfe.OpID) {
					t.Fatalf("whole: %v at %d, streamed: %v at %d", wfe, wfe.Offset, sfe, sfe.Offset)
				}
				return
			}
			if sreq.StreamB {
				if wreq.Type != deviceserver.OpGEMM || !sameBits(wreq.Op.GEMM.B, b) || !sameBits(wreq.Op.GEMM.A, sreq.Op.GEMM.A) {
					t.Fatalf("streamed GEMM differs from the whole one")
				}
				if streamed.pos != wreq.Size {
					t.Fatalf("streamed frame of %d bytes, whole %d", streamed.pos, wreq.Size)
				}
			}
		}
	})
}
