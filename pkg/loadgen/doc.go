// Package loadgen measures a DeviceGEMM server (layer 1 of sstemu, or anything speaking the
// same wire protocol, docs/wire.md) from the outside: a client, a load generator with exact
// latency percentiles, and a deliberately minimal "floor" server to compare against.
//
// Client speaks the protocol as the reference PyTorch client does (Pieces: five writes per op
// with Nagle's algorithm on) or as fast as a client can (one write, TCP_NODELAY). Run drives
// many connections for a duration and returns a Report: op and error counts, result
// mismatches against a float64 reference, throughput and latency percentiles computed from
// every sample. FloorServer is the least a DeviceGEMM server can do (parse, Sgemm, answer)
// and exists only so that benchmarks can state the cost of sstemu's layers as a ratio to it.
package loadgen
