// Package protocol defines the structures that cross the lower layers of the stack: the
// SSTRequest and SSTResponse written to /dev/sst0 and carried over the virtqueue and the SST
// socket, the SSTConfig of the device's config space and the SSTEvent of the event queue;
// and the virtio-sst constants both ends of the virtqueues need (virtio.go).
//
// Every structure is packed and little-endian, exactly as the reference sst-protocol.h lays
// it out; docs/sst-protocol.md gives every byte offset and code. This package only encodes
// and decodes bytes; it does no I/O.
package protocol
