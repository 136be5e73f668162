//go:build unix

package sstcomponent

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// DefaultSocketPath is the reference component's default socket_path.
const DefaultSocketPath = "/tmp/qemu-sst-linux.sock"

// Sentinel errors of Listen, wrapped in a *ListenError.
var (
	// ErrSocketInUse: a live process accepts connections on the socket.
	ErrSocketInUse = errors.New("a live process is listening on it")
	// ErrNotSocket: something other than a socket exists at the path.
	ErrNotSocket = errors.New("it exists and is not a socket; refusing to remove it")
)

// ListenError says why Listen could not listen on a path.
type ListenError struct {
	Path string
	Err  error
}

// Error implements error.
func (e *ListenError) Error() string {
	return fmt.Sprintf("sstcomponent: listen on %s: %v", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *ListenError) Unwrap() error { return e.Err }

// maxSocketPath is the longest path a sockaddr_un holds, without its terminating NUL.
const maxSocketPath = 107

// probeTimeout bounds the connection attempt that tells a live socket from a stale one.
const probeTimeout = time.Second

// Listen listens on a Unix stream socket at path, as the SST component does, but safely:
//   - a socket file nobody accepts on (left by a crash) is removed first;
//   - if a live process accepts on it, Listen fails with ErrSocketInUse;
//   - anything at path that is not a socket is left alone: ErrNotSocket;
//   - the socket is created with mode 0600 whatever the umask (it is made 0600 before it
//     starts listening, so nobody else can connect in between);
//   - closing the listener removes the socket file, if it is still the one created here.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, &ListenError{Path: path, Err: fmt.Errorf("path is %d bytes, a Unix socket path holds at most %d", len(path), maxSocketPath)}
	}
	if err := removeStale(path); err != nil {
		return nil, &ListenError{Path: path, Err: err}
	}
	l, err := listenPrivate(path)
	if err != nil {
		return nil, &ListenError{Path: path, Err: err}
	}
	return l, nil
}

// removeStale removes a socket file at path that no process accepts on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return ErrNotSocket
	}
	c, err := net.DialTimeout("unix", path, probeTimeout)
	if err == nil {
		_ = c.Close()
		return ErrSocketInUse
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether the existing socket is in use: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale socket: %w", err)
	}
	return nil
}

// listenPrivate binds a socket at path, makes it 0600, and only then listens.
func listenPrivate(path string) (net.Listener, error) {
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	fail := func(op string, err error, created bool) (net.Listener, error) {
		_ = syscall.Close(fd)
		if created {
			_ = os.Remove(path)
		}
		return nil, os.NewSyscallError(op, err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return fail("bind", err, false)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fail("chmod", err, true)
	}
	if err := syscall.Listen(fd, syscall.SOMAXCONN); err != nil {
		return fail("listen", err, true)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail("lstat", err, true)
	}
	f := os.NewFile(uintptr(fd), path)
	l, err := net.FileListener(f)
	_ = f.Close()
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return &socketListener{Listener: l, path: path, created: fi}, nil
}

// socketListener removes its socket file on Close.
type socketListener struct {
	net.Listener
	path    string
	created fs.FileInfo
	once    sync.Once
	err     error
}

// Close stops listening and removes the socket file, unless something else has replaced it
// at the path since. Closing again returns net.ErrClosed.
func (l *socketListener) Close() error {
	first := false
	l.once.Do(func() {
		first = true
		l.err = l.Listener.Close()
		if fi, err := os.Lstat(l.path); err == nil && os.SameFile(fi, l.created) {
			if err := os.Remove(l.path); err != nil && l.err == nil {
				l.err = err
			}
		}
	})
	if !first {
		return net.ErrClosed
	}
	return l.err
}
