package perfmodel

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDataflow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Dataflow
	}{
		{"os", OutputStationary}, {"ws", WeightStationary}, {"is", InputStationary},
		{"OS", OutputStationary}, {" Ws ", WeightStationary},
		{"output-stationary", OutputStationary}, {"Weight-Stationary", WeightStationary},
		{"input-stationary", InputStationary},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDataflow(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
	for _, bad := range []string{"", "rs", "o s", "outputstationary", "0"} {
		t.Run("bad "+bad, func(t *testing.T) {
			_, err := ParseDataflow(bad)
			require.ErrorIs(t, err, ErrUnknownDataflow)
		})
	}
	for _, d := range []Dataflow{OutputStationary, WeightStationary, InputStationary} {
		back, err := ParseDataflow(d.String())
		require.NoError(t, err)
		assert.Equal(t, d, back)
	}
	assert.Equal(t, []string{"os", "ws", "is", "Dataflow(3)"},
		[]string{OutputStationary.String(), WeightStationary.String(), InputStationary.String(), Dataflow(3).String()})
	assert.Equal(t, []uint8{0, 1, 2}, []uint8{uint8(OutputStationary), uint8(WeightStationary), uint8(InputStationary)})
}

func TestBoundString(t *testing.T) {
	assert.Equal(t, "compute", BoundCompute.String())
	assert.Equal(t, "memory", BoundMemory.String())
	assert.Equal(t, "Bound(2)", Bound(2).String())
}

// The ids are a wire contract: their numbers must never change.
func TestParamIDNumbers(t *testing.T) {
	want := map[ParamID]uint32{
		ParamFLOPsPerCycle: 1, ParamBandwidthMBps: 2, ParamClockMHz: 3, ParamTileM: 4, ParamTileN: 5,
		ParamTileK: 6, ParamCyclesPerTile: 7, ParamArrayRows: 8, ParamArrayCols: 9, ParamDataflow: 10,
		ParamIfmapSRAMKB: 11, ParamFilterSRAMKB: 12, ParamOfmapSRAMKB: 13, ParamInterfaceBandwidth: 14,
		ParamDRAMWordsPerCycle: 15,
		ParamGPUSMs:            32, ParamGPUFP32FLOPsPerSM: 33, ParamGPUTensorFLOPsPerSM: 34, ParamGPUL2Bytes: 35,
		ParamGPUTiles: 36, ParamGPUBatchedTiles: 37, ParamGPUStageMilli: 38, ParamGPUKernelNs: 39,
	}
	for id, n := range want {
		assert.Equal(t, n, uint32(id), id.String())
	}
	assert.Len(t, ParamIDs(), len(want))
	for _, id := range ParamIDs() {
		back, err := ParseParamID(id.String())
		require.NoError(t, err)
		assert.Equal(t, id, back)
	}
	_, err := ParseParamID("bandwidth_gbps")
	require.ErrorIs(t, err, ErrUnknownParam)
	assert.Equal(t, "ParamID(0)", ParamID(0).String())
}

func TestSetEveryParam(t *testing.T) {
	for _, tc := range []struct {
		id    ParamID
		value uint64
		check func(t *testing.T, p Params)
	}{
		{ParamFLOPsPerCycle, 33792, func(t *testing.T, p Params) { assert.Equal(t, uint64(33792), p.FLOPsPerCycle) }},
		// 3350000 MB/s = 3350 GB/s; 1410 MHz = 1.41 GHz.
		{ParamBandwidthMBps, 3350000, func(t *testing.T, p Params) { assert.Equal(t, 3350.0, p.BandwidthGBps) }},
		{ParamBandwidthMBps, 1, func(t *testing.T, p Params) { assert.Equal(t, 0.001, p.BandwidthGBps) }},
		{ParamClockMHz, 1410, func(t *testing.T, p Params) { assert.Equal(t, 1.41, p.ClockGHz) }},
		{ParamClockMHz, MaxRateMilli, func(t *testing.T, p Params) { assert.Equal(t, 1099511627.776, p.ClockGHz) }},
		{ParamTileM, 128, func(t *testing.T, p Params) { assert.Equal(t, uint64(128), p.TileM) }},
		{ParamTileN, 64, func(t *testing.T, p Params) { assert.Equal(t, uint64(64), p.TileN) }},
		{ParamTileK, 32, func(t *testing.T, p Params) { assert.Equal(t, uint64(32), p.TileK) }},
		{ParamCyclesPerTile, 1 << 63, func(t *testing.T, p Params) { assert.Equal(t, uint64(1<<63), p.CyclesPerTile) }},
		{ParamArrayRows, 256, func(t *testing.T, p Params) { assert.Equal(t, uint64(256), p.ArrayRows) }},
		{ParamArrayCols, 32, func(t *testing.T, p Params) { assert.Equal(t, uint64(32), p.ArrayCols) }},
		{ParamDataflow, 0, func(t *testing.T, p Params) { assert.Equal(t, OutputStationary, p.Dataflow) }},
		{ParamDataflow, 1, func(t *testing.T, p Params) { assert.Equal(t, WeightStationary, p.Dataflow) }},
		{ParamDataflow, 2, func(t *testing.T, p Params) { assert.Equal(t, InputStationary, p.Dataflow) }},
		{ParamIfmapSRAMKB, 64, func(t *testing.T, p Params) { assert.Equal(t, uint64(64), p.IfmapSRAMKB) }},
		{ParamFilterSRAMKB, MaxSRAMKB, func(t *testing.T, p Params) { assert.Equal(t, uint64(MaxSRAMKB), p.FilterSRAMKB) }},
		{ParamOfmapSRAMKB, 1, func(t *testing.T, p Params) { assert.Equal(t, uint64(1), p.OfmapSRAMKB) }},
		{ParamInterfaceBandwidth, 1, func(t *testing.T, p Params) { assert.Equal(t, BandwidthUser, p.InterfaceBandwidth) }},
		{ParamDRAMWordsPerCycle, 10, func(t *testing.T, p Params) { assert.Equal(t, uint64(10), p.DRAMWordsPerCycle) }},
	} {
		t.Run(tc.id.String(), func(t *testing.T) {
			p := presetParams(t, DefaultPreset)
			before := p
			require.NoError(t, p.Set(tc.id, tc.value))
			tc.check(t, p)
			got, err := p.Get(tc.id)
			require.NoError(t, err)
			assert.Equal(t, tc.value, got, "Get returns what Set took")
			// Only the one field changed: setting it back restores the original.
			orig, err := before.Get(tc.id)
			require.NoError(t, err)
			require.NoError(t, p.Set(tc.id, orig))
			assert.Equal(t, before, p)
		})
	}
}

func TestSetRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		id    ParamID
		value uint64
		err   error
	}{
		{"reserved id 0", 0, 1, ErrUnknownParam},
		{"unused id 16", ParamDRAMWordsPerCycle + 1, 1, ErrUnknownParam},
		{"id past the end", ParamGPUKernelNs + 1, 1, ErrUnknownParam},
		{"interface bandwidth 2", ParamInterfaceBandwidth, 2, ErrInvalidParam},
		{"SRAM above max", ParamOfmapSRAMKB, MaxSRAMKB + 1, ErrInvalidParam},
		{"DRAM words above max", ParamDRAMWordsPerCycle, MaxDRAMWordsPerCycle + 1, ErrInvalidParam},
		{"dataflow 3", ParamDataflow, 3, ErrInvalidParam},
		{"dataflow huge", ParamDataflow, 1 << 40, ErrInvalidParam},
		{"bandwidth above max", ParamBandwidthMBps, MaxRateMilli + 1, ErrInvalidParam},
		{"clock above max", ParamClockMHz, math.MaxUint64, ErrInvalidParam},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := presetParams(t, DefaultPreset)
			before := p
			require.ErrorIs(t, p.Set(tc.id, tc.value), tc.err)
			assert.Equal(t, before, p, "unchanged on error")
		})
	}
	for _, id := range ParamIDs() {
		switch id {
		case ParamDataflow, ParamInterfaceBandwidth, ParamIfmapSRAMKB, ParamFilterSRAMKB, ParamOfmapSRAMKB:
			continue // zero is valid: os, CALC, never spills
		}
		t.Run("zero "+id.String(), func(t *testing.T) {
			p := presetParams(t, DefaultPreset)
			err := p.Set(id, 0)
			require.ErrorIs(t, err, ErrInvalidParam)
			var pe *InvalidParamError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, id.String(), pe.Param)
			assert.Equal(t, "0", pe.Value)
		})
	}
	var p Params
	_, err := p.Get(0)
	require.ErrorIs(t, err, ErrUnknownParam)
}

func TestRateResolution(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want uint64
		ok   bool
	}{
		{1.41, 1410, true},
		{900, 900000, true},
		{0.001, 1, true},
		{0.7, 700, true},
		{1.98, 1980, true},
		{1099511627.776, MaxRateMilli, true},
		{1.4105, 0, false},         // half a MHz
		{0.0004, 0, false},         // rounds to 0 MHz
		{1099511627.777, 0, false}, // one past the maximum
		{0, 0, false},
		{-1.41, 0, false},
		{math.NaN(), 0, false},
		{math.Inf(1), 0, false},
	} {
		got, err := toMilli("", "ClockGHz", tc.v)
		if !tc.ok {
			require.ErrorIs(t, err, ErrInvalidParam, "%v", tc.v)
			continue
		}
		require.NoError(t, err, "%v", tc.v)
		assert.Equal(t, tc.want, got, "%v", tc.v)
	}
	// Every integer rate round-trips through the float64 field exactly.
	for _, v := range []uint64{1, 7, 999, 1410, 123456789, 987654321012, MaxRateMilli - 1, MaxRateMilli} {
		var p Params
		require.NoError(t, p.Set(ParamBandwidthMBps, v))
		got, err := p.Get(ParamBandwidthMBps)
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
}
