package tcpfront

import (
	"testing"

	"github.com/sstemu/sstemu/pkg/deviceserver"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The shape rules are linalg's (its tests hold the full set); these cases check that the
// front end applies them and names the JSON field at fault. The expected shapes follow the
// torch.matmul documentation's examples and rules.
func TestMatmulShapeRules(t *testing.T) {
	tests := []struct {
		name      string
		a, b      string
		want      []int
		wantField string
	}{
		{"dot", "[3]", "[3]", []int{}, ""},
		{"matrix-vector", "[3, 4]", "[4]", []int{3}, ""},
		{"vector-matrix", "[4]", "[4, 5]", []int{5}, ""},
		{"matrix-matrix", "[2, 3]", "[3, 4]", []int{2, 4}, ""},
		{"batched-vector", "[10, 3, 4]", "[4]", []int{10, 3}, ""},
		{"batched-batched", "[10, 3, 4]", "[10, 4, 5]", []int{10, 3, 5}, ""},
		{"batched-matrix", "[10, 3, 4]", "[4, 5]", []int{10, 3, 5}, ""},
		{"vector-batched", "[4]", "[10, 4, 5]", []int{10, 5}, ""},
		{"broadcast", "[2, 1, 3, 4]", "[5, 4, 6]", []int{2, 5, 3, 6}, ""},
		{"broadcast-ones", "[1, 7, 1, 2, 3]", "[1, 4, 3, 2]", []int{1, 7, 4, 2, 2}, ""},
		{"rank-8", "[1, 1, 1, 1, 1, 1, 2, 3]", "[3]", []int{1, 1, 1, 1, 1, 1, 2}, ""},
		{"dot-mismatch", "[3]", "[4]", nil, "B_shape"},
		{"inner-mismatch", "[2, 3]", "[2, 3]", nil, "B_shape"},
		{"batch-mismatch", "[2, 3, 4]", "[5, 4, 6]", nil, "B_shape[0]"},
		{"rank-9", "[3]", "[1, 1, 1, 1, 1, 1, 1, 3, 2]", nil, "B_shape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := `{"op_id": 1, "A_shape": ` + tt.a + `, "B_shape": ` + tt.b + `, "dtype": "float32"}`
			checkShapeRule(t, deviceserver.OpMatmul, js, tt.want, tt.wantField)
		})
	}
}

// Output sizes worked out by hand with floor((H + 2p - d(k-1) - 1)/s) + 1.
func TestConv2DShapeRules(t *testing.T) {
	tests := []struct {
		name      string
		params    string // the JSON keys after the shapes
		in, w     string
		want      []int
		wantField string
	}{
		{"valid", "", "[1, 3, 32, 32]", "[16, 3, 3, 3]", []int{1, 16, 30, 30}, ""},
		{"same", `, "padding": 1`, "[1, 3, 32, 32]", "[16, 3, 3, 3]", []int{1, 16, 32, 32}, ""},
		{"stride2", `, "padding": 1, "stride": 2`, "[1, 3, 32, 32]", "[16, 3, 3, 3]", []int{1, 16, 16, 16}, ""},
		{"dilation2", `, "dilation": 2`, "[1, 3, 32, 32]", "[16, 3, 3, 3]", []int{1, 16, 28, 28}, ""},
		{"groups", `, "groups": 3`, "[2, 3, 8, 8]", "[6, 1, 3, 3]", []int{2, 6, 6, 6}, ""},
		{"asymmetric", `, "stride": [1, 2], "padding": [0, 1]`, "[1, 1, 5, 7]", "[1, 1, 3, 3]", []int{1, 1, 3, 4}, ""},
		{"kernel-fills-padded", `, "padding": 1`, "[1, 1, 3, 3]", "[1, 1, 5, 5]", []int{1, 1, 1, 1}, ""},
		{"kernel-too-big", "", "[1, 1, 3, 3]", "[1, 1, 4, 3]", nil, "weight_shape[2]"},
		{"dilation-too-big", `, "dilation": [1, 2]`, "[1, 1, 3, 3]", "[1, 1, 3, 3]", nil, "weight_shape[3]"},
		{"groups-not-dividing-C", `, "groups": 2`, "[1, 3, 8, 8]", "[4, 1, 3, 3]", nil, "groups"},
		{"groups-not-dividing-O", `, "groups": 2`, "[1, 4, 8, 8]", "[3, 2, 3, 3]", nil, "groups"},
		{"channels-mismatch", "", "[1, 3, 8, 8]", "[4, 2, 3, 3]", nil, "weight_shape[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			js := `{"op_id": 1, "input_shape": ` + tt.in + `, "weight_shape": ` + tt.w + tt.params + `, "dtype": "float32"}`
			checkShapeRule(t, deviceserver.OpConv, js, tt.want, tt.wantField)
		})
	}
}

// checkShapeRule parses js as an op of type op and checks that it plans to output shape
// want, or, if wantField is set, that it is a bad_field error naming wantField.
func checkShapeRule(t *testing.T, op deviceserver.OpType, js string, want []int, wantField string) {
	t.Helper()
	p := new(plan)
	fe := parseJSON(op, []byte(js), 1<<30, p)
	if wantField != "" {
		require.NotNil(t, fe)
		assert.Equal(t, KindField, fe.Kind, fe.Error())
		assert.Equal(t, wantField, fe.Field, fe.Error())
		return
	}
	require.Nil(t, fe, "%v", fe)
	assert.Equal(t, want, p.outShape)
	require.NotNil(t, p.op.Plan, "the plan travels with the op to layer 2")
	assert.Equal(t, want, p.op.Plan.OutShape())
}

func TestParseJSON(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name      string
		op        byte
		js        string
		max       int64
		wantKind  ErrorKind
		wantField string
		wantOut   []int
	}{
		{"gemm", 1, gemmJSONFor(1, 4, 16, 8), gib, 0, "", []int{4, 16}},
		{"gemm-extra-field-ignored", 1, `{"op_id":1,"M":1,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32","device":"sst0"}`, gib, 0, "", []int{1, 1}},
		{"gemm-missing-K", 1, `{"op_id":1,"M":1,"N":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindField, "K", nil},
		{"gemm-missing-op_id", 1, `{"M":1,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindField, "op_id", nil},
		{"gemm-missing-dtype", 1, `{"op_id":1,"M":1,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1]}`, gib, KindField, "dtype", nil},
		{"gemm-null", 1, `null`, gib, KindField, "op_id", nil},
		{"gemm-zero", 1, gemmJSONFor(1, 0, 16, 8), gib, KindField, "M", nil},
		{"gemm-negative", 1, gemmJSONFor(1, 4, -16, 8), gib, KindField, "N", nil},
		{"gemm-over-maxdim", 1, `{"op_id":1,"M":4294967296,"N":1,"K":1,"A_shape":[4294967296,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindLimit, "M", nil},
		{"gemm-dim-2^64", 1, `{"op_id":1,"M":18446744073709551616,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindLimit, "M", nil},
		{"gemm-shape-dim-2^63", 1, `{"op_id":1,"M":1,"N":1,"K":1,"A_shape":[1,9223372036854775808],"B_shape":[1,1],"dtype":"float32"}`, gib, KindLimit, "A_shape", nil},
		{"gemm-op_id-below-int64", 1, `{"op_id":-9223372036854775809,"M":1,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindLimit, "op_id", nil},
		{"gemm-float-dim-1e30", 1, `{"op_id":1,"M":1e30,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float32"}`, gib, KindJSON, "M", nil},
		{"gemm-overflow", 1, gemmJSONFor(1, 2147483647, 2147483647, 2147483647), gib, KindLimit, "A", nil},
		{"gemm-over-budget", 1, gemmJSONFor(1, 256, 256, 256), 3*256*256*4 - 4, KindLimit, "output", nil},
		{"gemm-at-budget", 1, gemmJSONFor(1, 256, 256, 256), 3 * 256 * 256 * 4, 0, "", []int{256, 256}},
		{"gemm-A_shape-disagrees", 1, `{"op_id":1,"M":2,"N":3,"K":4,"A_shape":[4,2],"B_shape":[4,3],"dtype":"float32"}`, gib, KindField, "A_shape", nil},
		{"gemm-B_shape-rank", 1, `{"op_id":1,"M":2,"N":3,"K":4,"A_shape":[2,4],"B_shape":[4,3,1],"dtype":"float32"}`, gib, KindField, "B_shape", nil},
		{"gemm-float-dim", 1, `{"op_id":1,"M":2.0,"N":3,"K":4,"A_shape":[2,4],"B_shape":[4,3],"dtype":"float32"}`, gib, KindJSON, "M", nil},
		{"gemm-string-dim", 1, `{"op_id":1,"M":"2","N":3,"K":4,"A_shape":[2,4],"B_shape":[4,3],"dtype":"float32"}`, gib, KindJSON, "M", nil},
		{"gemm-dtype", 1, `{"op_id":1,"M":1,"N":1,"K":1,"A_shape":[1,1],"B_shape":[1,1],"dtype":"float16"}`, gib, KindDType, "dtype", nil},
		{"gemm-trailing", 1, gemmJSONFor(1, 1, 1, 1) + ` {}`, gib, KindJSON, "json", nil},
		{"gemm-empty", 1, ``, gib, KindJSON, "json", nil},
		{"matmul", 3, `{"op_id":2,"A_shape":[2,1,3,4],"B_shape":[5,4,6],"dtype":"float32"}`, gib, 0, "", []int{2, 5, 3, 6}},
		{"matmul-dot", 3, `{"op_id":2,"A_shape":[3],"B_shape":[3],"dtype":"float32"}`, gib, 0, "", []int{}},
		{"matmul-unknown-field", 3, `{"op_id":2,"A_shape":[3],"B_shape":[3],"dtype":"float32","alpha":2}`, gib, KindJSON, "json", nil},
		{"matmul-rank0", 3, `{"op_id":2,"A_shape":[],"B_shape":[3],"dtype":"float32"}`, gib, KindField, "A_shape", nil},
		{"matmul-rank9", 3, `{"op_id":2,"A_shape":[1,1,1,1,1,1,1,2,3],"B_shape":[3],"dtype":"float32"}`, gib, KindField, "A_shape", nil},
		{"matmul-zero-dim", 3, `{"op_id":2,"A_shape":[2,0],"B_shape":[0],"dtype":"float32"}`, gib, KindField, "A_shape[1]", nil},
		{"matmul-no-broadcast", 3, `{"op_id":2,"A_shape":[2,3,4],"B_shape":[5,4,6],"dtype":"float32"}`, gib, KindField, "B_shape[0]", nil},
		{"conv-defaults", 2, `{"op_id":3,"input_shape":[1,3,32,32],"weight_shape":[16,3,3,3],"dtype":"float32"}`, gib, 0, "", []int{1, 16, 30, 30}},
		{"conv-pairs", 2, `{"op_id":3,"input_shape":[1,1,5,7],"weight_shape":[1,1,3,3],"stride":[1,2],"padding":[0,1],"dilation":1,"groups":1,"dtype":"float32"}`, gib, 0, "", []int{1, 1, 3, 4}},
		{"conv-stride-zero", 2, `{"op_id":3,"input_shape":[1,3,8,8],"weight_shape":[4,3,3,3],"stride":0,"dtype":"float32"}`, gib, KindField, "stride", nil},
		{"conv-padding-negative", 2, `{"op_id":3,"input_shape":[1,3,8,8],"weight_shape":[4,3,3,3],"padding":[0,-1],"dtype":"float32"}`, gib, KindField, "padding", nil},
		{"conv-stride-three", 2, `{"op_id":3,"input_shape":[1,3,8,8],"weight_shape":[4,3,3,3],"stride":[1,2,3],"dtype":"float32"}`, gib, KindJSON, "json", nil},
		{"conv-padding-string", 2, `{"op_id":3,"input_shape":[1,3,8,8],"weight_shape":[4,3,3,3],"padding":"same","dtype":"float32"}`, gib, KindJSON, "json", nil},
		{"conv-groups-zero", 2, `{"op_id":3,"input_shape":[1,3,8,8],"weight_shape":[4,3,3,3],"groups":0,"dtype":"float32"}`, gib, KindField, "groups", nil},
		{"conv-rank", 2, `{"op_id":3,"input_shape":[3,8,8],"weight_shape":[4,3,3,3],"dtype":"float32"}`, gib, KindField, "input_shape", nil},
		{"conv-huge-padding", 2, `{"op_id":3,"input_shape":[1,1,1,1],"weight_shape":[1,1,1,1],"padding":2147483647,"dtype":"float32"}`, gib, KindLimit, "output", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := new(plan)
			fe := parseJSON(opTypeOf(tt.op), []byte(tt.js), tt.max, p)
			if tt.wantOut != nil {
				require.Nil(t, fe, "%v", fe)
				assert.Equal(t, tt.wantOut, p.outShape)
				return
			}
			require.NotNil(t, fe)
			assert.Equal(t, tt.wantKind, fe.Kind, fe.Error())
			assert.Equal(t, tt.wantField, fe.Field, fe.Error())
		})
	}
}

// The shape rules and the size limit are separate checks: an op far above any tensor limit
// (LLaMA-70B's MLP for 8192 tokens, 2.4 GB of output) plans, and only the size check
// refuses it, naming the first tensor that does not fit.
func TestShapesPlanWithoutTheSizeLimit(t *testing.T) {
	m, n, k := int64(8192), int64(28672), int64(8192)
	v := gemmJSON{OpID: new(int64), M: &m, N: &n, K: &k, AShape: []int64{m, k}, BShape: []int64{k, n}}
	p := new(plan)
	fe := p.planGEMM(&v)
	require.Nil(t, fe, "%v", fe)
	assert.Equal(t, []int{8192, 28672}, p.outShape)
	assert.Equal(t, [2]int64{m * k, k * n}, p.inputs)
	flops, err := p.op.Plan.FLOPs()
	require.NoError(t, err)
	assert.Equal(t, uint64(2*m*n*k), flops)

	fe = p.size(DefaultMaxOpBytes)
	require.NotNil(t, fe)
	assert.Equal(t, KindLimit, fe.Kind)
	assert.Equal(t, "B", fe.Field, fe.Error())
}
