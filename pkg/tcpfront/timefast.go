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
	ok := p.object(false, func(key []byte) (uint16, bool) {
		var ok bool
		switch string(key) {
		case "op_id":
			opID, ok = p.integer()
			seenID = true
			return 1 << 0, ok
		case "ops":
			f, own, ok = p.timeEntries()
			seenOps = true
			return 1 << 1, ok
		}
		return 0, false
	})
	if !ok {
		return nil, false
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
	var st gemmStorage
	var op, dtype string
	for {
		if len(f.Entries) == MaxTimeEntries {
			return nil, nil, false
		}
		p.space()
		v = timeEntryJSON{}
		if !p.timeEntry(&v, &st, &op, &dtype) {
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

// timeEntry reads one entry object into v, with st, op and dtype as the storage its
// pointers refer to.
func (p *fastParser) timeEntry(v *timeEntryJSON, st *gemmStorage, op, dtype *string) bool {
	return p.object(true, func(key []byte) (uint16, bool) {
		if bit, matched, ok := p.gemmKey(key, gemmFields{&v.OpID, &v.M, &v.N, &v.K, &v.AShape, &v.BShape}, st); matched {
			return bit, ok
		}
		bit, dst, s := uint16(1<<6), &v.Op, op
		switch string(key) {
		case "op":
		case "dtype":
			bit, dst, s = 1<<7, &v.DType, dtype
		default:
			return 0, false // another op's key, or one encoding/json would fold or reject
		}
		b, ok := p.plainBytes()
		if !ok {
			return 0, false
		}
		*s = string(b)
		*dst = s
		return bit, true
	})
}
