package perfmodel

import "fmt"

// Ceilings are a model's two roofline ceilings: its peak compute rate and the bytes its
// memory system moves per cycle (BandwidthGBps / ClockGHz).
type Ceilings struct {
	PeakFLOPsPerCycle float64
	BytesPerCycle     float64
}

// ceilinged is implemented by every model New returns.
type ceilinged interface {
	ceilings() Ceilings
}

// CeilingsOf returns the ceilings of a model built by New.
func CeilingsOf(m Model) (Ceilings, error) {
	c, ok := m.(ceilinged)
	if !ok {
		return Ceilings{}, fmt.Errorf("perfmodel: %T has no ceilings", m)
	}
	return c.ceilings(), nil
}

// Utilization is the achieved fraction of the peak compute rate: flops / (max(cycles, 1) ·
// peak), clamped to [0, 1]; 0 when peak is not positive. It is Estimate.Utilization, and
// applies as well to the sums of an op's GEMMs.
func Utilization(flops, cycles uint64, peakFLOPsPerCycle float64) float64 {
	if !(peakFLOPsPerCycle > 0) {
		return 0
	}
	u := float64(flops) / (float64(max(cycles, 1)) * peakFLOPsPerCycle)
	return min(max(u, 0), 1)
}

func (r rates) bytesPerCycle() float64 { return float64(r.bandwidthMBps) / float64(r.clockMHz) }

func (m roofline) ceilings() Ceilings {
	return Ceilings{PeakFLOPsPerCycle: float64(m.flopsPerCycle), BytesPerCycle: m.rates.bytesPerCycle()}
}

func (m tiled) ceilings() Ceilings {
	return Ceilings{PeakFLOPsPerCycle: m.peak, BytesPerCycle: m.rates.bytesPerCycle()}
}

func (m systolic) ceilings() Ceilings {
	return Ceilings{PeakFLOPsPerCycle: m.peak, BytesPerCycle: m.rates.bytesPerCycle()}
}

// ceilings of the gpu model are those of float32 (FP32 SIMT), the only dtype sstemu serves.
func (m gpu) ceilings() Ceilings {
	return Ceilings{PeakFLOPsPerCycle: float64(m.sms) * float64(m.fp32Rate), BytesPerCycle: m.rates.bytesPerCycle()}
}

func (m systolicPaper) ceilings() Ceilings {
	return Ceilings{PeakFLOPsPerCycle: m.peak, BytesPerCycle: m.rates.bytesPerCycle()}
}
