package sstdev_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/internal/syncbuffer"
	"github.com/sstemu/sstemu/pkg/sstdev"
)

func TestNewConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   sstdev.Config
		field string
	}{
		{"negative index", sstdev.Config{Index: -1}, "Index"},
		{"index 16", sstdev.Config{Index: 16}, "Index"},
		{"negative timeout", sstdev.Config{Timeout: -time.Second}, "Timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sstdev.New(tc.cfg)
			var ce *sstdev.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tc.field, ce.Field)
			assert.Contains(t, err.Error(), "sstdev: config "+tc.field)
		})
	}
	for _, n := range []int{0, 17} {
		_, err := sstdev.NewDevices(n, sstdev.Config{}, nil)
		var ce *sstdev.ConfigError
		require.ErrorAs(t, err, &ce, "NewDevices(%d)", n)
	}
}

func TestPaths(t *testing.T) {
	d, err := sstdev.New(sstdev.Config{Index: 15})
	require.NoError(t, err)
	assert.Equal(t, "/dev/sst15", d.Path())
	assert.Equal(t, "sst15", d.Name())
	assert.Equal(t, 15, d.Index())
	assert.Equal(t, "/dev/sst0", sstdev.Path(0))
}

// TestLifecycle walks a device through unbound, ready and removed, checking ENODEV where
// the driver returns it.
func TestLifecycle(t *testing.T) {
	d, err := sstdev.New(sstdev.Config{Index: 3})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })

	_, err = d.Open()
	requireErrno(t, err, "open", "/dev/sst3", syscall.ENODEV)
	assert.False(t, d.Ready())

	var l5 fakeL5
	require.NoError(t, d.Bind(newBackend(t, l5.serve)))
	require.True(t, d.Ready())
	require.ErrorIs(t, d.Bind(newBackend(t, l5.serve)), sstdev.ErrBound)
	waitLinkUp(t, d)

	cs := d.ConfigSpace()
	assert.Equal(t, uint32(0x00010000), cs.Version)
	assert.Equal(t, uint64(1), cs.MaxQueues)

	f, err := d.Open()
	require.NoError(t, err)
	assert.Equal(t, "/dev/sst3", f.Name())
	r := roundTrip(t, f, computeRequest(7, 2))
	assert.Equal(t, uint64(1), r.requestID)
	assert.Equal(t, uint64(2*fakeMul+fakeAdd), r.result)

	_, err = f.Write(computeRequest(8, 2))
	require.NoError(t, err)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "Close is idempotent")

	_, err = d.Open()
	requireErrno(t, err, "open", "/dev/sst3", syscall.ENODEV)
	_, err = f.Write(computeRequest(9, 2))
	requireErrno(t, err, "write", "/dev/sst3", syscall.ENODEV)
	mask, err := f.Poll()
	require.NoError(t, err)
	assert.Equal(t, uint32(sstdev.POLLHUP|sstdev.POLLIN|sstdev.POLLRDNORM), mask,
		"a removed device is not writable; the stored response stays readable")
	buf := make([]byte, respSize)
	n, err := f.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, respSize, n)
	assert.Equal(t, uint64(8), parseResponse(buf).user)
	require.ErrorIs(t, d.Bind(newBackend(t, l5.serve)), sstdev.ErrClosed)
	require.ErrorIs(t, d.Reset(), sstdev.ErrClosed)
	require.NoError(t, f.Close())

	st := d.Stats()
	assert.False(t, st.Ready)
	assert.Equal(t, int64(0), st.OpenFiles)
	assert.Equal(t, sstdev.NumSlots, st.FreeSlots)
}

func TestResetUnbound(t *testing.T) {
	d, err := sstdev.New(sstdev.Config{})
	require.NoError(t, err)
	require.ErrorIs(t, d.Reset(), sstdev.ErrUnbound)
	require.Error(t, d.Bind(nil))
}

// TestErrnoPaths checks every error of the file operations against the driver's.
func TestErrnoPaths(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	const path = "/dev/sst0"

	for _, tc := range []struct {
		name  string
		op    string
		errno syscall.Errno
		call  func(t *testing.T, f *sstdev.File) error
	}{
		{"write of 0 bytes", "write", syscall.EINVAL, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Write(nil)
			return err
		}},
		{"write of 4103 bytes", "write", syscall.EINVAL, func(t *testing.T, f *sstdev.File) error {
			n, err := f.Write(make([]byte, reqSize-1))
			assert.Zero(t, n)
			return err
		}},
		{"write of a 4096-byte request with a 32-bit id", "write", syscall.EINVAL, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Write(make([]byte, 4096))
			return err
		}},
		{"read with nothing stored", "read", syscall.EAGAIN, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Read(make([]byte, respSize))
			return err
		}},
		{"short read with nothing stored is EAGAIN first", "read", syscall.EAGAIN, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Read(make([]byte, 10))
			return err
		}},
		{"read of 4111 bytes", "read", syscall.EINVAL, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Write(computeRequest(1, 1))
			require.NoError(t, err)
			_, err = f.Read(make([]byte, respSize-1))
			// The response stays stored after the failed read.
			n, err2 := f.Read(make([]byte, respSize))
			require.NoError(t, err2)
			assert.Equal(t, respSize, n)
			return err
		}},
		{"ioctl", "ioctl", syscall.ENOTTY, func(t *testing.T, f *sstdev.File) error {
			_, err := f.Ioctl(0x5401, 0)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := r.open(t)
			requireErrno(t, tc.call(t, f), tc.op, path, tc.errno)
		})
	}

	// Every operation on a closed file: EBADF, matching os.ErrClosed as *os.File does.
	for _, tc := range []struct {
		op   string
		call func(f *sstdev.File) error
	}{
		{"write", func(f *sstdev.File) error { _, err := f.Write(computeRequest(1, 1)); return err }},
		{"read", func(f *sstdev.File) error { _, err := f.Read(make([]byte, respSize)); return err }},
		{"poll", func(f *sstdev.File) error {
			mask, err := f.Poll()
			assert.Equal(t, uint32(sstdev.POLLNVAL), mask)
			return err
		}},
		{"ioctl", func(f *sstdev.File) error { _, err := f.Ioctl(0, 0); return err }},
		{"close", func(f *sstdev.File) error { return f.Close() }},
	} {
		t.Run("closed file "+tc.op, func(t *testing.T) {
			f := r.open(t)
			require.NoError(t, f.Close())
			err := tc.call(f)
			var pe *os.PathError
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, tc.op, pe.Op)
			assert.Equal(t, path, pe.Path)
			assert.ErrorIs(t, err, syscall.EBADF)
			assert.ErrorIs(t, err, os.ErrClosed)
			assert.Equal(t, tc.op+" /dev/sst0: bad file descriptor", err.Error())
			var errno syscall.Errno
			require.ErrorAs(t, err, &errno)
			assert.Equal(t, syscall.EBADF, errno)
		})
	}
}

// TestErrorsMatchOSFile checks that the tests a caller writes against *os.File hold for
// the emulation too.
func TestErrorsMatchOSFile(t *testing.T) {
	real, err := os.Create(filepath.Join(t.TempDir(), "f"))
	require.NoError(t, err)
	require.NoError(t, real.Close())
	_, realErr := real.Write([]byte{1})

	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	f := r.open(t)
	require.NoError(t, f.Close())
	_, emuErr := f.Write(computeRequest(1, 1))

	for _, target := range []error{os.ErrClosed} {
		assert.Equal(t, errors.Is(realErr, target), errors.Is(emuErr, target), "errors.Is(%v)", target)
	}
	var realPE, emuPE *os.PathError
	require.ErrorAs(t, realErr, &realPE)
	require.ErrorAs(t, emuErr, &emuPE)
	assert.Equal(t, realPE.Op, emuPE.Op)

	// A timeout matches both syscall.ETIMEDOUT and os.IsTimeout-style checks.
	timeout := &os.PathError{Op: "write", Path: "/dev/sst0", Err: syscall.ETIMEDOUT}
	assert.True(t, errors.Is(timeout, syscall.ETIMEDOUT))
	assert.True(t, timeout.Timeout())
}

func TestWriteReadPoll(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	f := r.open(t)

	mask, err := f.Poll()
	require.NoError(t, err)
	assert.Equal(t, uint32(sstdev.POLLOUT|sstdev.POLLWRNORM), mask)

	req := computeRequest(0xABC, 5)
	le.PutUint64(req[offRequestID:], 999) // overwritten by the driver
	n, err := f.Write(req)
	require.NoError(t, err)
	assert.Equal(t, reqSize, n)
	assert.Equal(t, uint64(999), le.Uint64(req[offRequestID:]), "the caller's buffer is not modified")

	mask, err = f.Poll()
	require.NoError(t, err)
	assert.Equal(t, uint32(sstdev.POLLOUT|sstdev.POLLWRNORM|sstdev.POLLIN|sstdev.POLLRDNORM), mask)

	n, err = f.Read(nil)
	require.NoError(t, err, "an empty read does nothing, as on *os.File")
	assert.Zero(t, n)

	buf := make([]byte, respSize+100)
	n, err = f.Read(buf)
	require.NoError(t, err)
	require.Equal(t, respSize, n)
	resp := parseResponse(buf)
	assert.Equal(t, uint32(statusOK), resp.status)
	assert.Equal(t, uint64(1), resp.requestID)
	assert.Equal(t, uint64(0xABC), resp.user)
	assert.Equal(t, uint64(5*fakeMul+fakeAdd), resp.result)
	assert.Equal(t, []uint64{1}, l5.seenIDs())

	mask, err = f.Poll()
	require.NoError(t, err)
	assert.Equal(t, uint32(sstdev.POLLOUT|sstdev.POLLWRNORM), mask)
	_, err = f.Read(buf)
	requireErrno(t, err, "read", "/dev/sst0", syscall.EAGAIN)

	st := r.dev.Stats()
	assert.Equal(t, int64(1), st.Writes)
	assert.Equal(t, int64(1), st.Answers)
	assert.Equal(t, int64(1), st.Reads)
	assert.Equal(t, sstdev.NumSlots, st.FreeSlots)
	assert.Zero(t, st.InFlight)
}

func TestRequestIDs(t *testing.T) {
	var l5a, l5b fakeL5
	a := newRig(t, sstdev.Config{Index: 0}, l5a.serve)
	b := newRig(t, sstdev.Config{Index: 1}, l5b.serve)
	f1, f2, g := a.open(t), a.open(t), b.open(t)

	// The counter is per device and shared by its files, starting at 1.
	var ids []uint64
	for i := range 6 {
		f := f1
		if i%2 == 1 {
			f = f2
		}
		ids = append(ids, roundTrip(t, f, computeRequest(uint64(i), 1)).requestID)
	}
	assert.Equal(t, []uint64{1, 2, 3, 4, 5, 6}, ids)
	assert.Equal(t, ids, l5a.seenIDs(), "layer 5 sees the driver's ids")
	assert.Equal(t, uint64(1), roundTrip(t, g, computeRequest(0, 1)).requestID, "another device counts on its own")
	assert.Equal(t, []uint64{1}, l5b.seenIDs())
}

func TestSecondWriteReplacesResponse(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	f := r.open(t)
	_, err := f.Write(computeRequest(1, 10))
	require.NoError(t, err)
	resp := roundTrip(t, f, computeRequest(2, 20))
	assert.Equal(t, uint64(2), resp.user)
	assert.Equal(t, uint64(20*fakeMul+fakeAdd), resp.result)
	_, err = f.Read(make([]byte, respSize))
	requireErrno(t, err, "read", "/dev/sst0", syscall.EAGAIN)
	assert.Equal(t, sstdev.NumSlots, r.dev.Stats().FreeSlots)
}

// TestLongWrites checks that Write consumes a buffer as (*os.File).Write does: one
// write(2) of 4104 bytes after another, EINVAL for a short remainder.
func TestLongWrites(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	f := r.open(t)

	two := append(computeRequest(1, 1), computeRequest(2, 2)...)
	n, err := f.Write(two)
	require.NoError(t, err)
	assert.Equal(t, 2*reqSize, n)
	buf := make([]byte, respSize)
	_, err = f.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), parseResponse(buf).user, "the second request's answer replaced the first")
	assert.Equal(t, []uint64{1, 2}, l5.seenIDs())

	n, err = f.Write(append(computeRequest(3, 3), 0, 0, 0))
	assert.Equal(t, reqSize, n)
	requireErrno(t, err, "write", "/dev/sst0", syscall.EINVAL)
	_, err = f.Read(buf)
	require.NoError(t, err)
	assert.Equal(t, uint64(3), parseResponse(buf).user)
}

func TestEventsAndDeviceReset(t *testing.T) {
	var l5 fakeL5
	r := newRig(t, sstdev.Config{}, l5.serve)
	st := r.dev.Stats()
	assert.Equal(t, int64(1), st.Events, "one LINK_UP")
	assert.Equal(t, uint64(1), st.LastEvent.Data, "first connection")

	// A RESET request is answered by the device, which also sends a RESET event whose
	// data is the request id.
	f := r.open(t)
	roundTrip(t, f, computeRequest(1, 1))
	resp := roundTrip(t, f, request(typeReset, 0, 77))
	assert.Equal(t, uint64(2), resp.requestID)
	eventually(t, "RESET event", func() bool { return r.dev.Stats().Events == 2 })
	st = r.dev.Stats()
	assert.Equal(t, uint32(eventReset), uint32(st.LastEvent.Type))
	assert.Equal(t, uint64(2), st.LastEvent.Data)
	assert.True(t, st.LinkUp)
}

func TestLogging(t *testing.T) {
	var logs syncbuffer.Buffer
	var l5 fakeL5
	r := newRig(t, sstdev.Config{Index: 2, Logger: zerolog.New(&logs)}, l5.serve)
	require.NoError(t, r.dev.Close())
	out := logs.String()
	for _, want := range []string{
		`"device":2`, `"message":"device ready"`, `"negotiated":"ECHO|COMPUTE|MEMORY|`,
		`"message":"device connected to the SST component"`, `"message":"device removed"`,
	} {
		assert.Contains(t, out, want)
	}
}
