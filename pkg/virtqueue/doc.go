// Package virtqueue implements the VirtIO 1.x split virtqueue (VirtIO 1.2 §2.7; §2.6 in
// VirtIO 1.1) over an emulated guest memory, for layer L3 ↔ L4 of sstemu: the /dev/sst0
// driver (pkg/sstdev) and the virtio-sst device (pkg/virtiodev) talk only through it.
//
// # Parts
//
//   - GuestMemory: a byte arena at guest address 0, reached only through bounds-checked,
//     overflow-safe accessors (ReadAt, WriteAt, little-endian U16/U32/U64), with a bump
//     allocator (Alloc, AllocQueue) for rings and buffers.
//   - Layout: where the descriptor table (16-aligned, 16·size bytes), available ring
//     (2-aligned, 6+2·size) and used ring (4-aligned, 6+8·size) lie (§2.7, §2.7.1). The
//     queue size is a power of two up to 32768; virtio-sst uses 128.
//   - Driver: Add a chain of device-readable then device-writable buffers, Publish the
//     available idx and learn whether to notify the device, PopUsed to collect returned
//     chains. Everything the device wrote is validated (*UsedError, *RingError).
//   - Device: Pop the next available chain, walked and validated (*ChainError, with the
//     rule and its spec section), Gather its readable bytes, Scatter into its writable
//     buffers, PushUsed it back and ask NeedsInterrupt.
//
// Indices are free-running uint16 values that wrap at 65536 (§2.7.13.3); every comparison
// is done in modulo-2^16 arithmetic.
//
// # Validation
//
// The device side treats the whole ring area as hostile. Pop checks, per chain: head and
// next indices inside the table (§2.7.5), at most Queue Size descriptors so a loop is an
// error and never a hang (§2.7.5.2, §2.7.5.3.1), at most 2^32 bytes in total (§2.7.5.2),
// every buffer inside guest memory, no readable buffer after a writable one (§2.7.4.2),
// and a head not already held by the device (§2.7.13.1); per ring, an available idx that
// moved by more than the queue size (§2.7.6.1). Indirect descriptors (§2.7.5.3) are
// supported when Features.IndirectDesc is set and rejected otherwise; inside them nesting,
// INDIRECT with NEXT, and a table length that is zero or not a multiple of 16 are errors.
// Each rule is a Rule value; Rule.Section cites the specification. A chain error consumes
// one ring entry and, when ChainError.Returnable, the caller returns the head with
// PushUsed(head, 0); a RingError is sticky (the device would need a reset).
//
// # Notification suppression
//
// Without VIRTIO_F_EVENT_IDX the flags words are used: VIRTQ_AVAIL_F_NO_INTERRUPT
// (Driver.DisableInterrupts) and VIRTQ_USED_F_NO_NOTIFY (Device.DisableNotifications).
// With it, used_event and avail_event are maintained instead and compared with the
// specification's wrap-safe vring_need_event (§2.7.7, §2.7.10). A busy device drains the
// ring like this, so the driver notifies it about once per burst instead of per request:
//
//	for range doorbell {
//		dev.DisableNotifications()
//		for {
//			c, ok, err := dev.Pop()
//			// handle err (PushUsed(head, 0) if Returnable) …
//			if !ok {
//				if pending, _ := dev.EnableNotifications(); !pending {
//					break
//				}
//				dev.DisableNotifications()
//				continue
//			}
//			// serve c, then dev.PushUsed(c.Head, n); if dev.NeedsInterrupt() { irq() }
//		}
//	}
//
// # Concurrency
//
// The driver and the device normally run on different goroutines and share only the
// GuestMemory. Every GuestMemory access holds its sync.Mutex, so each accessor call is
// atomic and sequentially consistent; that is the memory barrier the specification asks
// for between filling descriptors and publishing idx (§2.7.13.3) and between publishing
// idx and reading the other side's suppression fields (§2.7.13.4), and it keeps
// concurrent access race-detector clean even when a misbehaving peer writes the ring
// under us. sync/atomic has no 16-bit operations, and the idx words share 32-bit words
// with flags or with bytes past the ring, so a lock is the simpler correct choice. It is
// cheap: about 20 ns per uncontended 16-bit access; a sync.RWMutex was measured too and
// made writes slower (35 vs 19 ns) without making reads from two goroutines faster, so it
// was dropped (see BenchmarkGuestMemory).
//
// Driver and Device each guard their own bookkeeping with a mutex, so several goroutines
// may Add while another pops used chains, or one goroutine Pops while workers PushUsed. The device copies each descriptor once at Pop time, so a driver
// rewriting the table afterwards cannot move the device's accesses.
package virtqueue
