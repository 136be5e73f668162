package perfmodel

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Dataflow is what a systolic array keeps stationary in its processing elements.
type Dataflow uint8

// The three dataflows of SCALE-Sim. Their numeric values are the ParamDataflow encoding.
const (
	OutputStationary Dataflow = iota // "os": each PE accumulates one output
	WeightStationary                 // "ws": each PE holds one weight (B element)
	InputStationary                  // "is": each PE holds one input (A element)
)

// String returns "os", "ws" or "is".
func (d Dataflow) String() string {
	switch d {
	case OutputStationary:
		return "os"
	case WeightStationary:
		return "ws"
	case InputStationary:
		return "is"
	}
	return fmt.Sprintf("Dataflow(%d)", uint8(d))
}

// valid reports whether d is one of the three dataflows.
func (d Dataflow) valid() bool { return d <= InputStationary }

// ParseDataflow accepts "os", "ws", "is" or the long forms "output-stationary",
// "weight-stationary", "input-stationary", in any letter case.
func ParseDataflow(s string) (Dataflow, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "os", "output-stationary":
		return OutputStationary, nil
	case "ws", "weight-stationary":
		return WeightStationary, nil
	case "is", "input-stationary":
		return InputStationary, nil
	}
	return 0, fmt.Errorf("%w %q (want os, ws or is)", ErrUnknownDataflow, s)
}

// Params holds every parameter of every model; each model reads only its own (see New).
// Fields are plain values, so a Params is copied by assignment and any field can be
// overridden after LookupPreset.
type Params struct {
	// FLOPsPerCycle is the roofline's peak compute rate (the tutorial's 64).
	FLOPsPerCycle uint64
	// BandwidthGBps is the memory bandwidth in GB/s (10^9 bytes/s), used by every model's
	// memory bound. It must be a whole number of MB/s, at most MaxRateMilli MB/s.
	BandwidthGBps float64
	// ClockGHz is the core clock in GHz; it must be a whole number of MHz, at most
	// MaxRateMilli MHz. Bytes per cycle = BandwidthGBps / ClockGHz.
	ClockGHz float64
	// TileM, TileN, TileK are the tiled model's tile shape: one tile computes
	// C[TileM,TileN] += A[TileM,TileK]·B[TileK,TileN].
	TileM, TileN, TileK uint64
	// CyclesPerTile is what the tiled model charges for each tile, full or partial.
	CyclesPerTile uint64
	// ArrayRows and ArrayCols are the systolic array's R and C.
	ArrayRows, ArrayCols uint64
	// Dataflow is the systolic array's dataflow.
	Dataflow Dataflow
	// IfmapSRAMKB, FilterSRAMKB and OfmapSRAMKB are the systolic array's SRAMs in KiB
	// (SCALE-Sim's IfmapSramSzkB, …; its word is one byte, so a KiB holds 1024 elements
	// whatever the dtype). Zero, the default, means large enough never to spill.
	IfmapSRAMKB, FilterSRAMKB, OfmapSRAMKB uint64
	// InterfaceBandwidth is SCALE-Sim's mode: CALC (DRAM keeps up) or USER
	// (DRAMWordsPerCycle words per cycle, with stalls).
	InterfaceBandwidth BandwidthMode
	// DRAMWordsPerCycle is the USER-mode DRAM bandwidth (SCALE-Sim's Bandwidth).
	DRAMWordsPerCycle uint64
	// GPU holds the gpu model's parameters.
	GPU GPUParams
}

// MaxRateMilli bounds the integer rate values (MB/s, MHz): 2^40, far above any real
// device, and small enough that a rate round-trips exactly through its float64 field.
const MaxRateMilli = 1 << 40

// milliPerUnit converts GB/s to MB/s and GHz to MHz.
const milliPerUnit = 1000

// ParamID identifies one parameter in the SST CONFIGURE request (param_id u32, value u64).
// Zero is reserved and never valid.
type ParamID uint32

// The parameter ids and their integer encodings (see docs/models.md).
const (
	ParamFLOPsPerCycle      ParamID = iota + 1 // FLOP per cycle
	ParamBandwidthMBps                         // memory bandwidth in MB/s (10^6 bytes/s)
	ParamClockMHz                              // clock in MHz
	ParamTileM                                 // tile rows of A and C
	ParamTileN                                 // tile columns of B and C
	ParamTileK                                 // tile depth
	ParamCyclesPerTile                         // cycles charged per tile
	ParamArrayRows                             // systolic array rows R
	ParamArrayCols                             // systolic array columns C
	ParamDataflow                              // 0 = os, 1 = ws, 2 = is
	ParamIfmapSRAMKB                           // systolic ifmap SRAM in KiB, 0 = never spills
	ParamFilterSRAMKB                          // systolic filter SRAM in KiB, 0 = never spills
	ParamOfmapSRAMKB                           // systolic ofmap SRAM in KiB, 0 = never spills
	ParamInterfaceBandwidth                    // 0 = CALC, 1 = USER
	ParamDRAMWordsPerCycle                     // USER-mode DRAM words per cycle
)

// The gpu model's parameter ids start at 32, leaving 11…31 to the other models.
const (
	ParamGPUSMs              ParamID = iota + 32 // streaming multiprocessors
	ParamGPUFP32FLOPsPerSM                       // FP32 (SIMT) FLOP per SM per cycle
	ParamGPUTensorFLOPsPerSM                     // dense bf16/fp16 tensor-core FLOP per SM per cycle
	ParamGPUL2Bytes                              // L2 cache bytes
	ParamGPUTiles                                // bitmask over GPUTileCatalogue, single GEMMs
	ParamGPUBatchedTiles                         // bitmask over GPUTileCatalogue, batched GEMMs
	ParamGPUStageMilli                           // operand-staging cost, 1/1000 cycle per element per k step
	ParamGPUKernelNs                             // fixed cost per kernel in ns
)

var paramNames = map[ParamID]string{
	ParamFLOPsPerCycle: "flops_per_cycle",
	ParamBandwidthMBps: "bandwidth_mbps",
	ParamClockMHz:      "clock_mhz",
	ParamTileM:         "tile_m",
	ParamTileN:         "tile_n",
	ParamTileK:         "tile_k",
	ParamCyclesPerTile: "cycles_per_tile",
	ParamArrayRows:     "array_rows",
	ParamArrayCols:     "array_cols",
	ParamDataflow:      "dataflow",

	ParamIfmapSRAMKB:         "ifmap_sram_kb",
	ParamFilterSRAMKB:        "filter_sram_kb",
	ParamOfmapSRAMKB:         "ofmap_sram_kb",
	ParamInterfaceBandwidth:  "interface_bandwidth",
	ParamDRAMWordsPerCycle:   "dram_words_per_cycle",
	ParamGPUSMs:              "gpu_sms",
	ParamGPUFP32FLOPsPerSM:   "gpu_fp32_flops_per_sm",
	ParamGPUTensorFLOPsPerSM: "gpu_tensor_flops_per_sm",
	ParamGPUL2Bytes:          "gpu_l2_bytes",
	ParamGPUTiles:            "gpu_tiles",
	ParamGPUBatchedTiles:     "gpu_batched_tiles",
	ParamGPUStageMilli:       "gpu_stage_milli",
	ParamGPUKernelNs:         "gpu_kernel_ns",
}

// ParamIDs returns every defined ParamID in ascending order.
func ParamIDs() []ParamID {
	ids := make([]ParamID, 0, len(paramNames))
	for id := range paramNames {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// String returns the parameter's snake_case name, e.g. "bandwidth_mbps".
func (id ParamID) String() string {
	if n, ok := paramNames[id]; ok {
		return n
	}
	return "ParamID(" + strconv.FormatUint(uint64(id), 10) + ")"
}

// ParseParamID maps a name as returned by ParamID.String back to its id.
func ParseParamID(name string) (ParamID, error) {
	for id, n := range paramNames {
		if n == name {
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w name %q", ErrUnknownParam, name)
}

// Set assigns one parameter from its integer encoding. A zero value (except for the
// dataflow, the interface bandwidth and the SRAM sizes), a rate above MaxRateMilli, a
// dataflow other than 0, 1, 2, a mode other than 0, 1, an SRAM above MaxSRAMKB or a DRAM
// bandwidth above MaxDRAMWordsPerCycle is an *InvalidParamError, an undefined id wraps
// ErrUnknownParam; p is unchanged on error.
func (p *Params) Set(id ParamID, value uint64) error {
	if _, ok := paramNames[id]; !ok {
		return fmt.Errorf("%w id %d", ErrUnknownParam, uint32(id))
	}
	bad := func(reason string) error {
		return &InvalidParamError{Param: id.String(), Value: strconv.FormatUint(value, 10), Reason: reason}
	}
	switch id {
	case ParamDataflow:
		if value > uint64(InputStationary) {
			return bad("must be 0 (os), 1 (ws) or 2 (is)")
		}
		p.Dataflow = Dataflow(value)
		return nil
	case ParamInterfaceBandwidth:
		if value > uint64(BandwidthUser) {
			return bad("must be 0 (CALC) or 1 (USER)")
		}
		p.InterfaceBandwidth = BandwidthMode(value)
		return nil
	case ParamIfmapSRAMKB, ParamFilterSRAMKB, ParamOfmapSRAMKB: // zero: never spills
		if value > MaxSRAMKB {
			return bad(fmt.Sprintf("must be at most %d", uint64(MaxSRAMKB)))
		}
		*p.sramKB(id) = value
		return nil
	case ParamDRAMWordsPerCycle:
		if value > MaxDRAMWordsPerCycle {
			return bad(fmt.Sprintf("must be at most %d", uint64(MaxDRAMWordsPerCycle)))
		}
	}
	if value == 0 {
		return bad("must be at least 1")
	}
	if (id == ParamGPUTiles || id == ParamGPUBatchedTiles) && validGPUTileMask(value) != "" {
		return bad(validGPUTileMask(value))
	}
	if f := p.GPU.field(id); f != nil {
		*f = value
		return nil
	}
	switch id {
	case ParamFLOPsPerCycle:
		p.FLOPsPerCycle = value
	case ParamBandwidthMBps, ParamClockMHz:
		if value > MaxRateMilli {
			return bad(fmt.Sprintf("must be at most %d", uint64(MaxRateMilli)))
		}
		if id == ParamBandwidthMBps {
			p.BandwidthGBps = float64(value) / milliPerUnit
		} else {
			p.ClockGHz = float64(value) / milliPerUnit
		}
	case ParamTileM:
		p.TileM = value
	case ParamTileN:
		p.TileN = value
	case ParamTileK:
		p.TileK = value
	case ParamCyclesPerTile:
		p.CyclesPerTile = value
	case ParamArrayRows:
		p.ArrayRows = value
	case ParamArrayCols:
		p.ArrayCols = value
	case ParamDRAMWordsPerCycle:
		p.DRAMWordsPerCycle = value
	}
	return nil
}

// sramKB returns the field of one of the three SRAM-size ids.
func (p *Params) sramKB(id ParamID) *uint64 {
	switch id {
	case ParamFilterSRAMKB:
		return &p.FilterSRAMKB
	case ParamOfmapSRAMKB:
		return &p.OfmapSRAMKB
	}
	return &p.IfmapSRAMKB
}

// Get returns one parameter in the integer encoding Set takes. A rate that is not a valid
// whole number of MB/s or MHz is an *InvalidParamError.
func (p Params) Get(id ParamID) (uint64, error) {
	switch id {
	case ParamFLOPsPerCycle:
		return p.FLOPsPerCycle, nil
	case ParamBandwidthMBps:
		return toMilli("", "BandwidthGBps", p.BandwidthGBps)
	case ParamClockMHz:
		return toMilli("", "ClockGHz", p.ClockGHz)
	case ParamTileM:
		return p.TileM, nil
	case ParamTileN:
		return p.TileN, nil
	case ParamTileK:
		return p.TileK, nil
	case ParamCyclesPerTile:
		return p.CyclesPerTile, nil
	case ParamArrayRows:
		return p.ArrayRows, nil
	case ParamArrayCols:
		return p.ArrayCols, nil
	case ParamDataflow:
		return uint64(p.Dataflow), nil
	case ParamIfmapSRAMKB, ParamFilterSRAMKB, ParamOfmapSRAMKB:
		return *p.sramKB(id), nil
	case ParamInterfaceBandwidth:
		return uint64(p.InterfaceBandwidth), nil
	case ParamDRAMWordsPerCycle:
		return p.DRAMWordsPerCycle, nil
	}
	if f := p.GPU.field(id); f != nil {
		return *f, nil
	}
	return 0, fmt.Errorf("%w id %d", ErrUnknownParam, uint32(id))
}

// toMilli converts a GB/s or GHz value to the whole number of MB/s or MHz it denotes.
// The value must be positive, finite, at most MaxRateMilli/1000 and within float64
// rounding (a few ulps) of a whole number of thousandths.
func toMilli(kind, name string, v float64) (uint64, error) {
	bad := func(reason string) error {
		return &InvalidParamError{Kind: kind, Param: name, Value: strconv.FormatFloat(v, 'g', -1, 64), Reason: reason}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, bad("must be a positive finite number")
	}
	x := v * milliPerUnit
	n := math.Round(x)
	if n < 1 || n > MaxRateMilli {
		return 0, bad(fmt.Sprintf("must be between 0.001 and %d", uint64(MaxRateMilli)/milliPerUnit))
	}
	const ulps = 4
	if math.Abs(x-n) > ulps*n*math.Pow(2, -52) {
		return 0, bad("must be a whole number of thousandths (1 MB/s, 1 MHz resolution)")
	}
	return uint64(n), nil
}

// rates is the validated, integer form of the memory system shared by every model.
type rates struct {
	bandwidthMBps, clockMHz uint64
}

func (p Params) rates(kind string) (rates, error) {
	bw, err := toMilli(kind, "BandwidthGBps", p.BandwidthGBps)
	if err != nil {
		return rates{}, err
	}
	clk, err := toMilli(kind, "ClockGHz", p.ClockGHz)
	if err != nil {
		return rates{}, err
	}
	return rates{bandwidthMBps: bw, clockMHz: clk}, nil
}

// memoryCycles is floor(bytes / (BW/clock)) = floor(bytes·clockMHz / bandwidthMBps).
func (r rates) memoryCycles(c *checked, bytes uint64) uint64 {
	return c.mulDiv("memory cycles", bytes, r.clockMHz, r.bandwidthMBps)
}

// namedValue pairs a parameter's name with its value for positive.
type namedValue struct {
	name string
	v    uint64
}

// positive returns an *InvalidParamError naming the first zero field of the kind.
func positive(kind string, fields ...namedValue) error {
	for _, f := range fields {
		if f.v == 0 {
			return &InvalidParamError{Kind: kind, Param: f.name, Value: "0", Reason: "must be at least 1"}
		}
	}
	return nil
}
