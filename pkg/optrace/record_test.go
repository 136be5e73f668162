package optrace

import (
	"encoding/json"
	"math"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleRecord() Record {
	return Record{
		OpID: 7, Index: -1, Op: "gemm", Timed: true, Device: 0,
		Model: "roofline", Preset: "a100-tutorial", ClockHz: 1e9,
		Cycles: 16, ComputeCycles: 16, MemoryCycles: 1, MemoryBytes: 736, FLOPs: 1024,
		Utilization: 1, GEMMs: 1, Requests: 1, TimingRequest: "gemm", StartCycle: 32, EndCycle: 48,
		ServerUS: ServerUS{Decode: 1500, Compute: 250, Timing: 12 * time.Microsecond, Total: 14 * time.Microsecond},
	}
}

// TestRecordJSONKeys pins the record's keys and values (docs/wire.md, "The timing record").
func TestRecordJSONKeys(t *testing.T) {
	r := sampleRecord()
	got := string(r.AppendJSON(nil))
	assert.Equal(t, `{"op_id":7,"op":"gemm","timed":true,"untimed_reason":"","device":0,"model":"roofline","preset":"a100-tutorial",`+
		`"clock_hz":1000000000,"cycles":16,"compute_cycles":16,"memory_cycles":1,"memory_bytes":736,"flops":1024,`+
		`"bound":"compute","utilization":1,"sim_ns":16,"gemms":1,"requests":1,"timing_request":"gemm","start_cycle":32,"end_cycle":48,`+
		`"server_us":{"decode":1.5,"compute":0.25,"timing":12,"total":14}}`, got)

	r = Record{OpID: -3, Index: 4, Op: "matmul", UntimedReason: "invalid_shape", Error: "B_shape: inner dimensions disagree", Device: -1, FLOPs: 8}
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.AppendJSON(nil), &m))
	assert.Equal(t, float64(4), m["index"])
	assert.Equal(t, false, m["timed"])
	assert.Equal(t, "invalid_shape", m["untimed_reason"])
	assert.Equal(t, "B_shape: inner dimensions disagree", m["error"])
	assert.Equal(t, "", m["bound"], "an untimed op has no bound")
	assert.Equal(t, float64(8), m["flops"], "an untimed op still carries its FLOPs")
	assert.Equal(t, float64(-1), m["device"])
}

// validString is what a JSON encoder makes of s: invalid bytes become U+FFFD.
func validString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out := make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		out = append(out, r) // RuneError for an invalid byte
		i += n
	}
	return string(out)
}

func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// FuzzRecordJSON: whatever the fields, the record encodes to valid JSON that decodes to
// the same values (strings with invalid UTF-8 replaced, non-finite numbers as 0).
func FuzzRecordJSON(f *testing.F) {
	f.Add(int64(7), 0, "gemm", true, "", "", 0, "roofline", "a100", 1e9, uint64(16), uint64(1), 0.5, int64(1500))
	f.Add(int64(-1), 3, "\x00\"\\\n\xff", false, "timeout", "bad \u2028", -1, "", "\xc3", math.NaN(), uint64(math.MaxUint64), uint64(0), math.Inf(1), int64(-7))
	f.Add(int64(1), -1, "conv", true, "", "", 2, "tiled", "", 1.41e9, uint64(1)<<60, uint64(3), 1e-300, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, opID int64, index int, op string, timed bool, reason, errText string, device int,
		model, preset string, clock float64, cycles, bytes uint64, util float64, ns int64) {
		us := time.Duration(ns)
		r := Record{OpID: opID, Index: index, Op: op, Timed: timed, UntimedReason: reason, Error: errText, Device: device,
			Model: model, Preset: preset, ClockHz: clock, Cycles: cycles, ComputeCycles: cycles / 2, MemoryCycles: cycles / 3,
			MemoryBytes: bytes, FLOPs: bytes ^ cycles, Utilization: util, GEMMs: bytes, Requests: index,
			StartCycle: cycles, EndCycle: bytes, ServerUS: ServerUS{us, -us, us / 3, us / 7}}
		b := r.AppendJSON([]byte("prefix"))[len("prefix"):]
		require.True(t, json.Valid(b), "invalid JSON: %q", b)
		var d WireRecord
		require.NoError(t, json.Unmarshal(b, &d))
		assert.Equal(t, opID, d.OpID)
		if index >= 0 {
			require.NotNil(t, d.Index)
			assert.Equal(t, index, *d.Index)
		} else {
			assert.Nil(t, d.Index)
		}
		assert.Equal(t, validString(op), d.Op)
		assert.Equal(t, validString(reason), d.UntimedReason)
		assert.Equal(t, validString(errText), d.Error)
		assert.Equal(t, validString(model), d.Model)
		assert.Equal(t, validString(preset), d.Preset)
		assert.Equal(t, finite(clock), d.ClockHz)
		assert.Equal(t, cycles, d.Cycles)
		assert.Equal(t, bytes, d.MemoryBytes)
		assert.Equal(t, bytes^cycles, d.FLOPs)
		assert.Equal(t, finite(util), d.Utilization)
		require.NotNil(t, d.ServerUS)
		require.NotNil(t, d.ServerUS.Decode)
		require.NotNil(t, d.ServerUS.Compute)
		assert.InDelta(t, float64(max(us, 0))/1e3, *d.ServerUS.Decode, 1e-9*math.Abs(float64(us))+1e-9, "µs with ns digits")
		assert.Equal(t, float64(max(-us, 0))/1e3, *d.ServerUS.Compute)
		assert.Equal(t, r.Bound(), d.Bound)
		assert.Equal(t, finite(r.SimNS()), d.SimNS)
	})
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "q\"b\\", "\x00\x1f\x7f", "é✓😀", "\xff\xfe", "a\u2028b", "<>&"} {
		var back string
		require.NoError(t, json.Unmarshal(AppendString(nil, s), &back), "%q", s)
		assert.Equal(t, validString(s), back)
	}
}

func TestAppendMicros(t *testing.T) {
	for ns, want := range map[uint64]string{0: "0", 1: "0.001", 10: "0.01", 100: "0.1", 1500: "1.5", 1234: "1.234", 1230: "1.23", 1005: "1.005", 12000: "12"} {
		assert.Equal(t, want, string(appendMicros(nil, ns)), "%d ns", ns)
	}
}

// TestAppendDecimal checks appendUint and appendInt against strconv at every digit count
// and the extremes.
func TestAppendDecimal(t *testing.T) {
	us := []uint64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 65535, 1<<32 - 1, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1}
	for p := uint64(1); p < 1e19; p *= 10 {
		us = append(us, p-1, p, p+1, p*7+3)
	}
	for _, v := range us {
		if got, want := string(appendUint([]byte("x"), v)), "x"+strconv.FormatUint(v, 10); got != want {
			t.Errorf("appendUint(%d) = %q, want %q", v, got, want)
		}
		for _, s := range []int64{int64(v), -int64(v)} {
			if got, want := string(appendInt(nil, s)), strconv.FormatInt(s, 10); got != want {
				t.Errorf("appendInt(%d) = %q, want %q", s, got, want)
			}
		}
	}
	if got := string(appendInt(nil, math.MinInt64)); got != strconv.FormatInt(math.MinInt64, 10) {
		t.Errorf("appendInt(MinInt64) = %q", got)
	}
}
