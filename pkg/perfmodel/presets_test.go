package perfmodel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPresetsTable(t *testing.T) {
	all := Presets()
	require.NotEmpty(t, all)
	assert.Equal(t, DefaultPreset, all[0].Name, "default first")
	names := map[string]bool{}
	for _, p := range all {
		assert.False(t, names[p.Name], "duplicate %s", p.Name)
		names[p.Name] = true
		assert.NotEmpty(t, p.Description, p.Name)
		assert.NotEmpty(t, p.Source, p.Name)
		assert.Contains(t, Kinds(), p.Model, p.Name)
		for _, kind := range Kinds() {
			_, err := New(kind, p.Params)
			assert.NoError(t, err, "%s as %s", p.Name, kind)
		}
		got, err := LookupPreset(p.Name)
		require.NoError(t, err)
		assert.Equal(t, p, got)
	}
	for _, want := range []string{"a100-tutorial", "h100-sxm", "tpu-128", "tiled-256"} {
		assert.True(t, names[want], want)
	}
}

func TestPresetValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		model string
		check func(t *testing.T, p Params)
	}{
		{"a100-tutorial", KindRoofline, func(t *testing.T, p Params) {
			assert.Equal(t, uint64(64), p.FLOPsPerCycle)
			assert.Equal(t, 900.0, p.BandwidthGBps)
			assert.Equal(t, 1.41, p.ClockGHz)
		}},
		{"h100-sxm", KindRoofline, func(t *testing.T, p Params) {
			// 132 SMs · 128 FP32 lanes · 2 FLOP = 33792 FLOP/cycle; at 1.98 GHz that is
			// 66.9 TFLOPS, the datasheet's FP32 figure.
			assert.Equal(t, uint64(33792), p.FLOPsPerCycle)
			assert.InDelta(t, 66.9e12, float64(p.FLOPsPerCycle)*p.ClockGHz*1e9, 0.05e12)
			assert.Equal(t, 3350.0, p.BandwidthGBps)
			// ceil(2·256³/33792) = ceil(992.97) = 993.
			assert.Equal(t, uint64(993), p.CyclesPerTile)
		}},
		{"tpu-128", KindSystolic, func(t *testing.T, p Params) {
			assert.Equal(t, [2]uint64{128, 128}, [2]uint64{p.ArrayRows, p.ArrayCols})
			assert.Equal(t, WeightStationary, p.Dataflow)
			assert.Equal(t, 0.7, p.ClockGHz)
			assert.Equal(t, 350.0, p.BandwidthGBps)
			assert.Equal(t, uint64(2*128*128), p.FLOPsPerCycle)
			assert.Equal(t, uint64(128), p.CyclesPerTile) // 2·128³/32768
		}},
		{"tiled-256", KindTiled, func(t *testing.T, p Params) {
			assert.Equal(t, [3]uint64{256, 256, 256}, [3]uint64{p.TileM, p.TileN, p.TileK})
			assert.Equal(t, uint64(524288), p.CyclesPerTile) // 2·256³/64
			assert.Equal(t, 900.0, p.BandwidthGBps)
			assert.Equal(t, 1.41, p.ClockGHz)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := LookupPreset(tc.name)
			require.NoError(t, err)
			assert.Equal(t, tc.model, p.Model)
			tc.check(t, p.Params)
		})
	}
}

func TestPresetsAreCopies(t *testing.T) {
	all := Presets()
	all[0].Params.FLOPsPerCycle = 1
	all[0].Name = "changed"
	p, err := LookupPreset(DefaultPreset)
	require.NoError(t, err)
	p.Params.ClockGHz = 2
	again, err := LookupPreset(DefaultPreset)
	require.NoError(t, err)
	assert.Equal(t, uint64(64), again.Params.FLOPsPerCycle)
	assert.Equal(t, 1.41, again.Params.ClockGHz)
	assert.Equal(t, DefaultPreset, Presets()[0].Name)
}

func TestLookupUnknownPreset(t *testing.T) {
	_, err := LookupPreset("a100")
	require.ErrorIs(t, err, ErrUnknownPreset)
	assert.Contains(t, err.Error(), "a100-tutorial", "lists the known names")
	_, err = FromPreset("nope")
	require.ErrorIs(t, err, ErrUnknownPreset)
}

func TestFromPreset(t *testing.T) {
	for _, tc := range []struct{ preset, kind string }{
		{DefaultPreset, KindRoofline}, {"h100-sxm", KindRoofline}, {"tpu-128", KindSystolic}, {"tiled-256", KindTiled},
	} {
		m, err := FromPreset(tc.preset)
		require.NoError(t, err)
		assert.Equal(t, tc.kind, m.Name(), tc.preset)
	}
	// The default model answers the small op 4×16×8 (docs/performance.md §Targets) as the reference does: 16 cycles.
	m, err := FromPreset(DefaultPreset)
	require.NoError(t, err)
	e, err := m.Estimate(Op{M: 4, N: 16, K: 8, DtypeSize: 4})
	require.NoError(t, err)
	assert.Equal(t, uint64(16), e.Cycles)
}

// Overriding one field of a preset changes the estimate as the formula says.
func TestPresetOverride(t *testing.T) {
	p := presetParams(t, DefaultPreset)
	require.NoError(t, p.Set(ParamFLOPsPerCycle, 128))
	m := mustNew(t, KindRoofline, p)
	e, err := m.Estimate(Op{M: 1024, N: 1024, K: 1024, DtypeSize: 4})
	require.NoError(t, err)
	assert.Equal(t, uint64(1<<31/128), e.ComputeCycles) // 2^31 FLOPs at 128 FLOP/cycle = 2^24
}
