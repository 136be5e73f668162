package optrace

import "github.com/sstemu/sstemu/pkg/perfmodel"

// Layer5 describes what times the ops, as far as the server knows it: for the in-process
// SST component everything; for an external SST or a device file only its kind and where it
// is (the rest stays empty or 0).
type Layer5 struct {
	// Kind is "in-process", "sst-socket" or "device-file"; Path the socket or device file.
	Kind, Path string
	// Model and Preset name the performance model; ClockHz is the component clock that
	// converts cycles to simulated time.
	Model, Preset string
	ClockHz       float64
	// Ceilings are the model's roofline ceilings (zero when unknown).
	Ceilings perfmodel.Ceilings
}

// Kinds of layer 5.
const (
	Layer5InProcess  = "in-process"
	Layer5SSTSocket  = "sst-socket"
	Layer5DeviceFile = "device-file"
)

// Describe fills the record's model, preset and clock, and its utilization from its summed
// FLOPs and cycles against the model's peak (0 when the peak is unknown or the op untimed).
func (l *Layer5) Describe(r *Record) {
	r.Model, r.Preset, r.ClockHz = l.Model, l.Preset, l.ClockHz
	r.Utilization = 0
	if r.Timed {
		r.Utilization = perfmodel.Utilization(r.FLOPs, r.Cycles, l.Ceilings.PeakFLOPsPerCycle)
	}
}

// InProcess describes the in-process SST component: model kind and preset, the component
// clock (DefaultClockHz if ≤ 0) and the ceilings of the model the parameters build.
func InProcess(kind, preset string, params perfmodel.Params, clockHz float64) (Layer5, error) {
	m, err := perfmodel.New(kind, params)
	if err != nil {
		return Layer5{}, err
	}
	ceil, err := perfmodel.CeilingsOf(m)
	if err != nil {
		return Layer5{}, err
	}
	if !(clockHz > 0) {
		clockHz = DefaultClockHz
	}
	return Layer5{Kind: Layer5InProcess, Model: kind, Preset: preset, ClockHz: clockHz, Ceilings: ceil}, nil
}
