package sstcomponent

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFrequency(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
	}{
		{"1GHz", 1e9}, {"2GHz", 2e9}, {"1.41 GHz", 1.41e9}, {"500MHz", 5e8}, {"100kHz", 1e5},
		{"1000Hz", 1000}, {"1ghz", 1e9}, {" 3 MHZ ", 3e6}, {"0.5GHz", 5e8},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFrequency(tt.in)
			require.NoError(t, err)
			assert.InEpsilon(t, tt.want, got, 1e-12)
		})
	}
	for _, in := range []string{"", "GHz", "1", "1 ns", "-1GHz", "0Hz", "abcHz", "NaNGHz", "infGHz", "1e400Hz"} {
		t.Run("reject "+in, func(t *testing.T) {
			_, err := ParseFrequency(in)
			var fe *FrequencyError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, in, fe.Input)
		})
	}
}

func TestFormatFrequency(t *testing.T) {
	for hz, want := range map[float64]string{1e9: "1GHz", 1.41e9: "1.41GHz", 2.5e6: "2.5MHz", 1e3: "1kHz", 999: "999Hz"} {
		assert.Equal(t, want, FormatFrequency(hz))
	}
}

func TestClockPeriod(t *testing.T) {
	for hz, want := range map[float64]uint64{1e9: 1000, 2e9: 500, 1.41e9: 709, 1e12: 1, 1e6: 1_000_000} {
		got, err := clockPeriodPS(hz)
		require.NoError(t, err)
		assert.Equal(t, want, got, "%g Hz", hz)
	}
	for _, hz := range []float64{0, -1, 3e12, math.Inf(1), math.NaN(), 100} {
		_, err := clockPeriodPS(hz)
		assert.Error(t, err, "%g Hz", hz)
	}
	assert.Equal(t, uint64(math.MaxUint64), cyclesToPS(math.MaxUint64/2, 1000))
}

func TestFormatPS(t *testing.T) {
	for ps, want := range map[uint64]string{
		0: "0 ps", 999: "999 ps", 1000: "1 ns", 16000: "16 ns", 1_500_000: "1.5 us",
		1_234_567: "1.234567 us", 210_500: "210.5 ns", 1e12: "1 s", 3_000_000_001: "3.000000001 ms",
	} {
		assert.Equal(t, want, formatPS(ps))
	}
}

func TestMemoryPages(t *testing.T) {
	var m memory
	m.write(MemoryPageSize-2, []byte{1, 2, 3, 4})
	assert.Equal(t, uint64(2*MemoryPageSize), m.resident())
	got := make([]byte, 6)
	m.read(MemoryPageSize-3, got)
	assert.Equal(t, []byte{0, 1, 2, 3, 4, 0}, got)
	m.reset()
	m.read(MemoryPageSize-3, got)
	assert.Equal(t, make([]byte, 6), got)
	assert.Zero(t, m.resident())

	assert.True(t, inRange(0, 0x10000000))
	assert.True(t, inRange(0x10000000, 0))
	assert.False(t, inRange(0x10000000, 1))
	assert.False(t, inRange(1, 0x10000000))
	assert.False(t, inRange(math.MaxUint64, 2))
}
