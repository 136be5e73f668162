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
// logged and counted as untimed with the reason.
func TestServeOnDeviceFileThatCannotTime(t *testing.T) {
	tests := []struct {
		name, path, reason string
	}{
		{"missing device", filepath.Join(t.TempDir(), "sst0"), "no such file"},
		{"not a virtio-sst device", "/dev/null", "device read"},
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
			assert.Contains(t, l["untimed"], tt.reason)
			require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second))
			assert.Contains(t, p.output(), fmt.Sprintf("device server: %d ops, 0 timed, %d untimed", 3, 3))
		})
	}
}
