// Package linalg is the numerics of layer 2: single-precision GEMM, torch.matmul and a
// 2-D convolution lowered to GEMM, on row-major float32 data.
//
// Every operator is planned once, without its data: PlanGEMM, PlanMatmul and PlanConv2D
// apply the shape rules and return a Plan with the output shape, the element counts of the
// operands, output and workspace, the GEMMs the op lowers to (GEMMBatch) and its FLOPs, so
// that a request can be checked, sized and timed before its tensors are read, and then
// computed from the same Plan. The GEMMs let the device server ask the simulated
// accelerator for the timing of exactly the work it computes on the host.
//
// Sgemm runs on OpenBLAS through cgo in the default build (the same kernels numpy uses), and
// on a portable pure-Go implementation when cgo is disabled or the build tag noopenblas is
// set; Backend names the one in use. All functions are safe for concurrent use.
package linalg
