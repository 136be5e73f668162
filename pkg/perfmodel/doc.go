// Package perfmodel holds the performance models of the emulated SST component (layer L5):
// pure, deterministic functions from a GEMM's shape and element size to a cycle estimate.
//
// Five models sit behind one Model interface:
//
//   - roofline: the ACALSim tutorial's model, max(compute, memory) cycles, exactly as the
//     reference component computes it (the default, with the "a100-tutorial" preset);
//   - tiled: whole tiles of configurable size at a fixed cost per tile, with the operand
//     re-reads that tiling implies as its memory bound;
//   - systolic: an R×C systolic array with output-, weight- or input-stationary dataflow,
//     reproducing SCALE-Sim v2's reported cycles and access counts exactly: in closed form
//     (ScaleSim) or, with finite SRAMs or a USER-mode DRAM bandwidth, by replaying v2's
//     memory system (ScaleSimReplay);
//   - systolic-paper: the SCALE-Sim paper's analytical formula (fill and drain included);
//   - gpu: one kernel per (batched) GEMM on a GPU, threadblock tiles in waves of one per
//     SM with operand staging and an L2-aware memory bound, validated against measured
//     A100 and H100 kernels (presets a100-pcie-40gb, a100-80gb-pcie, h100-sxm).
//
// EstimateBatched answers a batch of GEMMs of one shape with any model.
//
// All arithmetic is unsigned 64-bit with overflow detected through math/bits: a quantity
// that does not fit is reported as an error wrapping ErrOverflow, never wrapped around
// (the reference multiplies M·K in 32 bits and silently overflows). Rates are held at
// 1 MB/s and 1 MHz resolution so that memory cycles are computed exactly as
// floor(bytes·ClockMHz/BandwidthMBps) with a 128-bit intermediate. docs/models.md gives
// every formula, its source and the provenance of each preset.
package perfmodel
