package e2e

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pyDriverClient is the Python program of pkg/sstfuse written from the driver's semantics.
const pyDriverClient = "../pkg/sstfuse/testdata/sstclient.py"

// startMounted runs `sstemu serve --mount dir --listen ""` and waits for the mount.
func startMounted(t *testing.T, dir string, extra ...string) *proc {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("FUSE is not available here (%v): serve --mount needs /dev/fuse", err)
	}
	p := start(t, append([]string{"serve", "--mount", dir, "--listen", ""}, extra...)...)
	p.waitFor(20*time.Second, "the mount", func(m map[string]any) bool {
		return m["layer"] == "sstfuse" && m["message"] == "device files mounted"
	})
	return p
}

// TestServeMount: an unmodified program that hard-codes its device path runs against
// `serve --mount` through a symlink, with the front end off; SIGTERM unmounts.
func TestServeMount(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s is missing: %v", python, err)
	}
	dir := mountPoint(t)
	p := startMounted(t, dir, "--devices", "2")
	link := filepath.Join(t.TempDir(), "sst0") // as `ln -s DIR/sst0 /dev/sst0`
	require.NoError(t, os.Symlink(filepath.Join(dir, "sst1"), link))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, pyDriverClient, link).CombinedOutput()
	require.NoError(t, err, "%s", out)

	require.NoError(t, p.signal(syscall.SIGTERM, 20*time.Second))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err, "the directory is left, unmounted")
	assert.Empty(t, entries)
	assert.Contains(t, p.output(), "sstemu: /dev/sst1: 3 writes, 3 answers")
}

// TestServeMountStale: a mount left by a process killed with SIGKILL is detected and
// replaced at the next start.
func TestServeMountStale(t *testing.T) {
	dir := mountPoint(t)
	p := startMounted(t, dir)
	p.kill()
	_, err := os.Stat(dir)
	require.True(t, errors.Is(err, syscall.ENOTCONN), "a dead FUSE server leaves its mount: %v", err)

	p2 := startMounted(t, dir)
	assert.Equal(t, 1, p2.count(func(m map[string]any) bool {
		return m["layer"] == "sstfuse" && m["message"] == "stale mount of a process that died replaced"
	}))
	// Raw system calls: os.File would park an EAGAIN read on the poller, which FUSE
	// reports readable once and never again (see pkg/sstfuse).
	fd, err := syscall.Open(filepath.Join(dir, "sst0"), syscall.O_RDWR, 0)
	require.NoError(t, err)
	_, err = syscall.Read(fd, make([]byte, 4112))
	assert.ErrorIs(t, err, syscall.EAGAIN, "read before write")
	require.NoError(t, syscall.Close(fd))
	require.NoError(t, p2.signal(syscall.SIGTERM, 20*time.Second))
}

// TestServeNothing: with the front end off, --mount must be given.
func TestServeNothing(t *testing.T) {
	out, err := exec.Command(sstemuBin, "serve", "--listen", "").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "--mount must serve the devices")
}

// mountPoint returns a new, empty directory to mount on (--mount requires one that exists).
func mountPoint(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dev")
	require.NoError(t, os.Mkdir(dir, 0o755))
	return dir
}
