package e2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// logLayers are the values of the layer key: the packages that log, and the command.
var logLayers = []string{"sstemu", "stack", "tcpfront", "deviceserver", "sstdev", "virtiodev", "sstcomponent"}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// keyTypes records the JSON type of every key over lines, and returns one message per key
// seen with more than one type, naming an example line of each.
func keyTypes(types map[string]map[string]string, lines []map[string]any) []string {
	for _, l := range lines {
		for k, v := range l {
			if types[k] == nil {
				types[k] = map[string]string{}
			}
			if _, ok := types[k][jsonType(v)]; !ok {
				types[k][jsonType(v)] = fmt.Sprint(l["layer"], ": ", l["message"])
			}
		}
	}
	var bad []string
	for k, ts := range types {
		if len(ts) > 1 {
			bad = append(bad, fmt.Sprintf("key %q has types %v", k, ts))
		}
	}
	sort.Strings(bad)
	return bad
}

// TestLogVocabulary runs serve with JSON debug logs through a normal life (start-up, ops
// on two devices, both HTTP endpoints, SIGTERM) and then a run on a device file that
// cannot time: every line names its layer, no key changes its JSON type across all the
// lines of both runs, the normal run logs no warning or error, and each listener is
// announced once.
func TestLogVocabulary(t *testing.T) {
	types := map[string]map[string]string{}

	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--devices", "2", "--log-level", "debug")
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	r := rand.New(rand.NewPCG(5, 5))
	for _, pieces := range []bool{false, true} {
		c := dial(t, addr, pieces)
		for _, s := range [][3]int{{1, 1, 1}, {4, 16, 8}, {33, 7, 65}} {
			gemm(t, c, r, s[0], s[1], s[2])
		}
		require.NoError(t, c.Close())
	}
	for _, path := range []string{"/stats", "/metrics"} {
		resp, err := httpClient.Get("http://" + httpAddr + path)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	require.NoError(t, p.signal(syscall.SIGTERM, 10*time.Second), "SIGTERM exits 0")

	p.mu.Lock()
	lines := slices.Clone(p.lines)
	p.mu.Unlock()
	require.NotEmpty(t, lines)
	listening := map[string]int{}
	for _, l := range lines {
		assert.Contains(t, logLayers, l["layer"], "the layer of %v", l)
		assert.NotContains(t, []any{"warn", "error", "fatal", "panic"}, l["level"], "a normal run and shutdown: %v", l)
		msg, _ := l["message"].(string)
		for _, layer := range logLayers[1:] {
			assert.False(t, strings.HasPrefix(msg, layer+":"), "the message repeats the layer: %v", l)
		}
		if msg == "listening" {
			listening[fmt.Sprint(l["layer"])]++
		}
	}
	assert.Equal(t, map[string]int{"tcpfront": 1, "sstemu": 1}, listening, "one line per listener")
	assert.Equal(t, 6, p.count(isOp), "one op line per op")

	// A device file that cannot time: untimed ops, with their cause and error.
	q := start(t, "serve", "--listen", "127.0.0.1:0", "--device", filepath.Join(t.TempDir(), "sst0"), "--log-level", "debug")
	c := dial(t, q.listenAddr("tcpfront"), false)
	gemm(t, c, r, 3, 5, 7)
	require.NoError(t, c.Close())
	require.NoError(t, q.signal(syscall.SIGTERM, 10*time.Second))
	q.mu.Lock()
	lines = append(lines, q.lines...)
	q.mu.Unlock()

	assert.Empty(t, keyTypes(types, lines), "a key keeps one JSON type on every line")
	for _, k := range []string{"layer", "device", "untimed", "error"} {
		assert.Contains(t, types, k, "the runs log key %q", k)
	}
	assert.Contains(t, types["device"], "number", "device is the device's index")
}
