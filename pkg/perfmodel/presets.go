package perfmodel

import (
	"fmt"
	"slices"
)

// Preset is a named, documented set of parameters with the model kind it is meant for.
// Every preset fills every field of Params, so New(kind, preset.Params) works for any kind;
// fields the preset's device does not define take the tutorial's sketches (256-wide tiles,
// a 128×128 array), as docs/models.md lists.
type Preset struct {
	Name        string
	Description string
	Source      string // where the numbers come from
	Model       string // the default model kind for this preset
	Params      Params
}

// DefaultPreset is the preset the emulator uses unless told otherwise: the tutorial's
// A100-like roofline.
const DefaultPreset = "a100-tutorial"

// Tutorial constants (ACALSim's docs/CUSTOM_SST_OPERATORS.md in twhpcedu/acalsim, step 2.1
// and Advanced Topics).
const (
	tutorialFLOPsPerCycle = 64
	tutorialBandwidthGBps = 900
	tutorialClockGHz      = 1.41
	tutorialTile          = 256
	tutorialArray         = 128
	// A full 256³ tile is 2·256³ = 33,554,432 FLOPs; at 64 FLOP/cycle it takes 524,288 cycles.
	tutorialCyclesPerTile = 2 * tutorialTile * tutorialTile * tutorialTile / tutorialFLOPsPerCycle
)

// H100 SXM5 FP32 (non-tensor) figures, NVIDIA H100 datasheet and Hopper whitepaper.
const (
	h100SMs            = 132
	h100FP32LanesPerSM = 128
	h100FLOPsPerCycle  = h100SMs * h100FP32LanesPerSM * 2 // 33,792: one FMA = 2 FLOPs per lane
	h100BandwidthGBps  = 3350
	h100ClockGHz       = 1.98
	// ceil(2·256³ / 33,792) = ceil(992.97) = 993 cycles for a full 256³ tile.
	h100CyclesPerTile = (2*tutorialTile*tutorialTile*tutorialTile + h100FLOPsPerCycle - 1) / h100FLOPsPerCycle
)

// TPU-like 128×128 weight-stationary array clocked and fed like one TPUv2 TensorCore.
const (
	tpuArray         = 128
	tpuFLOPsPerCycle = 2 * tpuArray * tpuArray // 32,768
	tpuClockGHz      = 0.7
	tpuBandwidthGBps = 350
	// A 128³ tile is 2·128³ = 4,194,304 FLOPs; at 32,768 FLOP/cycle it takes 128 cycles.
	tpuCyclesPerTile = 2 * tpuArray * tpuArray * tpuArray / tpuFLOPsPerCycle
)

// GPU figures (docs/models.md, "GPU presets", gives the sources). FP32 lanes × 2 FLOP per
// FMA per SM per cycle; dense bf16 tensor-core FLOP per SM per cycle.
const (
	a100SMs           = 108  // A100 whitepaper: 108 SMs on the A100 product
	a100FP32PerSM     = 128  // 64 FP32 cores/SM × 2: 108 × 128 × 1.41 GHz = 19.5 TFLOPS
	a100TensorPerSM   = 2048 // 1024 dense FP16/BF16 FMA/SM/clk: 108 × 2048 × 1.41 GHz = 312 TFLOPS
	a100ClockGHz      = 1.41 // boost clock
	a100L2Bytes       = 40 << 20
	a100PCIe40GBps    = 1555
	a100PCIe80GBps    = 1935
	h100TensorPerSM   = 3786 // 989.4 dense BF16 TFLOPS / (132 SMs × 1.98 GHz), rounded
	h100FP32PerSM     = h100FP32LanesPerSM * 2
	h100L2Bytes       = 50 << 20
	gpuKernelNs       = 3000 // assumed fixed cost of one kernel: not calibrated, not a datasheet figure
	gpuStageMilli     = 110  // calibrated on the A100 NeuSight rows only (TestGPUCalibration)
	a100DenseFLOPs    = a100SMs * a100FP32PerSM
	a100CyclesPerTile = (2*tutorialTile*tutorialTile*tutorialTile + a100DenseFLOPs - 1) / a100DenseFLOPs
)

// Threadblock tiles (M×N, bits of gpuTileCatalogue). The A100 sets are the tiles of the
// cuBLAS 12.1 kernels that ran in the A100 NeuSight rows (ampere_sgemm_AxB covers N×M:
// A along N); the H100 set is CUTLASS's SM80 SIMT SGEMM configurations.
var (
	a100Tiles        = mustGPUTileMask("128x128", "64x128", "32x128", "128x32", "32x64", "64x64", "32x32")
	a100BatchedTiles = mustGPUTileMask("128x128")
	cutlassSimtTiles = mustGPUTileMask("256x128", "128x256", "128x128", "128x64", "64x128", "64x64", "128x32", "32x128")
)

func mustGPUTileMask(names ...string) uint64 {
	m, err := GPUTileMask(names...)
	if err != nil {
		panic(err)
	}
	return m
}

// a100GPU returns the gpu parameters of an A100 (both PCIe parts share them).
func a100GPU() GPUParams {
	return GPUParams{
		SMs: a100SMs, FP32FLOPsPerSM: a100FP32PerSM, TensorFLOPsPerSM: a100TensorPerSM, L2Bytes: a100L2Bytes,
		Tiles: a100Tiles, BatchedTiles: a100BatchedTiles, StageMilli: gpuStageMilli, KernelNs: gpuKernelNs,
	}
}

// tutorialParams returns the tutorial's parameters, the base the GPU presets change.
func tutorialParams() Params {
	return Params{
		FLOPsPerCycle: tutorialFLOPsPerCycle,
		BandwidthGBps: tutorialBandwidthGBps,
		ClockGHz:      tutorialClockGHz,
		TileM:         tutorialTile, TileN: tutorialTile, TileK: tutorialTile,
		CyclesPerTile: tutorialCyclesPerTile,
		ArrayRows:     tutorialArray, ArrayCols: tutorialArray,
		Dataflow:          OutputStationary,
		DRAMWordsPerCycle: scaleSimDefaultWordsPerCycle,
		GPU:               a100GPU(),
	}
}

// a100Params returns an A100 PCIe preset's parameters at the given HBM bandwidth.
func a100Params(bandwidthGBps float64) Params {
	p := tutorialParams()
	p.FLOPsPerCycle = a100DenseFLOPs
	p.BandwidthGBps = bandwidthGBps
	p.ClockGHz = a100ClockGHz
	p.CyclesPerTile = a100CyclesPerTile
	return p
}

// presets returns a fresh copy of the preset table.
func presets() []Preset {
	tutorial := tutorialParams()
	h100 := tutorial
	h100.FLOPsPerCycle = h100FLOPsPerCycle
	h100.BandwidthGBps = h100BandwidthGBps
	h100.ClockGHz = h100ClockGHz
	h100.CyclesPerTile = h100CyclesPerTile
	h100.GPU = GPUParams{
		SMs: h100SMs, FP32FLOPsPerSM: h100FP32PerSM, TensorFLOPsPerSM: h100TensorPerSM, L2Bytes: h100L2Bytes,
		Tiles: cutlassSimtTiles, BatchedTiles: cutlassSimtTiles, StageMilli: gpuStageMilli, KernelNs: gpuKernelNs,
	}

	tpu := Params{
		FLOPsPerCycle: tpuFLOPsPerCycle,
		BandwidthGBps: tpuBandwidthGBps,
		ClockGHz:      tpuClockGHz,
		TileM:         tpuArray, TileN: tpuArray, TileK: tpuArray,
		CyclesPerTile: tpuCyclesPerTile,
		ArrayRows:     tpuArray, ArrayCols: tpuArray,
		Dataflow:          WeightStationary,
		DRAMWordsPerCycle: scaleSimDefaultWordsPerCycle,
		GPU:               a100GPU(),
	}
	return []Preset{
		{
			Name:        DefaultPreset,
			Description: "the tutorial's A100-like roofline: 64 FP32 FLOP/cycle, 900 GB/s, 1.41 GHz",
			Source:      "ACALSim tutorial docs/CUSTOM_SST_OPERATORS.md (twhpcedu/acalsim), step 2.1 (PEAK_FLOPS_PER_CYCLE, MEMORY_BW_GB_S, FREQ_GHZ)",
			Model:       KindRoofline,
			Params:      tutorial,
		},
		{
			Name:        "h100-sxm",
			Description: "H100 SXM5 FP32 (non-tensor) roofline: 132 SMs × 128 lanes × 2 = 33,792 FLOP/cycle, 3,350 GB/s HBM3, 1.98 GHz boost (66.9 TFLOPS); with --model gpu: 132 SMs, 989 TFLOPS dense bf16, 50 MB L2, CUTLASS SM80 SIMT tiles",
			Source:      "NVIDIA H100 Tensor Core GPU datasheet (FP32 67 TFLOPS, BF16 1,979 TFLOPS with sparsity, 3.35 TB/s) and Hopper architecture whitepaper (132 SMs, 128 FP32 cores/SM, 50 MB L2)",
			Model:       KindRoofline,
			Params:      h100,
		},
		{
			Name:        "a100-pcie-40gb",
			Description: "A100 PCIe 40 GB as one GPU kernel per GEMM: 108 SMs × 128 FP32 FLOP/cycle (19.5 TFLOPS), 2,048 bf16 tensor FLOP/SM/cycle (312 TFLOPS), 1.41 GHz, 1,555 GB/s HBM2, 40 MB L2",
			Source:      "NVIDIA A100 Tensor Core GPU datasheet (FP32 19.5 TFLOPS, BF16 312 TFLOPS dense, 40GB PCIe 1,555 GB/s) and Ampere GA100 whitepaper (108 SMs, 64 FP32 cores/SM, 40 MB L2, 1410 MHz boost)",
			Model:       KindGPU,
			Params:      a100Params(a100PCIe40GBps),
		},
		{
			Name:        "a100-80gb-pcie",
			Description: "A100 PCIe 80 GB: as a100-pcie-40gb with 1,935 GB/s HBM2e",
			Source:      "NVIDIA A100 Tensor Core GPU datasheet (80GB PCIe: 1,935 GB/s) and Ampere GA100 whitepaper",
			Model:       KindGPU,
			Params:      a100Params(a100PCIe80GBps),
		},
		{
			Name:        "tpu-128",
			Description: "TPU-like 128×128 weight-stationary systolic array (the tutorial's 128×128 sketch; TPUv1 is 256×256) at 700 MHz with 350 GB/s, i.e. one TPUv2 TensorCore's MXU and half its chip's HBM",
			Source:      "tutorial Advanced Topics (SYSTOLIC_DIM 128); Jouppi et al., \"A Domain-Specific Supercomputer for Training Deep Neural Networks\", CACM 63(7), 2020 (TPUv2: 2 cores × one 128×128 MXU, 700 MHz, 700 GB/s HBM per chip)",
			Model:       KindSystolic,
			Params:      tpu,
		},
		{
			Name:        "tiled-256",
			Description: "the tutorial's tiled model: 256×256×256 tiles, each costing 524,288 cycles (2·256³ FLOPs at 64 FLOP/cycle), 900 GB/s, 1.41 GHz",
			Source:      "ACALSim tutorial docs/CUSTOM_SST_OPERATORS.md (twhpcedu/acalsim), Advanced Topics option 1 (TILE_SIZE 256), with step 2.1's rates",
			Model:       KindTiled,
			Params:      tutorial,
		},
	}
}

// Presets returns every preset, the default first. The slice and its Params are copies:
// changing them does not change later results.
func Presets() []Preset { return presets() }

// LookupPreset returns a copy of the named preset, or an error wrapping ErrUnknownPreset.
func LookupPreset(name string) (Preset, error) {
	all := presets()
	if i := slices.IndexFunc(all, func(p Preset) bool { return p.Name == name }); i >= 0 {
		return all[i], nil
	}
	names := make([]string, len(all))
	for i, p := range all {
		names[i] = p.Name
	}
	return Preset{}, fmt.Errorf("%w %q (want one of %v)", ErrUnknownPreset, name, names)
}

// FromPreset builds the named preset's default model.
func FromPreset(name string) (Model, error) {
	p, err := LookupPreset(name)
	if err != nil {
		return nil, err
	}
	return New(p.Model, p.Params)
}
