// Package optrace is what sstemu records about each op's simulated cost, and where it
// sends it: the timing record (one JSON object per op, the trailer of docs/wire.md), the
// per-device simulated timeline that gives each op its start and end cycle, a streamed
// Chrome/Perfetto trace of a run, a JSON Lines op log and a bounded ring of recent records.
//
// It sits beside layer 1: the front end (pkg/tcpfront) fills a Record from layer 2's
// answer and hands it to a Recorder; the command wires the sinks. Nothing here blocks an op
// on a slow disk: the trace and the log are written by their own goroutine from a bounded
// buffer, and what does not fit is dropped and counted (Stats).
package optrace
