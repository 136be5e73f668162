package e2e

import (
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestServeSecureDefaults reads `sstemu serve --help` (without binding anything): the
// front end listens on loopback only, the statistics server is off, and every resource
// limit is bounded by default.
func TestServeSecureDefaults(t *testing.T) {
	cmd := exec.Command(sstemuBin, "serve", "--help")
	for _, kv := range os.Environ() { // the defaults, not whatever SSTEMU_* this shell sets
		if !strings.HasPrefix(kv, "SSTEMU_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	help := string(out)
	tests := []struct{ flag, want string }{
		{"listen", `"127.0.0.1:9999"`},
		{"max-conns", "1024"},
		{"max-op-bytes", "1GiB"},
		{"max-device-handles", "64"},
		{"max-inflight-bytes", "4GiB"},
		{"read-timeout", "30s"},
		{"device-timeout", "5s"},
		{"shutdown-timeout", "30s"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			line := regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(tt.flag) + ` .*$`).FindString(help)
			require.NotEmpty(t, line, "--%s in:\n%s", tt.flag, help)
			assert.Contains(t, line, "(default: "+tt.want+")")
		})
	}
	httpLine := regexp.MustCompile(`(?m)^\s+--http\b.*$`).FindString(help)
	require.NotEmpty(t, httpLine)
	assert.NotContains(t, httpLine, "(default:", "no statistics server unless asked for")
}

// TestSSTSocketPrivate starts `sstemu sst` under umask 0 and checks that its socket is
// still created with mode 0600: only its owner can connect and submit requests.
func TestSSTSocketPrivate(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "sst.sock")
	old := syscall.Umask(0) // inherited by the child; restored at once
	sst := start(t, "sst", "--socket", sock)
	syscall.Umask(old)
	var fi os.FileInfo
	require.Eventually(t, func() bool {
		var err error
		fi, err = os.Lstat(sock)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
	sst.waitFor(10*time.Second, "listening", func(m map[string]any) bool { return strings.Contains(m["message"].(string), "listening") })
	assert.Equal(t, fs.ModeSocket, fi.Mode().Type())
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), "socket mode under umask 0")
}

// TestMaxConns opens --max-conns connections and one more: the extra one is closed at
// once without an answer, with one log line; the others keep working, and once one of
// them leaves a new connection is served.
func TestMaxConns(t *testing.T) {
	const maxConns = 4
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--max-conns", "4")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	r := rand.New(rand.NewPCG(8, 8))
	c := dial(t, addr, false)
	gemm(t, c, r, 3, 3, 3)
	for i := 1; i < maxConns; i++ {
		gemm(t, dial(t, addr, i%2 == 0), r, 2, 5, 3)
	}

	nc, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	remote := nc.LocalAddr().String()
	took, n, err := closedWithin(nc, 2*time.Second)
	require.NoError(t, err, "the connection beyond --max-conns is closed")
	assert.Zero(t, n)
	assert.Less(t, took, closeLimit)
	l := p.waitFor(5*time.Second, "the refusal", func(m map[string]any) bool { return m["remote"] == remote })
	assert.Equal(t, "too_many_conns", l["kind"])
	assert.Equal(t, "warn", l["level"])
	assert.Equal(t, 1, p.count(func(m map[string]any) bool { return m["remote"] == remote }))

	gemm(t, c, r, 4, 16, 8) // the admitted connections are unaffected
	require.NoError(t, c.Close())
	eventuallyStats(t, httpAddr, 5*time.Second, "a connection freed", func(s stats) bool { return s.Front.ActiveConns == maxConns-1 })
	gemm(t, dial(t, addr, true), r, 5, 5, 5)
	assert.Equal(t, uint64(1), mustStats(t, httpAddr).Front.Errors["too_many_conns"])
}
