package perfmodel

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCeilingsOfEveryPreset(t *testing.T) {
	want := map[string]Ceilings{
		"a100-tutorial": {PeakFLOPsPerCycle: 64, BytesPerCycle: 900.0 / 1.41},
		"h100-sxm":      {PeakFLOPsPerCycle: 33792, BytesPerCycle: 3350.0 / 1.98},
		"tpu-128":       {PeakFLOPsPerCycle: 2 * 128 * 128, BytesPerCycle: 350.0 / 0.7},
		"tiled-256":     {PeakFLOPsPerCycle: 64, BytesPerCycle: 900.0 / 1.41},
	}
	for _, p := range Presets() {
		t.Run(p.Name, func(t *testing.T) {
			m, err := New(p.Model, p.Params)
			require.NoError(t, err)
			c, err := CeilingsOf(m)
			require.NoError(t, err)
			if w, ok := want[p.Name]; ok {
				assert.InDelta(t, w.PeakFLOPsPerCycle, c.PeakFLOPsPerCycle, 1e-9)
				assert.InDelta(t, w.BytesPerCycle, c.BytesPerCycle, 1e-9)
			}
			assert.InDelta(t, p.Params.BandwidthGBps/p.Params.ClockGHz, c.BytesPerCycle, 1e-9)
			// The peak is the one Estimate's utilization is measured against (for float32).
			e, err := m.Estimate(Op{M: 512, N: 512, K: 512, DtypeSize: 4})
			require.NoError(t, err)
			assert.InDelta(t, Utilization(e.FLOPs, e.Cycles, c.PeakFLOPsPerCycle), e.Utilization, 1e-12)
		})
	}
	assert.Zero(t, Utilization(10, 1, 0))
	assert.Equal(t, 1.0, Utilization(1000, 1, 1))
}

// Every kind New builds has ceilings: the server describes whichever model it runs.
func TestCeilingsOfEveryKind(t *testing.T) {
	p, err := LookupPreset(DefaultPreset)
	require.NoError(t, err)
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			m, err := New(kind, p.Params)
			require.NoError(t, err)
			c, err := CeilingsOf(m)
			require.NoError(t, err)
			assert.Positive(t, c.PeakFLOPsPerCycle)
			assert.InDelta(t, p.Params.BandwidthGBps/p.Params.ClockGHz, c.BytesPerCycle, 1e-9)
			e, err := m.Estimate(Op{M: 300, N: 200, K: 100, DtypeSize: 4})
			require.NoError(t, err)
			assert.InDelta(t, Utilization(e.FLOPs, e.Cycles, c.PeakFLOPsPerCycle), e.Utilization, 1e-12)
		})
	}
}
