// Package tcpfront is layer 1 of sstemu: the TCP front end that speaks the DeviceGEMM
// protocol of the reference PyTorch client (docs/wire.md). It decodes request frames into
// deviceserver.Op values, hands each to a deviceserver.Executor and writes the result back.
//
// The package has two halves. Decoder is a pure frame decoder over an io.Reader: it checks
// every length and shape against fixed limits before it allocates, so it is safe to feed
// with hostile bytes (and is fuzzed). Server is a net/http-style server: one goroutine per
// connection, many ops per connection, graceful Shutdown, counters, and socket options that
// remove the 40 ms Nagle/delayed-ACK stall the reference client would otherwise suffer.
//
// Beyond the reference, an op may ask for its timing record after its result ("timing":
// true), a TIME frame times shapes without tensors and an INFO frame describes the server
// (docs/wire.md); the records also go to the Server's optrace.Recorder, if set.
package tcpfront
