package tcpfront

import "bytes"

// parseTimeFast decodes a TIME frame in the plain form clients send,
//
//	{"op_id": 1, "ops": [{"op": "gemm", "M": 4096, "N": 8192, "K": 8192}, …]}
//
// without encoding/json, which spends several microseconds per entry (the JSON is decoded
// twice, as raw entries and then each entry). It accepts only: one object with exactly the
// keys op_id (an integer) and ops, once each, in either order; ops a non-empty array of at
// most MaxTimeEntries objects whose keys are among op, op_id, M, N, K, A_shape, B_shape and
// dtype, each at most once, with integers as parseGEMMFast reads them, non-empty integer
// arrays, and op and dtype plain printable-ASCII strings; JSON whitespace between tokens.
// For every input it accepts, the frame is what the encoding/json path gives (the fuzz
// test checks this); for anything else it reports false and that path decodes the frame,
// explaining any error.
func parseTimeFast(js []byte) (*TimeFrame, bool) {
	p := fastParser{js: js}
	var opID int64
	var seenID, seenOps bool
	var f *TimeFrame
	var own []bool // whether each entry has an op_id of its own
	p.space()
	if !p.take('{') {
		return nil, false
	}
	for {
		p.space()
		key, ok := p.plainBytes()
		if !ok {
			return nil, false
		}
		p.space()
		if !p.take(':') {
			return nil, false
		}
		p.space()
		switch string(key) {
		case "op_id":
			if seenID {
				return nil, false
			}
			if opID, ok = p.integer(); !ok {
				return nil, false
			}
			seenID = true
		case "ops":
			if seenOps {
				return nil, false
			}
			if f, own, ok = p.timeEntries(); !ok {
				return nil, false
			}
			seenOps = true
		default:
			return nil, false
		}
		p.space()
		if p.take('}') {
			break
		}
		if !p.take(',') {
			return nil, false
		}
	}
	p.space()
	if p.i != len(js) || !seenID || !seenOps {
		return nil, false
	}
	// Entries without an op_id of their own carry the frame's, which may come last.
	f.OpID = opID
	for i := range f.Entries {
		if !own[i] {
			f.Entries[i].OpID = opID
		}
	}
	f.bound()
	return f, true
}

// timeEntries reads the ops array, planning each entry, and reports which entries have an
// op_id of their own.
func (p *fastParser) timeEntries() (*TimeFrame, []bool, bool) {
	if !p.take('[') {
		return nil, nil, false
	}
	// Every entry opens an object: their number is at most the '{' that follow, so the
	// entries are allocated once rather than grown by doubling.
	n := min(bytes.Count(p.js[p.i:], []byte{'{'}), MaxTimeEntries)
	f := &TimeFrame{Entries: make([]TimeEntry, 0, n)}
	own := make([]bool, 0, n)
	// One entry's storage, reused: planDecoded copies out what it keeps.
	var v timeEntryJSON
	var ints [4]int64
	var op, dtype string
	for {
		if len(f.Entries) == MaxTimeEntries {
			return nil, nil, false
		}
		p.space()
		v = timeEntryJSON{}
		if !p.timeEntry(&v, &ints, &op, &dtype) {
			return nil, nil, false
		}
		f.Entries = append(f.Entries, TimeEntry{})
		planDecoded(&v, &f.Entries[len(f.Entries)-1])
		own = append(own, v.OpID != nil)
		p.space()
		if p.take(']') {
			return f, own, true
		}
		if !p.take(',') {
			return nil, nil, false
		}
	}
}

// timeEntry reads one entry object into v, with ints, op and dtype as the storage its
// pointers refer to.
func (p *fastParser) timeEntry(v *timeEntryJSON, ints *[4]int64, op, dtype *string) bool {
	if !p.take('{') {
		return false
	}
	var seen uint8
	p.space()
	if p.take('}') {
		return true
	}
	for {
		p.space()
		key, ok := p.plainBytes()
		if !ok {
			return false
		}
		p.space()
		if !p.take(':') {
			return false
		}
		p.space()
		var bit uint8
		switch string(key) {
		case "op_id", "M", "N", "K":
			var i int
			var dst **int64
			switch string(key) {
			case "op_id":
				i, dst = 0, &v.OpID
			case "M":
				i, dst = 1, &v.M
			case "N":
				i, dst = 2, &v.N
			default:
				i, dst = 3, &v.K
			}
			bit = 1 << i
			if ints[i], ok = p.integer(); !ok {
				return false
			}
			*dst = &ints[i]
		case "A_shape", "B_shape":
			bit = 1 << 4
			dst := &v.AShape
			if string(key) == "B_shape" {
				bit, dst = 1<<5, &v.BShape
			}
			if *dst, ok = p.intArray(); !ok {
				return false
			}
		case "op", "dtype":
			bit = 1 << 6
			dst, s := &v.Op, op
			if string(key) == "dtype" {
				bit, dst, s = 1<<7, &v.DType, dtype
			}
			b, ok := p.plainBytes()
			if !ok {
				return false
			}
			*s = string(b)
			*dst = s
		default:
			return false // another op's key, or one encoding/json would fold or reject
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		p.space()
		if p.take('}') {
			return true
		}
		if !p.take(',') {
			return false
		}
	}
}
