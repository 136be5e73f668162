package sstdev

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Poll event bits, with the values of Linux's asm-generic/poll.h (x86, arm64, riscv64).
const (
	POLLIN     = 0x0001 // readable: a response is stored
	POLLPRI    = 0x0002
	POLLOUT    = 0x0004 // writable: always, while the device exists
	POLLERR    = 0x0008
	POLLHUP    = 0x0010 // the device was removed
	POLLNVAL   = 0x0020 // the file is closed
	POLLRDNORM = 0x0040
	POLLWRNORM = 0x0100
)

// File is an open /dev/sstN: the driver's per-open context, which stores at most one
// response. Its methods behave as the driver's file operations and are safe for
// concurrent use; see the package documentation for their errors.
type File struct {
	dev     *Device
	closing chan struct{} // closed by Close: interrupts a waiting Write
	closed  atomic.Bool

	mu     sync.Mutex
	stored bool
	resp   [protocol.ResponseSize]byte
}

// Open opens the device, as open(2) on /dev/sstN. It fails with ENODEV (in an
// *os.PathError) while the device is not ready: before Bind and after Close.
func (d *Device) Open() (*File, error) {
	if !d.ready.Load() {
		return nil, pathError(opOpen, d.path, syscall.ENODEV)
	}
	d.stats.opens.Add(1)
	d.stats.openFiles.Add(1)
	return &File{dev: d, closing: make(chan struct{})}, nil
}

// Name returns the device path, as (*os.File).Name does.
func (f *File) Name() string { return f.dev.path }

// LinkGeneration returns how many LINK_UP events the device has received: it changes each
// time the device's link to layer 5 is re-established, perhaps to another SST. The real
// driver has no such call; layer 2 uses it, where present, to re-decide how it times GEMMs.
func (f *File) LinkGeneration() uint64 { return f.dev.LinkGeneration() }

// Write sends requests, as (*os.File).Write does on the real device: each write(2) of at
// least 4104 bytes submits their first 4104 bytes as one SSTRequest and blocks until the
// answer is stored, so Write issues len(p)/4104 requests and fails with EINVAL on a
// remainder (or on a p shorter than 4104 bytes). It returns the bytes consumed; any error
// is an *os.PathError holding the syscall.Errno: EINVAL, ETIMEDOUT, EINTR (the File was
// closed meanwhile), ENODEV (the device was removed), EIO (the device was reset or
// answered short), EBADF (the File is closed).
func (f *File) Write(p []byte) (int, error) {
	n := 0
	for {
		m, err := f.write(p[n:])
		n += m
		if err != nil || n == len(p) {
			return n, err
		}
	}
}

// write is one write(2).
func (f *File) write(p []byte) (int, error) {
	d := f.dev
	if f.closed.Load() {
		return 0, closedFileError(opWrite, d.path)
	}
	if len(p) < protocol.RequestSize {
		return 0, pathError(opWrite, d.path, syscall.EINVAL)
	}
	if d.closed.Load() {
		return 0, pathError(opWrite, d.path, syscall.ENODEV)
	}
	s, remain, errno := d.acquire(f)
	if errno != 0 {
		return 0, f.failed(errno, false)
	}
	if remain <= 0 {
		d.release(s)
		return 0, f.failed(syscall.ETIMEDOUT, false)
	}
	if err := d.mem.WriteAt(p[:protocol.RequestSize], s.reqAddr()); err != nil {
		d.release(s)
		return 0, pathError(opWrite, d.path, syscall.EIO)
	}
	if errno := d.submit(s); errno != 0 {
		d.release(s)
		return 0, f.failed(errno, false)
	}
	if errno := f.await(s, remain); errno != 0 {
		return 0, f.failed(errno, true)
	}
	return protocol.RequestSize, nil
}

// failed counts a failed write and returns its error.
func (f *File) failed(errno syscall.Errno, submitted bool) error {
	st := &f.dev.stats
	switch {
	case errno == syscall.ETIMEDOUT:
		st.timeouts.Add(1)
	case errno == syscall.EINTR:
		st.interrupted.Add(1)
	case submitted:
		st.failed.Add(1)
	}
	return pathError(opWrite, f.dev.path, errno)
}

// await waits for the answer to the request in s and stores it, or gives s up to the
// completion after the timeout, on Close of f or on removal of the device.
func (f *File) await(s *slot, timeout time.Duration) syscall.Errno {
	d := f.dev
	// An in-process device answers on the writer's goroutine, before submit returns: then
	// the answer is here already and the timer is never armed.
	select {
	case <-s.done:
		return f.store(s)
	default:
	}
	s.timer.Reset(timeout)
	var errno syscall.Errno
	select {
	case <-s.done:
		s.timer.Stop()
		return f.store(s)
	case <-s.timer.C:
		errno = syscall.ETIMEDOUT
	case <-f.closing:
		s.timer.Stop()
		errno = syscall.EINTR
	case <-d.gone:
		s.timer.Stop()
		errno = syscall.ENODEV
	}
	d.stats.abandoned.Add(1)
	if s.state.CompareAndSwap(slotWaiting, slotAbandoned) {
		d.log.Debug().Uint64("request_id", s.id).Int("errno", int(errno)).Msg("request abandoned")
		return errno
	}
	// The answer came at the same moment: take it.
	d.stats.abandoned.Add(-1)
	<-s.done
	return f.store(s)
}

// store keeps the answer in s as the file's response and frees s.
func (f *File) store(s *slot) syscall.Errno {
	d := f.dev
	errno := s.errno
	if errno == 0 {
		f.mu.Lock()
		err := d.mem.ReadAt(f.resp[:], s.respAddr())
		f.stored = err == nil
		f.mu.Unlock()
		if err != nil {
			errno = syscall.EIO
		}
	}
	d.release(s)
	if errno == 0 {
		d.stats.answers.Add(1)
	}
	return errno
}

// Read returns the stored response, as read(2) on the device: EAGAIN when none is
// stored, EINVAL when p is shorter than 4112 bytes; otherwise it copies the 4112-byte
// response, clears it and returns 4112. Like (*os.File).Read, an empty p reads nothing
// and returns 0, nil.
func (f *File) Read(p []byte) (int, error) {
	d := f.dev
	if f.closed.Load() {
		return 0, closedFileError(opRead, d.path)
	}
	if len(p) == 0 {
		return 0, nil
	}
	f.mu.Lock()
	if !f.stored {
		f.mu.Unlock()
		return 0, pathError(opRead, d.path, syscall.EAGAIN)
	}
	if len(p) < protocol.ResponseSize {
		f.mu.Unlock()
		return 0, pathError(opRead, d.path, syscall.EINVAL)
	}
	n := copy(p, f.resp[:])
	f.stored = false
	f.mu.Unlock()
	d.stats.reads.Add(1)
	return n, nil
}

// Poll returns the file's ready events, as the driver's poll: POLLOUT|POLLWRNORM always,
// plus POLLIN|POLLRDNORM while a response is stored. After the device is removed POLLHUP
// replaces POLLOUT|POLLWRNORM. On a closed File it returns POLLNVAL and EBADF.
func (f *File) Poll() (uint32, error) {
	d := f.dev
	if f.closed.Load() {
		return POLLNVAL, closedFileError(opPoll, d.path)
	}
	var mask uint32 = POLLOUT | POLLWRNORM
	if d.closed.Load() {
		mask = POLLHUP
	}
	f.mu.Lock()
	if f.stored {
		mask |= POLLIN | POLLRDNORM
	}
	f.mu.Unlock()
	return mask, nil
}

// Ioctl is ioctl(2) on the device: the driver defines no commands, so it fails with
// ENOTTY (EBADF on a closed File).
func (f *File) Ioctl(cmd uint32, arg uintptr) (int, error) {
	if f.closed.Load() {
		return 0, closedFileError(opIoctl, f.dev.path)
	}
	return 0, pathError(opIoctl, f.dev.path, syscall.ENOTTY)
}

// Close releases the file and its stored response. A Write waiting on it returns EINTR;
// its request's slot is reclaimed when the device answers. Closing twice fails with EBADF.
func (f *File) Close() error {
	if f.closed.Swap(true) {
		return closedFileError(opClose, f.dev.path)
	}
	close(f.closing)
	f.mu.Lock()
	f.stored = false
	f.mu.Unlock()
	f.dev.stats.openFiles.Add(-1)
	return nil
}
