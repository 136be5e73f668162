package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/optrace"
)

// TestSIGTERMWithAStuckOpLog: an --op-log FIFO that is open but never read stops the log's
// writer once the pipe is full; SIGTERM still ends serve within --shutdown-timeout, exit 0,
// with the records it could not write reported as dropped.
func TestSIGTERMWithAStuckOpLog(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "ops.fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	// A reader that never reads, so that serve's open for writing succeeds.
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	require.NoError(t, err)
	defer r.Close()

	p := start(t, "serve", "--listen", "127.0.0.1:0", "--op-log", fifo, "--shutdown-timeout", "1s")
	c, err := net.Dial("tcp", p.listenAddr("tcpfront"))
	require.NoError(t, err)
	defer c.Close()
	// 4096 records of ~600 bytes: far more than the pipe's 64 KiB.
	entries := strings.TrimSuffix(strings.Repeat(`{"op": "gemm", "M": 4, "N": 16, "K": 8}, `, 4096), ", ")
	var resp struct {
		Results []optrace.WireRecord `json:"results"`
	}
	jsonOp(t, c, 0x04, `{"op_id": 1, "ops": [`+entries+`]}`, &resp)
	require.Len(t, resp.Results, 4096)

	began := time.Now()
	require.NoError(t, p.signal(syscall.SIGTERM, 20*time.Second), "exit 0: a normal shutdown")
	assert.Less(t, time.Since(began), 10*time.Second)
	out := p.output()
	assert.Contains(t, out, "did not finish in time")
	assert.Regexp(t, `sstemu: op log: \d+ frames written \(\d+ bytes\), [1-9]\d* dropped`, out)
}
