package tcpfront

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/deviceserver"
)

func i64(v int64) *int64   { return &v }
func str(s string) *string { return &s }
func boolPtr(v bool) *bool { return &v }

func TestParseGEMMFastAccepts(t *testing.T) {
	tests := []struct {
		name string
		js   string
		want gemmJSON
	}{
		{"reference client", `{"op_id": 1, "M": 4, "N": 16, "K": 8, "A_shape": [4, 8], "B_shape": [8, 16], "dtype": "float32"}`,
			gemmJSON{OpID: i64(1), M: i64(4), N: i64(16), K: i64(8), AShape: []int64{4, 8}, BShape: []int64{8, 16}, DType: str("float32")}},
		{"compact, other order", `{"dtype":"float32","B_shape":[3,2],"A_shape":[1,3],"K":3,"N":2,"M":1,"op_id":-7}`,
			gemmJSON{OpID: i64(-7), M: i64(1), N: i64(2), K: i64(3), AShape: []int64{1, 3}, BShape: []int64{3, 2}, DType: str("float32")}},
		{"all whitespace kinds", " \t\r\n{ \"M\" :\n0 , \"A_shape\" : [ -0 ,\t12 ] }\n ",
			gemmJSON{M: i64(0), AShape: []int64{0, 12}}},
		{"int64 extremes", `{"op_id": -9223372036854775808, "M": 9223372036854775807}`,
			gemmJSON{OpID: i64(-1 << 63), M: i64(1<<63 - 1)}},
		{"other dtype and rank", `{"dtype": "float16 x", "B_shape": [1, 2, 3]}`,
			gemmJSON{DType: str("float16 x"), BShape: []int64{1, 2, 3}}},
		{"timing true", `{"op_id": 1, "M": 4, "N": 16, "K": 8, "A_shape": [4, 8], "B_shape": [8, 16], "dtype": "float32", "timing": true}`,
			gemmJSON{OpID: i64(1), M: i64(4), N: i64(16), K: i64(8), AShape: []int64{4, 8}, BShape: []int64{8, 16}, DType: str("float32"), Timing: boolPtr(true)}},
		{"timing false", `{"timing":false}`, gemmJSON{Timing: boolPtr(false)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got gemmJSON
			require.True(t, parseGEMMFast([]byte(tc.js), &got, new(gemmStorage)))
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseGEMMFastDefers(t *testing.T) {
	// Each of these is either invalid JSON, or valid JSON that encoding/json decodes in a
	// way the fast path does not reproduce: all go to encoding/json.
	tests := map[string]string{
		"empty":             ``,
		"empty object":      `{}`,
		"not an object":     `[1]`,
		"case-folded key":   `{"m": 4}`,
		"unknown key":       `{"M": 4, "bias": true}`,
		"timing not a bool": `{"M": 4, "timing": 1}`,
		"timing null":       `{"timing": null}`,
		"timing truex":      `{"timing": truex}`,
		"timing twice":      `{"timing": true, "timing": false}`,
		"repeated key":      `{"M": 4, "M": 5}`,
		"null":              `{"M": null}`,
		"fraction":          `{"M": 4.0}`,
		"exponent":          `{"M": 4e1}`,
		"leading zero":      `{"M": 04}`,
		"plus sign":         `{"M": +4}`,
		"lone minus":        `{"M": -}`,
		"above int64":       `{"M": 9223372036854775808}`,
		"below int64":       `{"M": -9223372036854775809}`,
		"twenty digits":     `{"M": 10000000000000000000}`,
		"string number":     `{"M": "4"}`,
		"empty array":       `{"A_shape": []}`,
		"trailing comma":    `{"A_shape": [1, 2,]}`,
		"array of floats":   `{"A_shape": [1.5]}`,
		"escaped string":    `{"dtype": "float\u0033\u0032"}`,
		"escaped key":       `{"\u004d": 4}`,
		"non-ASCII string":  `{"dtype": "flöat32"}`,
		"control character": "{\"dtype\": \"a\tb\"}",
		"trailing data":     `{"M": 4} x`,
		"second object":     `{"M": 4}{}`,
		"unterminated":      `{"M": 4`,
		"missing colon":     `{"M" 4}`,
		"missing comma":     `{"M": 4 "N": 5}`,
		"trailing comma ob": `{"M": 4,}`,
		"nested object":     `{"M": {"x": 1}}`,
	}
	for name, js := range tests {
		t.Run(name, func(t *testing.T) {
			v := gemmJSON{M: i64(99)}
			assert.False(t, parseGEMMFast([]byte(js), &v, new(gemmStorage)))
			assert.Equal(t, gemmJSON{M: i64(99)}, v, "left untouched")
		})
	}
}

// FuzzParseGEMMFast checks the fast path against encoding/json: whatever it accepts,
// encoding/json must accept too and decode to the same values.
func FuzzParseGEMMFast(f *testing.F) {
	for _, s := range []string{
		gemmJSONFor(1, 4, 16, 8),
		`{"dtype":"float32","B_shape":[3,2],"A_shape":[1,3],"K":3,"N":2,"M":1,"op_id":-7}`,
		`{"op_id": -9223372036854775808, "M": 9223372036854775807}`,
		`{"M": 4, "M": 5}`, `{"m": 4}`, `{"M": 4.0}`, `{"dtype": "f\u0033"}`, `{"A_shape": []}`,
		` {"N" : 0 } `, `{"M": 04}`, `{"K": -0}`, `{"timing": true}`, `{"timing":false }`, `{"timing": tru}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, js []byte) {
		var fast gemmJSON
		if !parseGEMMFast(js, &fast, new(gemmStorage)) {
			return
		}
		var ref gemmJSON
		require.NoError(t, json.Unmarshal(js, &ref), "fast path accepted %q", js)
		assert.Equal(t, ref, fast, "%q", js)
	})
}

// BenchmarkParseJSONGEMM decodes the reference client's GEMM JSON, with the fast path and
// with encoding/json alone.
func BenchmarkParseJSONGEMM(b *testing.B) {
	js := []byte(gemmJSONFor(1, 4, 16, 8))
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var p plan
		for b.Loop() {
			if fe := parseJSON(deviceserver.OpGEMM, js, DefaultMaxOpBytes, &p); fe != nil {
				b.Fatal(fe)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v gemmJSON
			if fe := unmarshal(js, &v, false); fe != nil {
				b.Fatal(fe)
			}
			var p plan
			if fe := p.withOpID(v.OpID, v.DType, v.Timing, DefaultMaxOpBytes, p.planGEMM(&v)); fe != nil {
				b.Fatal(fe)
			}
		}
	})
}
