package optrace

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// Bound names of a record (perfmodel.Bound's strings): the resource that limits the op's
// summed cycles.
const (
	BoundCompute = "compute"
	BoundMemory  = "memory"
)

// Record is the timing record of one op or one TIME entry (docs/wire.md, "The timing
// record"). Its JSON keys keep their meaning; more may be added.
type Record struct {
	// OpID is the client's op_id (a TIME entry's own, or its frame's).
	OpID int64
	// Index is a TIME entry's position in its frame; -1 for a GEMM, CONV or MATMUL op
	// (then the key is left out).
	Index int
	// Op is "gemm", "conv" or "matmul".
	Op string
	// Timed tells whether layer 5 timed the op; UntimedReason is "" when it did, the typed
	// cause otherwise.
	Timed         bool
	UntimedReason string
	// Error says why a TIME entry could not be timed at all (a bad shape); "" otherwise,
	// and then the key is left out.
	Error string
	// Device is the index of the device that timed the op; -1 when none did.
	Device int
	// Model, Preset and ClockHz describe layer 5; empty and 0 when it is external and does
	// not say.
	Model, Preset string
	ClockHz       float64
	// The op's cost summed over the GEMMs it lowered to. FLOPs and MemoryBytes are filled
	// even when the op is untimed (MemoryBytes then from the model, when in-process).
	Cycles, ComputeCycles, MemoryCycles, MemoryBytes, FLOPs uint64
	// Utilization is FLOPs / (Cycles · peak FLOP per cycle), in [0, 1]; 0 when the peak is
	// unknown or the op untimed.
	Utilization float64
	// GEMMs is how many GEMMs the op lowered to; Requests how many timing requests were
	// sent down for them.
	GEMMs    uint64
	Requests int
	// TimingRequest is the kind of request that timed the op: "gemm", or "compute" when
	// the device does not know GEMM and layer 2 sent COMPUTE of 2·M·N·K units as the
	// reference device server does; "" when no request was answered.
	TimingRequest string
	// StartCycle and EndCycle are the op's interval on its device's timeline (Timeline);
	// both 0 when untimed.
	StartCycle, EndCycle uint64
	// ServerUS is the wall-clock time the server spent on the op.
	ServerUS ServerUS
}

// ServerUS is the wall-clock time spent in the server: decoding the frame, computing the
// result on the host, timing it through layers 2–5, and all of it until the record is made
// (the answer is written after it). JSON gives each in microseconds with nanosecond digits.
type ServerUS struct {
	Decode, Compute, Timing, Total time.Duration
}

// Bound returns "compute" when the summed compute cycles exceed the summed memory cycles,
// "memory" otherwise (a tie is memory-bound, as in perfmodel), "" when untimed.
func (r *Record) Bound() string {
	switch {
	case !r.Timed:
		return ""
	case r.ComputeCycles > r.MemoryCycles:
		return BoundCompute
	}
	return BoundMemory
}

// SimNS returns the op's cycles in simulated nanoseconds at ClockHz, 0 when the clock is
// unknown.
func (r *Record) SimNS() float64 {
	if !(r.ClockHz > 0) {
		return 0
	}
	return float64(r.Cycles) * 1e9 / r.ClockHz
}

// AppendJSON appends the record as one JSON object (no newline). The result is always
// valid JSON: strings are escaped (invalid UTF-8 becomes U+FFFD) and a non-finite number
// is written as 0.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"op_id":`...)
	b = appendInt(b, r.OpID)
	if r.Index >= 0 {
		b = append(b, `,"index":`...)
		b = appendInt(b, int64(r.Index))
	}
	b = AppendString(append(b, `,"op":`...), r.Op)
	b = append(b, `,"timed":`...)
	b = strconv.AppendBool(b, r.Timed)
	b = AppendString(append(b, `,"untimed_reason":`...), r.UntimedReason)
	if r.Error != "" {
		b = AppendString(append(b, `,"error":`...), r.Error)
	}
	b = append(b, `,"device":`...)
	b = appendInt(b, int64(r.Device))
	b = AppendString(append(b, `,"model":`...), r.Model)
	b = AppendString(append(b, `,"preset":`...), r.Preset)
	b = AppendFloat(append(b, `,"clock_hz":`...), r.ClockHz)
	b = appendUint(append(b, `,"cycles":`...), r.Cycles)
	b = appendUint(append(b, `,"compute_cycles":`...), r.ComputeCycles)
	b = appendUint(append(b, `,"memory_cycles":`...), r.MemoryCycles)
	b = appendUint(append(b, `,"memory_bytes":`...), r.MemoryBytes)
	b = appendUint(append(b, `,"flops":`...), r.FLOPs)
	b = AppendString(append(b, `,"bound":`...), r.Bound())
	b = AppendFloat(append(b, `,"utilization":`...), r.Utilization)
	b = AppendFloat(append(b, `,"sim_ns":`...), r.SimNS())
	b = appendUint(append(b, `,"gemms":`...), r.GEMMs)
	b = append(b, `,"requests":`...)
	b = appendInt(b, int64(r.Requests))
	b = AppendString(append(b, `,"timing_request":`...), r.TimingRequest)
	b = appendUint(append(b, `,"start_cycle":`...), r.StartCycle)
	b = appendUint(append(b, `,"end_cycle":`...), r.EndCycle)
	b = append(b, `,"server_us":{"decode":`...)
	b = appendDurationMicros(b, r.ServerUS.Decode)
	b = append(b, `,"compute":`...)
	b = appendDurationMicros(b, r.ServerUS.Compute)
	b = append(b, `,"timing":`...)
	b = appendDurationMicros(b, r.ServerUS.Timing)
	b = append(b, `,"total":`...)
	b = appendDurationMicros(b, r.ServerUS.Total)
	return append(b, "}}"...)
}

// appendDurationMicros writes d as exact decimal microseconds (negative as 0).
func appendDurationMicros(b []byte, d time.Duration) []byte {
	if d < 0 {
		d = 0
	}
	return appendMicros(b, uint64(d))
}

// digitPairs holds "00" … "99": appendUint writes two digits per division.
const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// appendUint writes v in decimal, as strconv.AppendUint(b, v, 10) does, but appending the
// digits in place rather than through a scratch buffer and a copy: a record has a dozen
// such numbers and a trace event several more.
func appendUint(b []byte, v uint64) []byte {
	if v < 10 {
		return append(b, byte('0'+v))
	}
	n := 1
	for x := v; x >= 10; x /= 10 {
		n++
	}
	b = slices.Grow(b, n)
	b = b[:len(b)+n]
	i := len(b)
	for v >= 100 {
		q := v / 100
		r := (v - q*100) * 2
		i -= 2
		b[i], b[i+1] = digitPairs[r], digitPairs[r+1]
		v = q
	}
	if v >= 10 {
		b[i-2], b[i-1] = digitPairs[2*v], digitPairs[2*v+1]
	} else {
		b[i-1] = byte('0' + v)
	}
	return b
}

// appendInt writes v in decimal, as appendInt(b, v) does.
func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendUint(append(b, '-'), uint64(-v))
	}
	return appendUint(b, uint64(v))
}

// AppendFloat writes v as a JSON number: shortest round-trip form, 0 for NaN and ±Inf
// (JSON has no such numbers), integers without an exponent up to 1e21.
func AppendFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, '0')
	}
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		return appendInt(b, int64(v)) // exact, and far cheaper than formatting a float
	}
	if v == math.Trunc(v) && math.Abs(v) < 1e21 {
		return strconv.AppendFloat(b, v, 'f', -1, 64)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 replaced by U+FFFD, everything else as is.
func AppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// WireRecord is a timing record as a client decodes its JSON (docs/wire.md, "The timing
// record"): the keys with their JSON types. Pointers mark keys that may be absent: Index
// outside TIME, ServerUS where a record carries no wall-clock times.
type WireRecord struct {
	OpID          int64         `json:"op_id"`
	Index         *int          `json:"index"`
	Op            string        `json:"op"`
	Timed         bool          `json:"timed"`
	UntimedReason string        `json:"untimed_reason"`
	Error         string        `json:"error"`
	Device        int           `json:"device"`
	Model         string        `json:"model"`
	Preset        string        `json:"preset"`
	ClockHz       float64       `json:"clock_hz"`
	Cycles        uint64        `json:"cycles"`
	ComputeCycles uint64        `json:"compute_cycles"`
	MemoryCycles  uint64        `json:"memory_cycles"`
	MemoryBytes   uint64        `json:"memory_bytes"`
	FLOPs         uint64        `json:"flops"`
	Bound         string        `json:"bound"`
	Utilization   float64       `json:"utilization"`
	SimNS         float64       `json:"sim_ns"`
	GEMMs         uint64        `json:"gemms"`
	Requests      int           `json:"requests"`
	TimingRequest string        `json:"timing_request"`
	StartCycle    uint64        `json:"start_cycle"`
	EndCycle      uint64        `json:"end_cycle"`
	ServerUS      *WireServerUS `json:"server_us"`
}

// WireServerUS is a record's server_us object as decoded: microseconds, nil where absent.
type WireServerUS struct {
	Decode  *float64 `json:"decode"`
	Compute *float64 `json:"compute"`
	Timing  *float64 `json:"timing"`
	Total   *float64 `json:"total"`
}
