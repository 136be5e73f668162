package perfmodel

// GPUParams are the gpu model's parameters (Params.GPU). The clock and the HBM bandwidth
// are Params.ClockGHz and Params.BandwidthGBps, shared with the other models.
// docs/models.md ("GPU") gives each preset's values and where they come from.
type GPUParams struct {
	// SMs is the number of streaming multiprocessors: one threadblock tile per SM per wave.
	SMs uint64
	// FP32FLOPsPerSM is the SM's FP32 (SIMT FFMA) rate in FLOP per cycle: 2 per FP32 lane.
	FP32FLOPsPerSM uint64
	// TensorFLOPsPerSM is the SM's dense bf16/fp16 tensor-core rate in FLOP per cycle,
	// used when the op's DtypeSize is 2.
	TensorFLOPsPerSM uint64
	// L2Bytes is the L2 cache size: operands that fit are read from HBM once.
	L2Bytes uint64
	// Tiles and BatchedTiles select, as bitmasks over GPUTileCatalogue, the threadblock
	// tiles the kernel library offers for single and for batched GEMMs.
	Tiles, BatchedTiles uint64
	// StageMilli is the SIMT main loop's operand-staging cost in thousandths of an SM
	// cycle per operand element per k step (tm+tn elements per step of a tm×tn tile):
	// the load and shared-memory instructions that take issue slots from the FFMAs.
	StageMilli uint64
	// KernelNs is the fixed cost of one kernel (launch, prologue, epilogue) in ns.
	KernelNs uint64
}

// field returns the field that id sets, or nil when id is not a gpu parameter.
func (g *GPUParams) field(id ParamID) *uint64 {
	switch id {
	case ParamGPUSMs:
		return &g.SMs
	case ParamGPUFP32FLOPsPerSM:
		return &g.FP32FLOPsPerSM
	case ParamGPUTensorFLOPsPerSM:
		return &g.TensorFLOPsPerSM
	case ParamGPUL2Bytes:
		return &g.L2Bytes
	case ParamGPUTiles:
		return &g.Tiles
	case ParamGPUBatchedTiles:
		return &g.BatchedTiles
	case ParamGPUStageMilli:
		return &g.StageMilli
	case ParamGPUKernelNs:
		return &g.KernelNs
	}
	return nil
}
