package sstfuse

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstdev"
)

// handle is one open file description: the driver's context, an sstdev.File. After an
// interrupted write the context is closed and the next write opens a fresh one.
type handle struct {
	dev Device

	mu     sync.Mutex
	f      *sstdev.File // nil after an interrupted write
	closed bool
}

var (
	_ fs.FileWriter   = (*handle)(nil)
	_ fs.FileReader   = (*handle)(nil)
	_ fs.FileReleaser = (*handle)(nil)
	_ fs.FileIoctler  = (*handle)(nil)
	_ fs.FileFlusher  = (*handle)(nil)
)

// file returns the open context, opening a fresh one after an interrupted write.
func (h *handle) file() (*sstdev.File, syscall.Errno) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, syscall.EBADF
	}
	if h.f == nil {
		f, err := h.dev.Open()
		if err != nil {
			return nil, errnoOf(err)
		}
		h.f = f
	}
	return h.f, 0
}

// abandon closes f, whose write was interrupted: the waiting write returns EINTR and
// the context's slot is released.
func (h *handle) abandon(f *sstdev.File) {
	h.mu.Lock()
	if h.f == f {
		h.f = nil
	}
	h.mu.Unlock()
	_ = f.Close()
}

// Write submits the first 4104 bytes of data as one request and blocks until the device
// has answered, as the driver's write; fewer bytes are EINVAL. The offset is ignored (the
// file is not seekable).
func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if len(data) < protocol.RequestSize {
		return 0, syscall.EINVAL
	}
	f, errno := h.file()
	if errno != 0 {
		return 0, errno
	}
	stop := context.AfterFunc(ctx, func() { h.abandon(f) }) // the caller was interrupted or killed
	n, err := f.Write(data[:protocol.RequestSize])
	if !stop() {
		return 0, syscall.EINTR
	}
	if err != nil {
		return 0, errnoOf(err)
	}
	return uint32(n), fs.OK
}

// Read returns the stored answer, once, as the driver's read: EAGAIN with none stored,
// EINVAL into fewer than 4112 bytes.
func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	f, errno := h.file()
	if errno != 0 {
		return nil, errno
	}
	n, err := f.Read(dest)
	if err != nil {
		return nil, errnoOf(err)
	}
	return fuse.ReadResultData(dest[:n]), fs.OK
}

// Ioctl answers ENOTTY, as the driver does for every command.
func (h *handle) Ioctl(ctx context.Context, cmd uint32, arg uint64, input, output []byte) (int32, syscall.Errno) {
	return 0, syscall.ENOTTY
}

// Flush is close(2) of one descriptor; the context lives until Release.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return fs.OK }

// Release closes the context when the last descriptor of the open goes, including when
// its process was killed.
func (h *handle) Release(ctx context.Context) syscall.Errno {
	h.mu.Lock()
	f := h.f
	h.f, h.closed = nil, true
	h.mu.Unlock()
	if f != nil {
		_ = f.Close()
	}
	return fs.OK
}

// errnoOf extracts the driver's errno from an sstdev error (an *os.PathError holding a
// syscall.Errno); anything else is EIO.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return syscall.EIO
}
