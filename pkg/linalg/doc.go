// Package linalg is the numerics of layer 2: single-precision GEMM, torch.matmul and a
// 2-D convolution lowered to GEMM, on row-major float32 data.
//
// Every operator is expressed as a list of GEMMs (GEMMShape) so that the device server can
// ask the simulated accelerator for the timing of exactly the work it computes on the host.
// The *Shape functions (MatmulShape, Conv2DShape) validate an op and return its output shape
// and GEMMs without touching data, so a request can be checked and timed before its tensors
// are read.
//
// Sgemm runs on OpenBLAS through cgo in the default build (the same kernels numpy uses), and
// on a portable pure-Go implementation when cgo is disabled or the build tag noopenblas is
// set; Backend names the one in use. All functions are safe for concurrent use.
package linalg
