// Package stack builds sstemu's in-process stack, the five layers wired to each other,
// in one place: the `sstemu serve` command, its telemetry and the benchmarks and tests
// that need the real layers all use Build.
//
// Build reads from layer 5 down to layer 1, as each layer needs the one below it:
//
//	L5  sstcomponent.Component   in-process, or an external SST on Options.SSTSocket
//	L4  virtiodev.Device         one per device, linked to L5 through a Dialer
//	L3  sstdev.Devices           /dev/sst0 … bound to the L4 devices
//	L2  deviceserver.Server      opens handles on L3 (or on Options.DeviceFile)
//	L1  tcpfront.Server          the DeviceGEMM front end, executing ops on L2
//
// With Options.DeviceFile set, layers 3–5 are that real device file and only layers 1–2
// are built. Build waits (at most Options.LinkWait) until every L4 device's link to layer
// 5 is up, as the L3 driver learns from the device's LINK_UP event, so that the first ops
// are timed. The caller serves L1 (Front().Serve), then calls Close, which releases the
// layers top-down, and WriteReport, which prints every layer's statistics.
//
// This package and cmd/sstemu are the only ones allowed to import every layer (see
// internal/layering).
package stack
