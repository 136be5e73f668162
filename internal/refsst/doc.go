// Package refsst is a test stand-in for the real SST component acalsim.VirtIODevice, as
// ACALSim ships it and as the tutorial extends it, with the limits of the real one that a
// client must survive (found by running SST-Core 16.0.0 with that component behind
// `sstemu serve --sst-socket`, issue 13): it serves one client at a time, drops a request
// that arrives split across two reads, and answers each request with one non-blocking
// send that closes the connection when the socket is full. Tests and benchmarks of
// layers 4 and up use it where the real SST is not installed; sstemu's own layer 5 is
// pkg/sstcomponent, which has none of these limits.
package refsst
