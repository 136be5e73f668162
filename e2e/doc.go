// Package e2e drives the built sstemu binary over real sockets: the DeviceGEMM front end on
// TCP, and an external `sstemu sst` on a Unix socket.
package e2e
