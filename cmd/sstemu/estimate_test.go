package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/perfmodel"
)

// runApp runs the sstemu command line with args and returns its standard output.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	app := newApp()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(append([]string{"sstemu"}, args...))
	return out.String(), err
}

func TestEstimateMatchesThePerfModel(t *testing.T) {
	out, err := runApp(t, "estimate", "--json", "--preset", "tpu-128", "--clock", "2GHz", "1024x1024x1024", "4x16x8")
	require.NoError(t, err)
	var recs []struct {
		Op          string  `json:"op"`
		Timed       bool    `json:"timed"`
		Model       string  `json:"model"`
		Preset      string  `json:"preset"`
		ClockHz     float64 `json:"clock_hz"`
		Cycles      uint64  `json:"cycles"`
		Compute     uint64  `json:"compute_cycles"`
		Memory      uint64  `json:"memory_cycles"`
		Bytes       uint64  `json:"memory_bytes"`
		FLOPs       uint64  `json:"flops"`
		Bound       string  `json:"bound"`
		Utilization float64 `json:"utilization"`
		SimNS       float64 `json:"sim_ns"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &recs), out)
	require.Len(t, recs, 2)
	m, err := perfmodel.FromPreset("tpu-128")
	require.NoError(t, err)
	for i, op := range []perfmodel.Op{{M: 1024, N: 1024, K: 1024, DtypeSize: 4}, {M: 4, N: 16, K: 8, DtypeSize: 4}} {
		e, err := m.Estimate(op)
		require.NoError(t, err)
		r := recs[i]
		assert.Equal(t, "gemm", r.Op)
		assert.True(t, r.Timed)
		assert.Equal(t, "systolic", r.Model)
		assert.Equal(t, "tpu-128", r.Preset)
		assert.Equal(t, 2e9, r.ClockHz)
		assert.Equal(t, e.Cycles, r.Cycles)
		assert.Equal(t, e.ComputeCycles, r.Compute)
		assert.Equal(t, e.MemoryCycles, r.Memory)
		assert.Equal(t, e.MemoryBytes, r.Bytes)
		assert.Equal(t, e.FLOPs, r.FLOPs)
		assert.Equal(t, e.Bound.String(), r.Bound)
		assert.InDelta(t, e.Utilization, r.Utilization, 1e-12)
		assert.InDelta(t, float64(e.Cycles)/2, r.SimNS, 1e-9)
	}

	out, err = runApp(t, "estimate", "1024x1024x1024")
	require.NoError(t, err)
	assert.Contains(t, out, "roofline (preset a100-tutorial)")
	assert.Contains(t, out, "33554432", "2·1024³ FLOPs at 64 FLOP/cycle")
	assert.Contains(t, out, "clock 1.41GHz", "the preset's model clock")
	assert.Contains(t, out, "23.8 ms", "33554432 cycles at 1.41 GHz")
}

// A leading fourth size is a batch count, answered with perfmodel.EstimateBatched.
func TestEstimateBatched(t *testing.T) {
	for _, preset := range []string{"h100-sxm", "tpu-128"} {
		t.Run(preset, func(t *testing.T) {
			out, err := runApp(t, "estimate", "--json", "--preset", preset, "12x64x48x32")
			require.NoError(t, err)
			var recs []struct {
				Op     string `json:"op"`
				Cycles uint64 `json:"cycles"`
				FLOPs  uint64 `json:"flops"`
				GEMMs  uint64 `json:"gemms"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &recs), out)
			require.Len(t, recs, 1)
			m, err := perfmodel.FromPreset(preset)
			require.NoError(t, err)
			e, err := perfmodel.EstimateBatched(m, perfmodel.Op{M: 64, N: 48, K: 32, DtypeSize: 4}, 12)
			require.NoError(t, err)
			assert.Equal(t, "matmul", recs[0].Op)
			assert.Equal(t, e.Cycles, recs[0].Cycles)
			assert.Equal(t, 12*2*64*48*32, int(recs[0].FLOPs))
			assert.Equal(t, uint64(12), recs[0].GEMMs)
		})
	}
}

func TestEstimateBadInput(t *testing.T) {
	for _, args := range [][]string{{"estimate"}, {"estimate", "4x16"}, {"estimate", "0x1x1"}, {"estimate", "0x1x1x1"},
		{"estimate", "1x1x1x1x1"}, {"estimate", "--preset", "nope", "1x1x1"}} {
		_, err := runApp(t, args...)
		assert.Error(t, err, "%v", args)
	}
}

// TestEstimateClockIsTheModelClock: without --clock, cycles become time at the modelled
// device's clock (the preset's, or --model-clock); --clock still overrides it.
func TestEstimateClockIsTheModelClock(t *testing.T) {
	tests := []struct {
		name string
		args []string
		hz   float64
	}{
		{"h100 gpu preset", []string{"--preset", "h100-sxm", "--model", "gpu"}, 1.98e9},
		{"tpu preset", []string{"--preset", "tpu-128"}, 0.7e9},
		{"default preset", nil, 1.41e9},
		{"model clock", []string{"--preset", "tpu-128", "--model-clock", "1.2GHz"}, 1.2e9},
		{"explicit clock", []string{"--preset", "h100-sxm", "--model", "gpu", "--clock", "1GHz"}, 1e9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append(append([]string{"estimate", "--json"}, tt.args...), "1024x1024x1024")
			out, err := runApp(t, args...)
			require.NoError(t, err, out)
			var recs []struct {
				ClockHz float64 `json:"clock_hz"`
				Cycles  uint64  `json:"cycles"`
				SimNS   float64 `json:"sim_ns"`
			}
			require.NoError(t, json.Unmarshal([]byte(out), &recs), out)
			require.Len(t, recs, 1)
			assert.InDelta(t, tt.hz, recs[0].ClockHz, 1)
			assert.InDelta(t, float64(recs[0].Cycles)/tt.hz*1e9, recs[0].SimNS, 1, "sim_ns = cycles at the clock")
		})
	}
}

// TestEstimateRefusesWhatTIMERefuses: estimate plans its shapes with TIME's rule.
func TestEstimateRefusesWhatTIMERefuses(t *testing.T) {
	for shape, want := range map[string]string{
		"2147483648x1x1":          "M: dimension 2147483648 exceeds 2147483647",
		"1x2147483648x1":          "dimension 2147483648 exceeds 2147483647",
		"70000x70000x70000x70000": "overflow",
		"8589934592x1x1x1":        "exceeds",
	} {
		_, err := runApp(t, "estimate", shape)
		require.Error(t, err, shape)
		assert.ErrorContains(t, err, want, shape)
	}
	_, err := runApp(t, "estimate", "2147483647x1x1")
	assert.NoError(t, err, "MaxDim itself is timeable")
}

func TestFormatSimTime(t *testing.T) {
	for ns, want := range map[float64]string{
		12: "12 ns", 1500: "1.5 µs", 23.8e6: "23.8 ms", 59e9: "59 s",
		90e9: "1.5 min", 31250e9: "8.681 h", 7200e9: "2 h",
	} {
		assert.Equal(t, want, formatSimTime(ns), "%g ns", ns)
	}
}
