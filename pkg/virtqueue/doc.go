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
//   - DeviceQueue: Pop the next available chain, walked and validated (*ChainError, with the
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
// (Driver.DisableInterrupts) and VIRTQ_USED_F_NO_NOTIFY (DeviceQueue.DisableNotifications).
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
// GuestMemory, which takes no lock: it follows VirtIO 1.2 §2.7.13 "Supplying Buffers to
// The Device", where memory barriers order plain accesses around the ring indices.
//
//   - Atomic: every 16-bit ring field — avail.flags, avail.idx, the avail ring entries,
//     used_event, used.flags, used.idx, avail_event — is read with ReadU16 and written
//     with WriteU16, which at even addresses are sync/atomic operations on the naturally
//     aligned 32-bit word holding the field (a load; a load and compare-and-swap that
//     keeps the other half). Each word is written by one side only, apart from
//     hostile tests: avail.flags+idx, the avail ring and used_event by the driver,
//     used.flags+idx and avail_event by the device.
//   - Plain: descriptors, used elements and buffer contents (ReadAt, WriteAt, Gather,
//     Scatter, the 32- and 64-bit accessors) are ordinary copies, bounds-checked on
//     every access as before.
//   - Release/acquire (§2.7.13.3, §2.7.8.2): the driver writes descriptors, buffers and
//     the ring entry, then stores avail.idx atomically; the device loads avail.idx
//     atomically before reading any of them. Likewise the device writes the used element
//     and the buffers, then stores used.idx; the driver loads used.idx before reading
//     them. In the Go memory model an atomic load that observes an atomic store is
//     synchronized after it, so the plain accesses are ordered (and the race detector
//     sees the same edge). A descriptor or buffer is rewritten only after its chain came
//     back through used.idx, which orders the rewrite after the device's reads.
//   - Full barrier (§2.7.13.4, §2.7.7.2, §2.7.10.2): Go's atomics are sequentially
//     consistent, so "store my idx, then load your event field" on one side and "store my
//     event field, then load your idx" on the other (Publish against
//     EnableNotifications, PushUsed+NeedsInterrupt against EnableInterrupts) cannot both
//     miss: no notification is lost.
//
// Two bytes share the atomic word of a field that ends a ring part: those after
// used_event and after avail_event, and those before a ring placed at 2 mod 4. NewLayout
// leaves the first as padding and AllocQueue reserves the second, so queues placed by
// AllocQueue share no atomic word with plain data. A driver that places a buffer in such
// bytes, or points a descriptor at the rings, gets race-detector reports and garbage
// values, never out-of-arena accesses: the device validates what it reads either way.
// The previous design held one sync.Mutex per GuestMemory access (about 20 ns each and
// the largest lock cost in the timing path); the atomic load costs about 4 ns.
//
// Driver and DeviceQueue each guard their own bookkeeping with a mutex, so several goroutines
// may Add while another pops used chains, or one goroutine Pops while workers PushUsed.
// The device copies each descriptor once at Pop time, so a driver rewriting the table
// afterwards cannot move the device's accesses.
package virtqueue
