package sstcomponent

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
)

// DefaultClockHz is the component's default clock, the reference's "1GHz".
const DefaultClockHz = 1e9

// psPerSecond is SST's default time base: simulated time is counted in picoseconds.
const psPerSecond = 1e12

// simClock is the device's simulated clock in cycles. It advances only by the cycles of
// the work the device does, never by wall time, and saturates instead of wrapping.
type simClock struct {
	now atomic.Uint64
}

// advance occupies the device for cycles and returns the cycle at which that work starts.
func (c *simClock) advance(cycles uint64) uint64 {
	for {
		start := c.now.Load()
		if c.now.CompareAndSwap(start, satAdd(start, cycles)) {
			return start
		}
	}
}

// load returns the current cycle.
func (c *simClock) load() uint64 { return c.now.Load() }

// FrequencyError says why a clock frequency string was rejected.
type FrequencyError struct {
	Input  string
	Reason string
}

// Error implements error.
func (e *FrequencyError) Error() string {
	return fmt.Sprintf("sstcomponent: clock %q: %s", e.Input, e.Reason)
}

// frequencyUnits maps the lower-cased unit suffixes ParseFrequency accepts to Hz.
var frequencyUnits = []struct {
	suffix, name string
	hz           float64
}{{"ghz", "GHz", 1e9}, {"mhz", "MHz", 1e6}, {"khz", "kHz", 1e3}, {"hz", "Hz", 1}}

// ParseFrequency parses a clock frequency as SST parameters write it: a positive number and
// a unit Hz, kHz, MHz or GHz (any letter case, optional space), e.g. "1GHz", "1.41 GHz",
// "500MHz". It returns the frequency in Hz.
func ParseFrequency(s string) (float64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range frequencyUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil {
			return 0, &FrequencyError{Input: s, Reason: "want a number followed by Hz, kHz, MHz or GHz"}
		}
		hz := v * u.hz
		if math.IsNaN(hz) || math.IsInf(hz, 0) || hz <= 0 {
			return 0, &FrequencyError{Input: s, Reason: "must be a positive, finite frequency"}
		}
		return hz, nil
	}
	return 0, &FrequencyError{Input: s, Reason: "missing unit: want Hz, kHz, MHz or GHz"}
}

// FormatFrequency writes hz with the largest unit that keeps the number at least 1,
// e.g. 2e9 → "2GHz", 1.41e9 → "1.41GHz".
func FormatFrequency(hz float64) string {
	for _, u := range frequencyUnits {
		if hz >= u.hz || u.hz == 1 {
			return strconv.FormatFloat(hz/u.hz, 'g', -1, 64) + u.name
		}
	}
	return ""
}

// clockPeriodPS returns the clock period in whole picoseconds (SST's default time base),
// rounded to nearest, or an error when the clock is faster than 1 THz or not positive.
func clockPeriodPS(hz float64) (uint64, error) {
	if math.IsNaN(hz) || math.IsInf(hz, 0) || hz <= 0 {
		return 0, &FrequencyError{Input: strconv.FormatFloat(hz, 'g', -1, 64) + "Hz", Reason: "must be a positive, finite frequency"}
	}
	p := math.Round(psPerSecond / hz)
	if p < 1 {
		return 0, &FrequencyError{Input: FormatFrequency(hz), Reason: "too fast: the period rounds below SST's 1 ps time base"}
	}
	if p > math.MaxUint32 {
		return 0, &FrequencyError{Input: FormatFrequency(hz), Reason: "slower than 1 cycle per 4.29 ms"}
	}
	return uint64(p), nil
}

// cyclesToPS converts cycles to picoseconds of simulated time, saturating at 2^64-1.
func cyclesToPS(cycles, periodPS uint64) uint64 { return satMul(cycles, periodPS) }

// formatPS writes a time in picoseconds as SST prints simulated time: the largest of
// ps, ns, us, ms and s that keeps the number at least 1, with exact decimals, e.g.
// 16000 → "16 ns", 1500000 → "1.5 us".
func formatPS(ps uint64) string {
	units := []struct {
		name string
		div  uint64
	}{{"s", 1e12}, {"ms", 1e9}, {"us", 1e6}, {"ns", 1e3}}
	for _, u := range units {
		if ps >= u.div {
			whole, frac := ps/u.div, ps%u.div
			if frac == 0 {
				return fmt.Sprintf("%d %s", whole, u.name)
			}
			digits := len(strconv.FormatUint(u.div, 10)) - 1
			f := strings.TrimRight(fmt.Sprintf("%0*d", digits, frac), "0")
			return fmt.Sprintf("%d.%s %s", whole, f, u.name)
		}
	}
	return fmt.Sprintf("%d ps", ps)
}
