package tcpfront

import "github.com/sstemu/sstemu/pkg/linalg"

// parseGEMMFast decodes the JSON of a GEMM op in the plain form clients send, e.g.
//
//	{"op_id": 1, "M": 4, "N": 16, "K": 8, "A_shape": [4, 8], "B_shape": [8, 16], "dtype": "float32"}
//
// without encoding/json, which costs several microseconds and about twenty allocations per
// op (22% of the server's CPU under many small ops). It accepts only: one object whose keys
// are those seven and optionally "timing", each at most once, in any order; integer values
// (no fraction, exponent or leading zero) that fit an int64; arrays of one or more such
// integers; a dtype string of printable ASCII without escapes; timing true or false; JSON
// whitespace anywhere between tokens.
// For every input it accepts, the result is what encoding/json would decode into v (the
// fuzz test checks this); for anything else it reports false and leaves v alone, and the
// caller decodes with encoding/json, which also explains any error.
//
// v's pointers and slices point into st, which the caller keeps as long as v: with st
// reused from frame to frame, a frame's JSON in that form allocates nothing.
func parseGEMMFast(js []byte, v *gemmJSON, st *gemmStorage) bool {
	p := fastParser{js: js}
	var out gemmJSON
	p.space()
	ok := p.object(false, func(key []byte) (uint16, bool) {
		if bit, matched, ok := p.gemmKey(key, gemmFields{&out.OpID, &out.M, &out.N, &out.K, &out.AShape, &out.BShape}, st); matched {
			return bit, ok
		}
		switch string(key) {
		case "dtype":
			b, ok := p.plainBytes()
			if !ok {
				return 0, false
			}
			if string(b) == DTypeFloat32 {
				out.DType = &dtypeFloat32
			} else {
				s := string(b)
				out.DType = &s
			}
			return 1 << 6, true
		case "timing":
			switch {
			case p.literal("true"):
				st.timing = true
			case p.literal("false"):
				st.timing = false
			default:
				return 0, false
			}
			out.Timing = &st.timing
			return 1 << 7, true
		}
		return 0, false // unknown, or a case variant encoding/json would fold onto a field
	})
	p.space()
	if !ok || p.i != len(js) {
		return false
	}
	*v = out
	return true
}

// dtypeFloat32 is what a decoded dtype of "float32" points at, so that the usual dtype
// costs no string; nothing writes through it.
var dtypeFloat32 = DTypeFloat32

// gemmStorage is where the fast parser puts the values a decoded gemmJSON (or TIME
// entry) points at: op_id, M, N and K, timing, and A_shape's and B_shape's elements (up to
// linalg.MaxRank each; a longer array gets memory of its own).
type gemmStorage struct {
	ints   [4]int64
	timing bool
	shapes [2][linalg.MaxRank]int64
}

// gemmFields points at where the keys a GEMM op and a TIME entry share are decoded to.
type gemmFields struct {
	opID, m, n, k  **int64
	aShape, bShape *[]int64
}

// gemmKey reads the value of key into f if key is one of op_id, M, N, K, A_shape and
// B_shape (matched), with st as the storage of the values, and returns the key's bit for
// object's seen mask (bits 0–5).
func (p *fastParser) gemmKey(key []byte, f gemmFields, st *gemmStorage) (bit uint16, matched, ok bool) {
	var i int
	var dst **int64
	switch string(key) { // no allocation: the compiler compares the bytes in place
	case "op_id":
		i, dst = 0, f.opID
	case "M":
		i, dst = 1, f.m
	case "N":
		i, dst = 2, f.n
	case "K":
		i, dst = 3, f.k
	case "A_shape", "B_shape":
		j, arr := 0, f.aShape
		if string(key) == "B_shape" {
			j, arr = 1, f.bShape
		}
		*arr, ok = p.intArray(st.shapes[j][:0])
		return 1 << (4 + j), true, ok
	default:
		return 0, false, false
	}
	if st.ints[i], ok = p.integer(); !ok {
		return 0, true, false
	}
	*dst = &st.ints[i]
	return 1 << i, true, true
}

// object reads one JSON object, handing each key to field, which reads the key's value and
// returns the key's bit (a distinct bit per known key) or false to reject the object. A
// repeated key is rejected too: encoding/json's last-one-wins is left to it. An empty object
// is accepted only if allowEmpty.
func (p *fastParser) object(allowEmpty bool, field func(key []byte) (uint16, bool)) bool {
	if !p.take('{') {
		return false
	}
	p.space()
	if p.take('}') {
		return allowEmpty
	}
	var seen uint16
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
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
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

// fastParser walks JSON bytes for parseGEMMFast.
type fastParser struct {
	js []byte
	i  int
}

// space skips JSON whitespace.
func (p *fastParser) space() {
	for p.i < len(p.js) {
		switch p.js[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// literal consumes lit (true or false) if it is next and not followed by more letters.
func (p *fastParser) literal(lit string) bool {
	end := p.i + len(lit)
	if end > len(p.js) || string(p.js[p.i:end]) != lit {
		return false
	}
	if end < len(p.js) && p.js[end] >= 'a' && p.js[end] <= 'z' {
		return false
	}
	p.i = end
	return true
}

// take consumes c if it is next.
func (p *fastParser) take(c byte) bool {
	if p.i < len(p.js) && p.js[p.i] == c {
		p.i++
		return true
	}
	return false
}

// plainBytes reads a string of printable ASCII without escapes and returns its bytes (a
// view of the input).
func (p *fastParser) plainBytes() ([]byte, bool) {
	if !p.take('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.js) {
		c := p.js[p.i]
		switch {
		case c == '"':
			b := p.js[start:p.i]
			p.i++
			return b, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// integer reads a JSON number that is an integer literal (-?(0|[1-9][0-9]*), not followed
// by a fraction or exponent) and fits an int64.
func (p *fastParser) integer() (int64, bool) {
	start := p.i
	p.take('-')
	digits := p.i
	for p.i < len(p.js) && p.js[p.i] >= '0' && p.js[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || (n > 1 && p.js[digits] == '0') {
		return 0, false
	}
	if p.i < len(p.js) {
		if c := p.js[p.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	// Magnitude up to 2^63 (math.MinInt64 when negative); more digits than that cannot fit.
	const limit = uint64(1) << 63
	if n > maxInt64Digits {
		return 0, false
	}
	var u uint64
	for _, c := range p.js[digits:p.i] {
		u = u*10 + uint64(c-'0') // n ≤ 19 digits: no uint64 overflow
	}
	negative := digits > start
	switch {
	case negative && u <= limit:
		return int64(-u), true // -2^63 wraps to itself, as wanted
	case !negative && u < limit:
		return int64(u), true
	}
	return 0, false
}

// maxInt64Digits is the most decimal digits of an int64's magnitude (2^63 has 19).
const maxInt64Digits = 19

// intArray reads a non-empty array of integers, appending them to dst.
func (p *fastParser) intArray(dst []int64) ([]int64, bool) {
	if !p.take('[') {
		return nil, false
	}
	out := dst
	for {
		p.space()
		x, ok := p.integer()
		if !ok {
			return nil, false
		}
		out = append(out, x)
		p.space()
		if p.take(']') {
			return out, true
		}
		if !p.take(',') {
			return nil, false
		}
	}
}
