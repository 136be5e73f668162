package sstfuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/sstdev"
)

// FSName is the file system's name in /proc/self/mountinfo (type fuse.sstemu).
const FSName = "sstemu"

// fileMode is the mode of DIR/sstN: anyone may open it, as udev makes /dev/sstN.
const fileMode = 0o666

// Device is what a mount serves as one file: an emulated /dev/sstN.
type Device interface {
	Open() (*sstdev.File, error)
}

// Mount is a mounted directory of device files. Unmount it when done.
type Mount struct {
	dir    string
	server *fuse.Server
	log    zerolog.Logger
	once   sync.Once
	err    error
}

// Options configure a Mount.
type Options struct {
	// Logger receives the mount's lines (mounted, stale mount replaced, unmounted).
	Logger zerolog.Logger
	// Debug logs every FUSE request of go-fuse to stderr.
	Debug bool
}

// ErrBusy is returned by New when a live FUSE file system is mounted at the directory.
var ErrBusy = errors.New("sstfuse: a live FUSE file system is mounted there")

// New mounts devs at dir (an existing directory) as dir/sst0, dir/sst1, …: it replaces a
// stale mount a crash left there, and returns once the files can be opened.
func New(dir string, devs []Device, opts Options) (*Mount, error) {
	if len(devs) == 0 || len(devs) > sstdev.MaxDevices {
		return nil, fmt.Errorf("sstfuse: %d devices: want 1 … %d", len(devs), sstdev.MaxDevices)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("sstfuse: %w", err)
	}
	if err := clearStale(abs, opts.Logger); err != nil {
		return nil, err
	}
	// The directory must exist, like mount(8)'s: creating it would hide a typo in the path.
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("sstfuse: the mount point must be an existing directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("sstfuse: the mount point %s is not a directory", abs)
	}
	root := &rootNode{devs: devs}
	var zero time.Duration // no kernel caching of entries or attributes
	server, err := fs.Mount(abs, root, &fs.Options{
		EntryTimeout: &zero, AttrTimeout: &zero, NegativeTimeout: &zero,
		MountOptions: fuse.MountOptions{
			FsName: FSName, Name: FSName,
			DirectMount: true,              // as root, mount(2) itself; else fusermount
			AllowOther:  os.Geteuid() == 0, // the device is for every process, as /dev/sstN
			MaxWrite:    2 * protocol.ResponseSize,
			Debug:       opts.Debug,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("sstfuse: mount %s: %w", abs, err)
	}
	m := &Mount{dir: abs, server: server, log: opts.Logger}
	m.log.Info().Str("dir", abs).Int("devices", len(devs)).Msg("device files mounted")
	return m, nil
}

// Dir returns the mounted directory.
func (m *Mount) Dir() string { return m.dir }

// Path returns the file of device i, dir/sst<i>.
func (m *Mount) Path(i int) string { return filepath.Join(m.dir, fmt.Sprintf("sst%d", i)) }

// Unmount unmounts the directory and waits for the FUSE server to end. Later calls
// return the first one's result.
func (m *Mount) Unmount() error {
	m.once.Do(func() {
		m.err = m.server.Unmount()
		if m.err != nil {
			// Files still open: detach now, the kernel finishes when they close.
			m.err = syscall.Unmount(m.dir, syscall.MNT_DETACH)
		}
		m.server.Wait()
		m.log.Info().Str("dir", m.dir).Msg("device files unmounted")
	})
	return m.err
}

// clearStale detaches a dead FUSE mount at dir (its stat answers ENOTCONN) and refuses a
// live one.
func clearStale(dir string, log zerolog.Logger) error {
	_, err := os.Stat(dir)
	if errors.Is(err, syscall.ENOTCONN) {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("sstfuse: a stale mount at %s cannot be removed: %w", dir, err)
		}
		log.Warn().Str("dir", dir).Msg("stale mount of a process that died replaced")
		return nil
	}
	if fuseMounted(dir) {
		return fmt.Errorf("sstfuse: %s: %w", dir, ErrBusy)
	}
	return nil
}

// fuseMounted reports whether /proc/self/mountinfo lists a FUSE file system at dir.
func fuseMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options … - fstype source super
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMount(fields[4]) != dir {
			continue
		}
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) && strings.HasPrefix(fields[i+1], "fuse") {
				return true
			}
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// rootNode is DIR: one file per device.
type rootNode struct {
	fs.Inode
	devs []Device
}

var _ fs.NodeOnAdder = (*rootNode)(nil)

// OnAdd creates sst0 … sst{N-1}.
func (r *rootNode) OnAdd(ctx context.Context) {
	for i, d := range r.devs {
		n := r.NewPersistentInode(ctx, &devNode{dev: d}, fs.StableAttr{Mode: syscall.S_IFREG, Ino: uint64(i) + 2})
		r.AddChild(fmt.Sprintf("sst%d", i), n, false)
	}
}

// devNode is DIR/sstN.
type devNode struct {
	fs.Inode
	dev Device
}

var (
	_ fs.NodeOpener    = (*devNode)(nil)
	_ fs.NodeGetattrer = (*devNode)(nil)
	_ fs.NodeSetattrer = (*devNode)(nil)
)

// Getattr reports a 0666 regular file of size 0.
func (n *devNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | fileMode
	out.Size = 0
	return fs.OK
}

// Setattr accepts and ignores changes (O_TRUNC, chmod): the file has no content.
func (n *devNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return n.Getattr(ctx, f, out)
}

// Open opens a context on the device, as open(2) on /dev/sstN.
func (n *devNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	f, err := n.dev.Open()
	if err != nil {
		return nil, 0, errnoOf(err)
	}
	return &handle{dev: n.dev, f: f}, fuse.FOPEN_DIRECT_IO | fuse.FOPEN_NONSEEKABLE, fs.OK
}
