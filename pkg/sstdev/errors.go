package sstdev

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// File operation names, as *os.File names them in an *os.PathError.
const (
	opOpen  = "open"
	opWrite = "write"
	opRead  = "read"
	opPoll  = "poll"
	opIoctl = "ioctl"
	opClose = "close"
)

// pathError is the error a file operation returns: errno wrapped as *os.File wraps it.
func pathError(op, path string, errno syscall.Errno) error {
	return &os.PathError{Op: op, Path: path, Err: errno}
}

// closedError is the Err of an *os.PathError for an operation on a closed File. It
// unwraps to syscall.EBADF, what the system call returns for a closed descriptor, and
// also matches os.ErrClosed, what *os.File returns, so either test works.
type closedError struct{}

// Error implements error.
func (closedError) Error() string { return syscall.EBADF.Error() }

// Unwrap returns syscall.EBADF.
func (closedError) Unwrap() error { return syscall.EBADF }

// Is makes errors.Is(err, os.ErrClosed) true.
func (closedError) Is(target error) bool { return target == os.ErrClosed }

func closedFileError(op, path string) error {
	return &os.PathError{Op: op, Path: path, Err: closedError{}}
}

// ErrClosed is returned by Bind, Reset and WaitLinkUp after Close.
var ErrClosed = errors.New("sstdev: device closed")

// ErrBound is returned by Bind on a Device that already has a backend.
var ErrBound = errors.New("sstdev: device already bound")

// ErrUnbound is returned by Reset on a Device without a backend.
var ErrUnbound = errors.New("sstdev: device not bound")

// ConfigError reports an invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

// Error implements error.
func (e *ConfigError) Error() string {
	return fmt.Sprintf("sstdev: config %s: %s", e.Field, e.Reason)
}

// ProbeError reports the probe step at which binding a backend failed.
type ProbeError struct {
	Device string // "/dev/sstN"
	Step   string // "features", "queues", "attach" or "events"
	Err    error
}

// Error implements error.
func (e *ProbeError) Error() string {
	return fmt.Sprintf("sstdev: %s: probe %s: %v", e.Device, e.Step, e.Err)
}

// Unwrap returns the underlying error.
func (e *ProbeError) Unwrap() error { return e.Err }
