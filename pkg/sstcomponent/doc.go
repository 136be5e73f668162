// Package sstcomponent is layer L5 of sstemu: a drop-in for the reference SST component
// acalsim.VirtIODevice. It serves the raw SSTRequest/SSTResponse stream that the QEMU
// virtio-sst device sends (or sstemu's own L4, in process over the buffered in-memory
// pipe of virtiodev.PipeDialer), answers every request from a deterministic simulated
// clock and a performance model (pkg/perfmodel), and keeps the statistics SST prints at
// the end of a simulation. docs/sst-protocol.md §The SST component is the contract.
//
// It is shaped like net/http: New builds a Component, Serve accepts connections on a
// listener (Listen creates a Unix socket the way the component does), ServeConn serves one
// stream, Shutdown stops gracefully. One Component is one device: every connection shares
// its clock, memory, model and statistics.
//
// # Stream
//
// Each request is exactly protocol.RequestSize (4104) bytes, however the stream splits it;
// each answer exactly protocol.ResponseSize (4112) bytes, in request order. Requests that
// arrive pipelined are answered in batches: a response is flushed only when no further
// whole request is already buffered. A request the component cannot honour is answered
// with a status (INVALID), never with a dropped connection; a connection that ends in the
// middle of a request is closed after the answers to all whole requests before it.
//
// # Answers
//
//	NOOP       OK, result 0
//	ECHO       OK, the 4080 payload bytes copied back, result 4080
//	COMPUTE    OK, cycles = 100 × compute_units whatever latency_model says (as the
//	           reference; an optional cost table below), timestamp = simulated cycle at
//	           which the op starts, result = cycles; a product above 2^64-1 (and, with
//	           a cost table, a latency_model beyond it) is INVALID
//	GEMM       OK, through the performance model: payload cycles, compute cycles,
//	           memory cycles, memory bytes (result_offset 0), result = cycles;
//	           a zero dimension, zero dtype_size or 64-bit overflow is INVALID
//	BATCHED_GEMM  OK, batch GEMMs of one shape through perfmodel.EstimateBatched (the gpu
//	           model: one kernel; the others: batch × one GEMM), answered in GEMM's
//	           layout with the batch's totals; a zero field or batch, or overflow, is INVALID
//	GEMM_LIST  OK, each entry (M, N, K, batch) answered as GEMM or BATCHED_GEMM would be,
//	           in order, 32 bytes each from response offset 32, result = entries
//	           answered: the answer stops at the first entry the model cannot answer; a
//	           count of 0 or above 127, or a zero dtype_size, is INVALID
//	READ       OK, size bytes of device memory at addr returned at response offset 32,
//	           result = size; size > 4080 or addr+size beyond 256 MiB is INVALID
//	WRITE      OK, size bytes from request offset 40 stored at addr, result = size;
//	           size > 4064 or addr+size beyond 256 MiB is INVALID
//	CONFIGURE  OK, model parameter param_id set to value (perfmodel.ParamID encoding) and
//	           the model rebuilt, result = value; an undefined id or a value the model
//	           rejects is INVALID and leaves the model unchanged
//	RESET      OK, result 0: device memory is zeroed and the model returns to the
//	           configuration the component started with; the simulated clock keeps its
//	           value (SST time never runs backwards, so timestamps stay monotonic) and the
//	           statistics keep counting
//	GET_INFO   OK, version 0x00010000, capabilities ECHO|COMPUTE|MEMORY|RESET,
//	           max_compute_units 1000000, memory_size 0x10000000 (as the QEMU device
//	           answers it itself)
//	other      INVALID, result 0
//
// request_id and user_data are always copied into the answer; the rest of an INVALID
// answer is zero.
//
// The reference component charges ReferenceComputeCost (100) cycles per unit for every
// latency_model, and so does a Component by default: layer 2 falls back to COMPUTE of
// 2·M·N·K units with latency_model 0 when a layer 5 does not know GEMM, and those cycles
// must be the reference's. Config.ComputeCosts may instead select a cost by latency_model,
// e.g. LatencyModelCosts():
//
//	0  100 cycles  the reference component's only cost (the llama example's "attention")
//	1   50 cycles  the llama example's "FFN"       (its fallback table 1000:500:100 ns,
//	2   10 cycles  the llama example's "embedding"  scaled so that model 0 stays 100)
//	3    1 cycle   unit cost: cycles = compute_units
//
// # Simulated clock
//
// The clock counts cycles of the simulated device, not wall time: each COMPUTE, GEMM,
// BATCHED_GEMM and GEMM_LIST entry occupies the device for its cycles, starting at the
// current cycle, and advances the clock by them; all connections share it, so concurrent ops are serialised in the order
// they reach it. Other requests take no simulated time. The clock saturates at 2^64-1
// rather than wrapping. Config.ClockHz (the SST component's "clock" parameter) converts
// cycles to simulated time for the report and the CSV statistics.
//
// # Device memory
//
// READ and WRITE address protocol.DeviceMemorySize (256 MiB) bytes of device memory,
// allocated in MemoryPageSize pages on first write; untouched memory reads as zeros.
package sstcomponent
