package sstfuse_test

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/sstdev"
	"github.com/sstemu/sstemu/pkg/sstfuse"
	"github.com/sstemu/sstemu/pkg/stack"
)

// waitLimit bounds every wait of the tests.
const waitLimit = 20 * time.Second

// mounted builds layers 3–5 with opts (in-process unless opts says otherwise) and mounts
// its devices in a fresh directory; it skips the test where FUSE cannot be used.
func mounted(t testing.TB, opts stack.Options) (*sstfuse.Mount, *stack.Stack) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE is not available here (%v): the --mount tests need /dev/fuse", err)
	}
	st, err := stack.Build(context.Background(), opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	var devs []sstfuse.Device
	for _, d := range st.Devices().All() {
		devs = append(devs, d)
	}
	dir := filepath.Join(t.TempDir(), "dev") // the mount point must exist
	require.NoError(t, os.Mkdir(dir, 0o755))
	m, err := sstfuse.New(dir, devs, sstfuse.Options{})
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		t.Skipf("cannot mount FUSE here (%v): run as root or with fusermount", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Unmount() })
	return m, st
}

// stalledSST returns the socket of a layer 5 that accepts and never answers.
func stalledSST(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stalled.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c // kept open, never read
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		close(conns)
		for c := range conns {
			_ = c.Close()
		}
	})
	return path
}

// buildC compiles testdata/sstclient.c; it skips the test without gcc.
func buildC(t testing.TB) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc is not installed: the C driver client cannot be built")
	}
	bin := filepath.Join(t.TempDir(), "sstclient")
	out, err := exec.Command(gcc, "-Wall", "-Wextra", "-Werror", "-O2", "-pthread", "-o", bin, "testdata/sstclient.c").CombinedOutput()
	require.NoError(t, err, "gcc: %s", out)
	return bin
}

func runOK(t *testing.T, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	require.NoError(t, err, "%s %v:\n%s", name, args, out)
}

// TestCProgram: a C program written from the driver's semantics gets them from DIR/sst0:
// EAGAIN, EINVAL, the blocking write and its request_id, the answer once, poll, ENOTTY; and
// 16 processes at once each with a context of its own.
func TestCProgram(t *testing.T) {
	m, st := mounted(t, stack.Options{Devices: 2})
	bin := buildC(t)
	runOK(t, bin, "basic", m.Path(0))
	runOK(t, bin, "basic", m.Path(1))
	runOK(t, bin, "many", m.Path(0), "16")
	dev := st.Devices().All()[0]
	// The kernel sends FUSE's RELEASE after the last close, asynchronously: the process may
	// have exited before its contexts are closed.
	require.Eventually(t, func() bool { return dev.Stats().OpenFiles == 0 }, waitLimit, time.Millisecond, "every context closed")
	assert.Equal(t, int64(2+16*20), dev.Stats().Writes, "basic writes twice, each of 16 processes 20 times")
}

// TestPythonProgram: a Python program written from the driver's semantics, through a
// symlink as a program that hard-codes /dev/sst0 would use one.
func TestPythonProgram(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is missing: %v", python, err)
	}
	m, _ := mounted(t, stack.Options{})
	link := filepath.Join(t.TempDir(), "sst0")
	require.NoError(t, os.Symlink(m.Path(0), link))
	runOK(t, python, "testdata/sstclient.py", link)
}

// TestStalledDevice: against a layer 5 that never answers, a write fails with ETIMEDOUT
// after the device timeout; a descriptor closed under a waiting write lets the process
// finish; a process killed in the middle of a write dies at once and frees its context.
func TestStalledDevice(t *testing.T) {
	const timeout = 2 * time.Second
	m, st := mounted(t, stack.Options{SSTSocket: stalledSST(t), DeviceTimeout: timeout})
	bin := buildC(t)
	dev := st.Devices().All()[0]

	t.Run("ETIMEDOUT", func(t *testing.T) {
		begin := time.Now()
		runOK(t, bin, "timeout", m.Path(0))
		assert.GreaterOrEqual(t, time.Since(begin), timeout)
	})
	t.Run("close mid-request", func(t *testing.T) {
		runOK(t, bin, "closemid", m.Path(0))
	})
	t.Run("killed mid-request", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "block", m.Path(0))
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(stdout).ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "writing\n", line)
		require.Eventually(t, func() bool { return dev.Stats().InFlight > 0 }, waitLimit, time.Millisecond, "the write reached the device")
		killed := time.Now()
		require.NoError(t, cmd.Process.Kill())
		err = cmd.Wait()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		assert.Less(t, time.Since(killed), timeout/2, "the killed process does not wait for the device")
		require.Eventually(t, func() bool { return dev.Stats().OpenFiles == 0 }, waitLimit, time.Millisecond, "its context is closed")
	})
	// No writer waits any more: what the device still holds is abandoned, as the driver
	// leaves a request its writer gave up on until the device answers or is reset.
	s := dev.Stats()
	assert.Equal(t, s.InFlight, s.Abandoned, "every request in flight abandoned")
	assert.Equal(t, sstdev.NumSlots-s.InFlight, s.FreeSlots)
}

// TestLiveMountRefused: a second mount on a directory a live server holds is refused.
func TestLiveMountRefused(t *testing.T) {
	m, st := mounted(t, stack.Options{})
	_, err := sstfuse.New(m.Dir(), []sstfuse.Device{st.Devices().All()[0]}, sstfuse.Options{})
	require.ErrorIs(t, err, sstfuse.ErrBusy)
	entries, err := os.ReadDir(m.Dir())
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, "sst0", strings.Join(names, ","))
	info, err := os.Stat(m.Path(0))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o666), info.Mode().Perm())
	require.NoError(t, m.Unmount())
	require.NoError(t, m.Unmount(), "a second Unmount returns the first's result")
	_, err = os.Stat(m.Path(0))
	assert.ErrorIs(t, err, os.ErrNotExist, "unmounted: the directory is empty")
}

// TestMountPointMustExist: a missing or non-directory mount point is refused, not created.
func TestMountPointMustExist(t *testing.T) {
	st, err := stack.Build(context.Background(), stack.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	devs := []sstfuse.Device{st.Devices().All()[0]}
	missing := filepath.Join(t.TempDir(), "no", "such")
	_, err = sstfuse.New(missing, devs, sstfuse.Options{})
	require.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, "must be an existing directory")
	_, statErr := os.Stat(missing)
	assert.ErrorIs(t, statErr, os.ErrNotExist, "not created")

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = sstfuse.New(file, devs, sstfuse.Options{})
	assert.ErrorContains(t, err, "is not a directory")
}
