//go:build unix

package sstcomponent

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestListen(t *testing.T) {
	t.Run("mode 0600 whatever the umask", func(t *testing.T) {
		old := syscall.Umask(0)
		defer syscall.Umask(old)
		path := filepath.Join(t.TempDir(), "sst.sock")
		l, err := Listen(path)
		require.NoError(t, err)
		defer l.Close()
		fi, err := os.Lstat(path)
		require.NoError(t, err)
		assert.Equal(t, fs.ModeSocket, fi.Mode().Type())
		assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	})
	t.Run("stale socket removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		require.NoError(t, err)
		stale.SetUnlinkOnClose(false)
		require.NoError(t, stale.Close())
		require.FileExists(t, path, "a socket file nobody accepts on")

		l, err := Listen(path)
		require.NoError(t, err)
		defer l.Close()
		accepted := make(chan error, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				c.Close()
			}
			accepted <- err
		}()
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		c.Close()
		require.NoError(t, <-accepted)
	})
	t.Run("live owner refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		l, err := Listen(path)
		require.NoError(t, err)
		defer l.Close()
		_, err = Listen(path)
		require.ErrorIs(t, err, ErrSocketInUse)
		var le *ListenError
		require.ErrorAs(t, err, &le)
		assert.Equal(t, path, le.Path)
		assert.Contains(t, err.Error(), "live process")
		assert.FileExists(t, path, "the live socket is left alone")
	})
	t.Run("regular file not removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		require.NoError(t, os.WriteFile(path, []byte("keep me"), 0o644))
		_, err := Listen(path)
		require.ErrorIs(t, err, ErrNotSocket)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, "keep me", string(data))
	})
	t.Run("directory not removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		require.NoError(t, os.Mkdir(path, 0o700))
		_, err := Listen(path)
		require.ErrorIs(t, err, ErrNotSocket)
		assert.DirExists(t, path)
	})
	t.Run("path too long", func(t *testing.T) {
		_, err := Listen("/tmp/" + strings.Repeat("x", 120))
		var le *ListenError
		require.ErrorAs(t, err, &le)
		assert.Contains(t, err.Error(), "at most 107")
	})
	t.Run("missing directory", func(t *testing.T) {
		_, err := Listen(filepath.Join(t.TempDir(), "no", "such", "dir", "s.sock"))
		require.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("close removes the file once", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		l, err := Listen(path)
		require.NoError(t, err)
		require.NoError(t, l.Close())
		assert.NoFileExists(t, path)
		assert.ErrorIs(t, l.Close(), net.ErrClosed)
	})
	t.Run("close leaves a replacement alone", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "sst.sock")
		l, err := Listen(path)
		require.NoError(t, err)
		require.NoError(t, os.Remove(path))
		require.NoError(t, os.WriteFile(path, []byte("new owner"), 0o600))
		require.NoError(t, l.Close())
		assert.FileExists(t, path)
	})
}
