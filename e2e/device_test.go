package e2e

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// With --device, layers 3–5 are whatever file is named. A file that is not a virtio-sst
// device cannot time an op, but the client still gets correct results, and every op is
// logged and counted as untimed with its cause and the error behind it.
func TestServeOnDeviceFileThatCannotTime(t *testing.T) {
	tests := []struct {
		name, path, cause, detail string
	}{
		{"missing device", filepath.Join(t.TempDir(), "sst0"), "device_unavailable", "no such file"},
		{"not a virtio-sst device", "/dev/null", "device_error", "device read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := start(t, "serve", "--listen", "127.0.0.1:0", "--device", tt.path)
			addr := p.listenAddr("tcpfront")
			c := dial(t, addr, false)
			r := rand.New(rand.NewPCG(9, 9))
			for i := 0; i < 3; i++ {
				gemm(t, c, r, 5, 3, 7)
			}
			l := p.waitFor(5*time.Second, "an untimed op", func(m map[string]any) bool { return isOp(m) && m["untimed"] != nil })
			assert.Equal(t, tt.cause, l["untimed"])
			assert.Contains(t, l["error"], tt.detail)
			require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
			assert.Contains(t, p.output(), fmt.Sprintf("device server: %d ops, 0 timed, %d untimed", 3, 3))
			assert.Contains(t, p.output(), fmt.Sprintf("device server: %d ops untimed for %s\n", 3, tt.cause))
		})
	}
}
