package e2e

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsPassPromtool scrapes a live /metrics after some ops and checks it with
// `promtool check metrics` (Debian's prometheus package; scripts/install-deps --test
// installs it), which lints names, types, units and help texts.
func TestMetricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus; scripts/install-deps --test installs it)")
	}
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--devices", "2")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	c := dial(t, addr, false)
	r := rand.New(rand.NewPCG(6, 6))
	for range 4 {
		gemm(t, c, r, 4, 16, 8)
	}
	require.NoError(t, c.Close())

	resp, err := httpClient.Get("http://" + httpAddr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)

	check := exec.Command(promtool, "check", "metrics")
	check.Stdin = bytes.NewReader(body)
	out, err := check.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)

	text := string(body)
	counters := regexp.MustCompile(`(?m)^# TYPE sstemu_\S+_total counter$`).FindAllString(text, -1)
	assert.Greater(t, len(counters), 30, "sstemu's counters")
	assert.Contains(t, text, `sstemu_tcpfront_ops_total{op="gemm"} 4`)
	assert.Contains(t, text, `sstemu_deviceserver_timed_ops_total 4`)
	assert.Contains(t, text, `sstemu_sstcomponent_requests_total{type="gemm"} 4`)
	assert.Contains(t, text, `sstemu_virtiodev_link_up{device="1"} 1`)
	assert.NotContains(t, text, "sstemu statistic")
	assert.False(t, strings.Contains(text, "features"), "no feature bit field")
}
