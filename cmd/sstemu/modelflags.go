package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sstemu/sstemu/pkg/perfmodel"
	"github.com/sstemu/sstemu/pkg/sstcomponent"
)

// modelFlags select the GEMM performance model; `sstemu sst` and `sstemu serve` share them.
// A preset gives every parameter and its usual kind; --model picks another kind, and the
// remaining flags override single parameters.
func modelFlags() []cli.Flag {
	presets := perfmodel.Presets()
	names := make([]string, len(presets))
	for i, p := range presets {
		names[i] = p.Name
	}
	return []cli.Flag{
		&cli.StringFlag{Name: "model", EnvVars: []string{"SSTEMU_MODEL"}, Category: catModel,
			Usage: "performance model: " + strings.Join(perfmodel.Kinds(), ", ") + " (default: the preset's)"},
		&cli.StringFlag{Name: "preset", Value: perfmodel.DefaultPreset, EnvVars: []string{"SSTEMU_PRESET"}, Category: catModel,
			Usage: "hardware preset, with the model it selects unless --model says otherwise: " + presetHelp(presets)},
		&cli.StringFlag{Name: "array", EnvVars: []string{"SSTEMU_ARRAY"}, Category: catModel,
			Usage: "systolic array size `RxC`, e.g. 128x128"},
		&cli.StringFlag{Name: "dataflow", EnvVars: []string{"SSTEMU_DATAFLOW"}, Category: catModel,
			Usage: "systolic dataflow: os (output-), ws (weight-) or is (input-stationary)"},
		&cli.StringFlag{Name: "sram-kb", EnvVars: []string{"SSTEMU_SRAM_KB"}, Category: catModel,
			Usage: "systolic SRAM sizes `IxFxO` in KiB (ifmap, filter, ofmap; SCALE-Sim's *SramSzkB), e.g. 64x64x64; default never spills"},
		&cli.StringFlag{Name: "interface-bandwidth", EnvVars: []string{"SSTEMU_INTERFACE_BANDWIDTH"}, Category: catModel,
			Usage: "systolic DRAM mode as SCALE-Sim's InterfaceBandwidth: CALC (DRAM keeps up) or USER (--dram-words-per-cycle, with stalls)"},
		&cli.Uint64Flag{Name: "dram-words-per-cycle", EnvVars: []string{"SSTEMU_DRAM_WORDS_PER_CYCLE"}, Category: catModel,
			Usage: "systolic USER-mode DRAM bandwidth in words per cycle (SCALE-Sim's Bandwidth)", DefaultText: "the preset's"},
		&cli.StringFlag{Name: "tile", EnvVars: []string{"SSTEMU_TILE"}, Category: catModel,
			Usage: "tiled model's tile shape `MxNxK`, e.g. 256x256x256"},
		&cli.Uint64Flag{Name: "cycles-per-tile", EnvVars: []string{"SSTEMU_CYCLES_PER_TILE"}, Category: catModel,
			Usage: "tiled model's cycles per tile", DefaultText: "the preset's"},
		&cli.Uint64Flag{Name: "flops-per-cycle", EnvVars: []string{"SSTEMU_FLOPS_PER_CYCLE"}, Category: catModel,
			Usage: "peak FLOP per cycle (roofline)", DefaultText: "the preset's"},
		&cli.Float64Flag{Name: "bandwidth-gbps", EnvVars: []string{"SSTEMU_BANDWIDTH_GBPS"}, Category: catModel,
			Usage: "memory bandwidth in GB/s (every model's memory bound)", DefaultText: "the preset's"},
		&cli.StringFlag{Name: "model-clock", EnvVars: []string{"SSTEMU_MODEL_CLOCK"}, Category: catModel,
			Usage: "the modelled device's clock, e.g. 1.41GHz: bytes per cycle = bandwidth / model clock"},
		&cli.StringSliceFlag{Name: "model-param", EnvVars: []string{"SSTEMU_MODEL_PARAM"}, Category: catModel,
			Usage: "set any model parameter `name=value` by its CONFIGURE name and integer encoding (docs/models.md), e.g. gpu_sms=108; repeatable, applied last"},
	}
}

// componentClock is the clock that converts the model's cycles to simulated time for
// `serve` and `estimate`: --clock if the user set it, else the modelled device's own clock
// (the preset's, or --model-clock), so that a 1.98 GHz H100's cycles are 1.98 GHz cycles;
// a model with no clock gets DefaultClockHz. `sstemu sst`, the reference component's
// drop-in, keeps the reference's 1GHz default instead.
func componentClock(c *cli.Context, spec modelSpec) (float64, error) {
	if c.IsSet("clock") || spec.Params.ClockGHz <= 0 {
		hz, err := sstcomponent.ParseFrequency(c.String("clock"))
		if err != nil {
			return 0, fmt.Errorf("--clock: %w", err)
		}
		return hz, nil
	}
	return spec.Params.ClockGHz * 1e9, nil
}

// presetHelp lists the presets as name (model).
func presetHelp(presets []perfmodel.Preset) string {
	parts := make([]string, len(presets))
	for i, p := range presets {
		parts[i] = p.Name + " (" + p.Model + ")"
	}
	return strings.Join(parts, ", ")
}

// modelSpec is the model the flags select.
type modelSpec struct {
	Preset string
	Kind   string
	Params perfmodel.Params
}

// String summarises the spec for logs.
func (s modelSpec) String() string {
	return fmt.Sprintf("%s (preset %s)", s.Kind, s.Preset)
}

// build returns the model, checking the parameters.
func (s modelSpec) build() (perfmodel.Model, error) {
	return perfmodel.New(s.Kind, s.Params)
}

// modelSpecFromFlags reads the model flags and checks that they build a model.
func modelSpecFromFlags(c *cli.Context) (modelSpec, error) {
	preset, err := perfmodel.LookupPreset(c.String("preset"))
	if err != nil {
		return modelSpec{}, fmt.Errorf("--preset: %w", err)
	}
	s := modelSpec{Preset: preset.Name, Kind: preset.Model, Params: preset.Params}
	if c.IsSet("model") {
		s.Kind = c.String("model")
		if !slices.Contains(perfmodel.Kinds(), s.Kind) {
			return modelSpec{}, fmt.Errorf("--model %q: want one of %s", s.Kind, strings.Join(perfmodel.Kinds(), ", "))
		}
	}
	p := &s.Params
	if c.IsSet("array") {
		dims, err := parseDims(c.String("array"), 2)
		if err != nil {
			return modelSpec{}, fmt.Errorf("--array: %w", err)
		}
		p.ArrayRows, p.ArrayCols = dims[0], dims[1]
	}
	if c.IsSet("dataflow") {
		if p.Dataflow, err = perfmodel.ParseDataflow(c.String("dataflow")); err != nil {
			return modelSpec{}, fmt.Errorf("--dataflow: %w", err)
		}
	}
	if c.IsSet("sram-kb") {
		kb, err := parseSizes(c.String("sram-kb"), 3)
		if err != nil {
			return modelSpec{}, fmt.Errorf("--sram-kb: %w", err)
		}
		p.IfmapSRAMKB, p.FilterSRAMKB, p.OfmapSRAMKB = kb[0], kb[1], kb[2]
	}
	if c.IsSet("interface-bandwidth") {
		if p.InterfaceBandwidth, err = perfmodel.ParseBandwidthMode(c.String("interface-bandwidth")); err != nil {
			return modelSpec{}, fmt.Errorf("--interface-bandwidth: %w", err)
		}
	}
	if c.IsSet("dram-words-per-cycle") {
		p.DRAMWordsPerCycle = c.Uint64("dram-words-per-cycle")
	}
	if c.IsSet("tile") {
		dims, err := parseDims(c.String("tile"), 3)
		if err != nil {
			return modelSpec{}, fmt.Errorf("--tile: %w", err)
		}
		p.TileM, p.TileN, p.TileK = dims[0], dims[1], dims[2]
	}
	if c.IsSet("cycles-per-tile") {
		p.CyclesPerTile = c.Uint64("cycles-per-tile")
	}
	if c.IsSet("flops-per-cycle") {
		p.FLOPsPerCycle = c.Uint64("flops-per-cycle")
	}
	if c.IsSet("bandwidth-gbps") {
		p.BandwidthGBps = c.Float64("bandwidth-gbps")
	}
	if c.IsSet("model-clock") {
		hz, err := sstcomponent.ParseFrequency(c.String("model-clock"))
		if err != nil {
			return modelSpec{}, fmt.Errorf("--model-clock: %w", err)
		}
		p.ClockGHz = hz / 1e9
	}
	for _, kv := range c.StringSlice("model-param") {
		name, value, ok := strings.Cut(kv, "=")
		if !ok {
			return modelSpec{}, fmt.Errorf("--model-param %q: want name=value", kv)
		}
		id, err := perfmodel.ParseParamID(strings.TrimSpace(name))
		if err != nil {
			return modelSpec{}, fmt.Errorf("--model-param %q: %w", kv, err)
		}
		v, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return modelSpec{}, fmt.Errorf("--model-param %q: value is not an unsigned integer", kv)
		}
		if err := p.Set(id, v); err != nil {
			return modelSpec{}, fmt.Errorf("--model-param %q: %w", kv, err)
		}
	}
	if _, err := s.build(); err != nil {
		return modelSpec{}, fmt.Errorf("model %s: %w", s, err)
	}
	return s, nil
}

// parseDims parses n positive integers joined by 'x' (or 'X' or '×'), e.g. "128x128".
func parseDims(s string, n int) ([]uint64, error) {
	dims, err := parseSizes(s, n)
	for _, d := range dims {
		if err == nil && d == 0 {
			err = fmt.Errorf("%q: size 0 is not a positive integer", s)
		}
	}
	return dims, err
}

// parseSizes parses n integers joined by 'x' (or 'X' or '×'), zero allowed.
func parseSizes(s string, n int) ([]uint64, error) {
	norm := strings.NewReplacer("X", "x", "×", "x").Replace(strings.TrimSpace(s))
	parts := strings.Split(norm, "x")
	want := strings.Repeat("Nx", n)[:2*n-1]
	if len(parts) != n {
		return nil, fmt.Errorf("%q: want %d sizes like %s", s, n, want)
	}
	dims := make([]uint64, n)
	for i, part := range parts {
		v, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: size %q is not an integer", s, part)
		}
		dims[i] = v
	}
	return dims, nil
}
