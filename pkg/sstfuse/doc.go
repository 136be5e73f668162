// Package sstfuse exposes emulated devices (pkg/sstdev) to other processes as files
// DIR/sst0 … DIR/sst{N-1} of a FUSE file system (`sstemu serve --mount DIR`), so that an
// unmodified program written for the virtio-sst driver's /dev/sstN (the reference device
// server, its virtio_sst_wrapper, a C or Python program) runs against layers 3–5 of
// sstemu, through a symlink if it hard-codes the path: `ln -s DIR/sst0 /dev/sst0`. It sits
// beside layer 3: each open of a file is one sstdev.File, the driver's per-open context.
//
// What a program sees, as the driver defines it (docs/sst-protocol.md):
//
//	open     a context of its own; ENODEV while the device is not ready
//	write    fewer than 4104 bytes: EINVAL; otherwise the first 4104 bytes are one
//	         SSTRequest, request_id is overwritten with the driver's counter, and the
//	         write blocks until the device answers (ETIMEDOUT after --device-timeout)
//	         and returns 4104; a signal that interrupts it ends it with EINTR
//	read     no stored answer: EAGAIN; fewer than 4112 bytes: EINVAL; otherwise the
//	         4112-byte SSTResponse, once
//	poll     FUSE cannot say "readable only while an answer is stored": go-fuse answers
//	         FUSE_POLL with ENOSYS, and the kernel then reports every file readable and
//	         writable at once (its default mask); a program that polls still learns
//	         from read's EAGAIN that nothing is stored. Since write blocks until the
//	         answer is stored, a read after a write never needs to wait. (Go's os.File
//	         parks a read that returns EAGAIN on its poller, which FUSE wakes once:
//	         from Go, read before write with syscall.Read.)
//	ioctl    ENOTTY
//
// Files are regular files of mode 0666 and size 0, opened with direct I/O, so every
// write(2) and read(2) reaches the handlers with the caller's own count and no caching.
// A process killed in the middle of a write frees its context: the kernel interrupts
// the request, the handler closes the context (its slot in the device is released when
// the device's answer or its timeout comes) and the release of the file descriptor
// finishes the rest. A file descriptor whose write was interrupted opens a fresh context
// at its next write.
//
// Mount unmounts a stale mount left at DIR by a process that died (a FUSE mount whose
// server is gone answers ENOTCONN) and refuses a DIR that a live sstemu serves.
package sstfuse
