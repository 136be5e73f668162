// Package sstdev is layer 3 of sstemu: the /dev/sst0 … /dev/sst15 character devices as the
// virtio-sst kernel driver presents them, emulated in-process on top of a split virtqueue
// (package virtqueue) and the virtio-sst device (package virtiodev).
//
// # The driver
//
// A Device plays the driver's probe: it negotiates features with its Backend (a
// *virtiodev.Device), lays out the three 128-entry virtqueues in a guest memory of its
// own, attaches them, posts buffers on the event queue (and consumes the events the device
// sends: link up, link down, reset), and becomes ready. It pre-allocates NumSlots request
// slots in guest memory, each a 4104-byte device-readable buffer and a 4112-byte
// device-writable buffer, which all requests share and reuse: a request is one
// two-descriptor chain, so 64 slots fill the 128 descriptors of the request queue exactly.
//
// # The file
//
// Open returns a *File whose Write, Read, Poll, Ioctl and Close behave as the driver's
// file operations do, including their errors:
//
//	write(count < 4104)        EINVAL
//	write                      copies the first 4104 bytes, overwrites request_id with the
//	                           device's counter (1, 2, …), submits one chain, notifies the
//	                           device (unless it suppressed notifications), blocks until
//	                           the answer (Config.Timeout, default 5 s, then ETIMEDOUT),
//	                           stores the response in the file and returns 4104
//	read, no stored response   EAGAIN
//	read(count < 4112)         EINVAL
//	read                       copies the 4112-byte response, clears it, returns 4112
//	poll                       POLLOUT|POLLWRNORM, plus POLLIN|POLLRDNORM while a response
//	                           is stored
//	ioctl                      ENOTTY
//	open, device not ready     ENODEV (before Bind, after Close)
//	any op on a closed file    EBADF
//
// Errors are what *os.File returns for the same system-call errors: an *os.PathError
// whose Err is the syscall.Errno, with Op "open", "write", "read", "poll", "ioctl" or
// "close" and Path "/dev/sstN". errors.Is(err, syscall.ETIMEDOUT) and errors.As(err,
// &errno) therefore work identically on the emulation and on a real device file; an op on
// a closed File also matches os.ErrClosed, as *os.File's does. Write keeps writing until
// the whole buffer is consumed, as (*os.File).Write does, so a 4104-byte write is exactly
// one request. A File's methods take and return plain bytes and integers, so a File can be
// served to other processes unchanged.
//
// Beyond the reference driver: a Write that finds every slot in flight waits for one
// (within the same timeout) instead of failing; a Write interrupted by Close of its File
// returns EINTR; a timed-out request's slot stays with the device until the device answers
// it (or is reset) and is reused only then; a second Write before a Read replaces the stored
// response; a device reset fails the requests in flight with EIO.
//
// # Concurrency and cost
//
// All methods are safe for concurrent use. Many Files on one Device share its request
// queue; submissions and completions take one short queue lock each, and the completion
// (the device's interrupt) wakes the waiting writer, which copies the response out of
// guest memory itself. A request allocates nothing.
package sstdev
