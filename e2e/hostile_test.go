package e2e

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Settings of TestHostileInput's server.
const (
	hostileReadTimeout = 500 * time.Millisecond
	hostileMaxOpBytes  = 1 << 20 // 1 MiB: a 512³ GEMM (3 MiB) is refused
	// closeLimit is how soon a bad request's connection must be closed.
	closeLimit = time.Second
)

// hostileCase is one malformed request: its bytes, whether the client then half-closes
// (ending the stream) or stalls, and the error kind the server must log (docs/wire.md).
type hostileCase struct {
	name  string
	bytes []byte
	stall bool // keep the connection open and silent instead of half-closing it
	kind  string
}

// gemmJSON is a GEMM request's JSON with the given fields spliced in verbatim.
func gemmJSON(m, n, k, aShape, bShape, dtype string) string {
	return fmt.Sprintf(`{"op_id": 1, "M": %s, "N": %s, "K": %s, "A_shape": %s, "B_shape": %s, "dtype": %s}`,
		m, n, k, aShape, bShape, dtype)
}

// hostileCases lists the malformed requests, each with the kind docs/wire.md assigns it.
func hostileCases() []hostileCase {
	one := []byte{0, 0, 0x80, 0x3f} // 1.0f little-endian
	ok := gemmJSON("1", "1", "1", "[1, 1]", "[1, 1]", `"float32"`)
	good := frame(1, ok, one, one)
	l := len(ok)
	header := func(jsonLen uint32, op byte) []byte {
		return []byte{0xde, 0xad, 0xbe, 0xef, byte(jsonLen >> 24), byte(jsonLen >> 16), byte(jsonLen >> 8), byte(jsonLen), op}
	}
	cases := []hostileCase{
		{name: "bad magic", bytes: append([]byte{0xca, 0xfe, 0xba, 0xbe}, make([]byte, 20)...), kind: "bad_magic"},
		{name: "bad last magic byte", bytes: append([]byte{0xde, 0xad, 0xbe, 0x00}, good[4:]...), kind: "bad_magic"},
		{name: "JSON length 4 GiB - 1", bytes: header(0xffffffff, 1), kind: "too_large"},
		{name: "JSON length 64 KiB + 1", bytes: header(64<<10+1, 1), kind: "too_large"},
		{name: "unknown op type 9", bytes: frame(9, `{"op_id":1}`), kind: "unknown_op"},
		{name: "op type 0", bytes: frame(0, ok, one, one), kind: "unknown_op"},
		{name: "invalid UTF-8", bytes: frame(1, gemmJSON("1", "1", "1", "[1, 1]", "[1, 1]", "\"float\xff\xfe\""), one, one), kind: "bad_json"},
		{name: "invalid JSON", bytes: frame(1, `{"M":1,`), kind: "bad_json"},
		{name: "JSON not an object", bytes: frame(1, `[1, 1, 1]`), kind: "bad_json"},
		{name: "JSON with trailing data", bytes: frame(1, ok+` {}`, one, one), kind: "bad_json"},
		{name: "fractional dimension", bytes: frame(1, gemmJSON("1.5", "1", "1", "[1, 1]", "[1, 1]", `"float32"`)), kind: "bad_json"},
		{name: "dimension as a string", bytes: frame(1, gemmJSON(`"1"`, "1", "1", "[1, 1]", "[1, 1]", `"float32"`)), kind: "bad_json"},
		{name: "zero dimension", bytes: frame(1, gemmJSON("0", "1", "1", "[0, 1]", "[1, 1]", `"float32"`)), kind: "bad_field"},
		{name: "negative dimension", bytes: frame(1, gemmJSON("1", "-4", "1", "[1, 1]", "[1, -4]", `"float32"`)), kind: "bad_field"},
		{name: "dimension 2^31", bytes: frame(1, gemmJSON("2147483648", "1", "1", "[2147483648, 1]", "[1, 1]", `"float32"`)), kind: "too_large"},
		{name: "dimension 2^64", bytes: frame(1, gemmJSON("18446744073709551616", "1", "1", "[1, 1]", "[1, 1]", `"float32"`)), kind: "too_large"},
		{name: "product overflows int64", bytes: frame(1, gemmJSON("2147483647", "2147483647", "2147483647",
			"[2147483647, 2147483647]", "[2147483647, 2147483647]", `"float32"`)), kind: "too_large"},
		{name: "tensor over 4 GiB", bytes: frame(1, gemmJSON("65536", "1", "65536", "[65536, 65536]", "[65536, 1]", `"float32"`)), kind: "too_large"},
		{name: "op above --max-op-bytes", bytes: frame(1, gemmJSON("512", "512", "512", "[512, 512]", "[512, 512]", `"float32"`)), kind: "too_large"},
		{name: "A_shape disagrees with M", bytes: frame(1, gemmJSON("2", "1", "1", "[1, 1]", "[1, 1]", `"float32"`), one, one), kind: "bad_field"},
		{name: "B_shape disagrees with N", bytes: frame(1, gemmJSON("1", "1", "1", "[1, 1]", "[1, 3]", `"float32"`), one, one), kind: "bad_field"},
		{name: "A_shape of rank 3", bytes: frame(1, gemmJSON("1", "1", "1", "[1, 1, 1]", "[1, 1]", `"float32"`), one, one), kind: "bad_field"},
		{name: "missing K", bytes: frame(1, `{"op_id": 1, "M": 1, "N": 1, "A_shape": [1, 1], "B_shape": [1, 1], "dtype": "float32"}`, one, one), kind: "bad_field"},
		{name: "unknown dtype", bytes: frame(1, gemmJSON("1", "1", "1", "[1, 1]", "[1, 1]", `"float128"`), one, one), kind: "bad_dtype"},
		{name: "tensor A length too long", bytes: frame(1, ok, append(one, one...), one), kind: "bad_length"},
		{name: "tensor B length too short", bytes: frame(1, ok, one, nil), kind: "bad_length"},
		{name: "tensor A length 4 GiB - 4", bytes: append(append(header(uint32(l), 1), ok...), 0xff, 0xff, 0xff, 0xfc), kind: "bad_length"},
		{name: "MATMUL inner dimensions disagree", bytes: frame(3, `{"op_id": 1, "A_shape": [2, 3], "B_shape": [4, 5], "dtype": "float32"}`), kind: "bad_field"},
		{name: "CONV misspelt key", bytes: frame(2, `{"op_id": 1, "input_shape": [1, 1, 3, 3], "weight_shape": [1, 1, 2, 2], "strides": 1, "dtype": "float32"}`), kind: "bad_json"},
	}
	// Truncation inside every field of a good frame: the client ends the stream there.
	cuts := []struct {
		field string
		at    int
	}{
		{"magic", 2}, {"JSON length", 6}, {"op type", 8}, {"JSON", 9 + l/2},
		{"length of A", 9 + l + 2}, {"A", 9 + l + 4 + 2}, {"length of B", 9 + l + 8 + 2}, {"B", 9 + l + 12 + 2},
	}
	for _, c := range cuts {
		cases = append(cases, hostileCase{name: "truncated in " + c.field, bytes: good[:c.at], kind: "truncated"})
	}
	// Half a header, then silence: closed after the read timeout.
	return append(cases, hostileCase{name: "half a header then a stall", bytes: good[:4], stall: true, kind: "timeout"})
}

// TestHostileInput sends every malformed request of hostileCases on its own connection
// while a well-behaved client keeps issuing checked ops. Each bad connection is closed
// without an answer within closeLimit (a stalled one after --read-timeout), each leaves
// exactly one warn or error log line of the right kind, and the good client is served
// right throughout.
func TestHostileInput(t *testing.T) {
	p := start(t, "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--read-timeout", hostileReadTimeout.String(), "--max-op-bytes", fmt.Sprint(hostileMaxOpBytes))
	addr, httpAddr := p.listenAddr("tcpfront"), p.listenAddr("http")
	stop := make(chan struct{})
	good := goodClient(addr, 1, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-good
		}
	}()

	cases := hostileCases()
	require.GreaterOrEqual(t, len(cases), 15)
	remotes := make(map[string]hostileCase)
	wantKinds := make(map[string]uint64)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer nc.Close()
			remote := nc.LocalAddr().String()
			remotes[remote] = tc
			wantKinds[tc.kind]++
			_, err = nc.Write(tc.bytes)
			require.NoError(t, err)
			limit := closeLimit
			if tc.stall {
				limit = hostileReadTimeout + closeLimit
			} else {
				require.NoError(t, nc.(*net.TCPConn).CloseWrite())
			}
			took, n, err := closedWithin(nc, limit+time.Second)
			require.NoError(t, err, "closed by the server, not left waiting")
			assert.Zero(t, n, "no answer to a bad request")
			assert.Less(t, took, limit, "closed promptly")
			if tc.stall {
				assert.GreaterOrEqual(t, took, hostileReadTimeout-50*time.Millisecond, "a stalled client gets the whole read timeout")
			}
			l := p.waitFor(5*time.Second, "the log line of "+remote, func(m map[string]any) bool { return m["remote"] == remote })
			assert.Equal(t, tc.kind, l["kind"], "%v", l)
			assert.Contains(t, []any{"warn", "error"}, l["level"])
		})
	}
	close(stop)
	res := <-good
	require.NoError(t, res.err, "the good client was served right throughout")
	require.Positive(t, res.ops)
	t.Logf("%d hostile requests refused while a good client completed %d ops (slowest %v)",
		len(cases), res.ops, res.maxLatency.Round(time.Microsecond))

	// Exactly one line per bad connection, and no other warning at all.
	s := mustStats(t, httpAddr)
	for remote, tc := range remotes {
		assert.Equal(t, 1, p.count(func(m map[string]any) bool { return m["remote"] == remote }), "log lines of %q", tc.name)
	}
	assert.Equal(t, len(cases), p.count(func(m map[string]any) bool { return m["level"] == "warn" || m["level"] == "error" }),
		"warn and error lines")
	for kind, n := range s.Front.Errors {
		assert.Equal(t, wantKinds[kind], n, "/stats errors of kind %s", kind)
	}
	assert.Equal(t, uint64(res.ops), s.Front.Ops, "only the good client's ops were executed")
}
