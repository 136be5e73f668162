package loadgen

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// naiveGEMM64 is the tests' own float64 reference with the magnitude sum of each element.
func naiveGEMM64(m, n, k int, a, b []float32) (c, mag []float64) {
	c, mag = make([]float64, m*n), make([]float64, m*n)
	for i := range m {
		for j := range n {
			for p := range k {
				x := float64(a[i*k+p]) * float64(b[p*n+j])
				c[i*n+j] += x
				mag[i*n+j] += math.Abs(x)
			}
		}
	}
	return c, mag
}

// assertCloseToFloat64 checks a float32 GEMM result element by element: within
// 1e-5·Σ|a·b| + 1e-30 of the float64 product (K ≤ 512 here, so float32 accumulation is
// far inside this).
func assertCloseToFloat64(t *testing.T, m, n, k int, a, b, got []float32) {
	t.Helper()
	want, mag := naiveGEMM64(m, n, k, a, b)
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= 1e-5*mag[i]+1e-30) {
			t.Fatalf("C[%d,%d] = %g, want %g (|diff| %g, Σ|ab| %g)", i/n, i%n, got[i], want[i], d, mag[i])
		}
	}
}

func randMat(seed uint64, n int) []float32 {
	r := rand.New(rand.NewPCG(seed, 99))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func TestClientAgainstServers(t *testing.T) {
	shapes := []struct{ m, n, k int }{
		{1, 1, 1}, {4, 16, 8}, {1, 300, 5}, {5, 1, 7}, {33, 17, 65},
		{96, 128, 160}, // frame > copyMax: one writev of views
	}
	for _, srv := range servers {
		addr := srv.start(t)
		for _, pieces := range []bool{false, true} {
			name := srv.name + map[bool]string{false: "/one-write", true: "/pieces"}[pieces]
			t.Run(name, func(t *testing.T) {
				if pieces && srv.name == "floor" {
					t.Skip("the floor does not re-arm quick ACKs: ≈40 ms per op in pieces; covered by TestClientPiecesAgainstFloor")
				}
				c, err := Dial(context.Background(), addr, ClientOptions{Pieces: pieces})
				require.NoError(t, err)
				defer c.Close()
				for i, s := range shapes {
					a, b := randMat(uint64(i), s.m*s.k), randMat(uint64(i)+100, s.k*s.n)
					out := make([]float32, s.m*s.n)
					for range 2 { // the second op reuses every buffer
						for j := range out {
							out[j] = float32(math.NaN())
						}
						require.NoError(t, c.GEMM(context.Background(), s.m, s.n, s.k, a, b, out), "shape %v", s)
						assertCloseToFloat64(t, s.m, s.n, s.k, a, b, out)
					}
				}
			})
		}
	}
}

// TestClientPiecesAgainstFloor checks that pieces mode works against a server without quick
// ACKs too (slowly: one op, which may or may not stall).
func TestClientPiecesAgainstFloor(t *testing.T) {
	c, err := Dial(context.Background(), startFloor(t), ClientOptions{Pieces: true})
	require.NoError(t, err)
	defer c.Close()
	a := []float32{1, 2, 3, 4}
	b := []float32{5, 6, 7, 8}
	out := make([]float32, 4)
	require.NoError(t, c.GEMM(context.Background(), 2, 2, 2, a, b, out))
	assert.Equal(t, []float32{19, 22, 43, 50}, out) // [[1,2],[3,4]]·[[5,6],[7,8]] by hand
}

// rawFrame is one request as a test server reads it, parsed independently of wire.go.
type rawFrame struct {
	header   []byte // magic, JSON length, op type
	json     map[string]any
	jsonText string
	a, b     []byte
}

func readRawFrame(r io.Reader) (*rawFrame, error) {
	f := &rawFrame{header: make([]byte, 9)}
	if _, err := io.ReadFull(r, f.header); err != nil {
		return nil, err
	}
	js := make([]byte, binary.BigEndian.Uint32(f.header[4:8]))
	if _, err := io.ReadFull(r, js); err != nil {
		return nil, err
	}
	f.jsonText = string(js)
	if err := json.Unmarshal(js, &f.json); err != nil {
		return nil, err
	}
	for _, t := range []*[]byte{&f.a, &f.b} {
		var pre [4]byte
		if _, err := io.ReadFull(r, pre[:]); err != nil {
			return nil, err
		}
		*t = make([]byte, binary.BigEndian.Uint32(pre[:]))
		if _, err := io.ReadFull(r, *t); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// TestClientWireBytes checks the request bytes against the protocol by hand, in both modes:
// big-endian magic and lengths, the reference client's JSON, little-endian float32s, and
// op_id counting up per op.
func TestClientWireBytes(t *testing.T) {
	for _, pieces := range []bool{false, true} {
		t.Run(map[bool]string{false: "one-write", true: "pieces"}[pieces], func(t *testing.T) {
			frames := make(chan *rawFrame, 2)
			addr := startRaw(t, func(c net.Conn) {
				for {
					f, err := readRawFrame(c)
					if err != nil {
						return
					}
					frames <- f
					// answer C = [0.5] (1×1): length 4, then 0x3f000000 little-endian
					_, _ = c.Write([]byte{0, 0, 0, 4, 0, 0, 0, 0x3f})
				}
			})
			c, err := Dial(context.Background(), addr, ClientOptions{Pieces: pieces})
			require.NoError(t, err)
			defer c.Close()
			out := make([]float32, 1)
			for op := range 2 {
				require.NoError(t, c.GEMM(context.Background(), 1, 1, 2, []float32{1, -2}, []float32{0.25, 3}, out))
				assert.Equal(t, float32(0.5), out[0])
				f := <-frames
				want := `{"op_id": ` + string(rune('0'+op)) + `, "M": 1, "N": 1, "K": 2, "A_shape": [1, 2], "B_shape": [2, 1], "dtype": "float32"}`
				assert.Equal(t, want, f.jsonText)
				assert.Equal(t, []byte{0xde, 0xad, 0xbe, 0xef, 0, 0, 0, byte(len(want)), 1}, f.header)
				assert.Equal(t, []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}, f.a)    // 1.0, -2.0
				assert.Equal(t, []byte{0, 0, 0x80, 0x3e, 0, 0, 0x40, 0x40}, f.b) // 0.25, 3.0
			}
		})
	}
}

// TestClientBadResponses checks that every way a server can answer wrongly is a clear,
// typed error, and that the client refuses further ops afterwards.
func TestClientBadResponses(t *testing.T) {
	const m, n, k = 2, 3, 4 // response: 4·2·3 = 24 bytes
	cases := []struct {
		name    string
		answer  []byte // sent after reading the request, then the server closes
		wantErr error
		phase   Phase
		detail  string
	}{
		{"length too short", append([]byte{0, 0, 0, 20}, make([]byte, 20)...), ErrBadLength, PhaseLength,
			"server announced 20 bytes, want M·N·4 = 24"},
		{"length too long", append([]byte{0, 0, 0, 28}, make([]byte, 28)...), ErrBadLength, PhaseLength,
			"server announced 28 bytes, want M·N·4 = 24"},
		{"not a multiple of four", []byte{0, 0, 0, 25}, ErrBadLength, PhaseLength, "announced 25 bytes"},
		{"close before answering", nil, ErrNoAnswer, PhaseLength, ""},
		{"close inside the length", []byte{0, 0}, ErrTruncated, PhaseLength, "got 2 of 4 bytes"},
		{"close right after the length", []byte{0, 0, 0, 24}, ErrTruncated, PhaseResult, "got 0 of 24 bytes"},
		{"close mid-answer", append([]byte{0, 0, 0, 24}, make([]byte, 10)...), ErrTruncated, PhaseResult, "got 10 of 24 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startRaw(t, func(c net.Conn) {
				defer c.Close()
				if _, err := readRawFrame(c); err != nil {
					return
				}
				_, _ = c.Write(tc.answer)
			})
			c, err := Dial(context.Background(), addr, ClientOptions{})
			require.NoError(t, err)
			defer c.Close()
			out := make([]float32, m*n)
			err = c.GEMM(context.Background(), m, n, k, make([]float32, m*k), make([]float32, k*n), out)
			require.ErrorIs(t, err, tc.wantErr)
			var oe *OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tc.phase, oe.Phase)
			assert.Equal(t, [3]int{m, n, k}, [3]int{oe.M, oe.N, oe.K})
			assert.Contains(t, err.Error(), tc.detail)
			assert.Contains(t, err.Error(), addr)

			err = c.GEMM(context.Background(), m, n, k, make([]float32, m*k), make([]float32, k*n), out)
			require.ErrorIs(t, err, ErrUnusable)
			assert.Contains(t, err.Error(), tc.wantErr.Error(), "names the earlier failure")
		})
	}
}

func TestClientBadArgs(t *testing.T) {
	c, err := Dial(context.Background(), startFloor(t), ClientOptions{})
	require.NoError(t, err)
	defer c.Close()
	cases := []struct {
		name             string
		m, n, k          int
		lenA, lenB, lenC int
		detail           string
	}{
		{"zero M", 0, 1, 1, 0, 1, 0, "at least 1"},
		{"negative K", 1, 1, -1, 1, 1, 1, "at least 1"},
		{"short A", 2, 2, 2, 3, 4, 4, "len(A) = 3, want 2×2 = 4"},
		{"long B", 2, 2, 2, 4, 5, 4, "len(B) = 5, want 2×2 = 4"},
		{"short C", 2, 3, 2, 4, 6, 5, "len(C) = 5, want 2×3 = 6"},
		{"beyond a u32 prefix", 1 << 16, 1, 1 << 15, 0, 0, 0, "more than a u32 length prefix"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.GEMM(context.Background(), tc.m, tc.n, tc.k,
				make([]float32, tc.lenA), make([]float32, tc.lenB), make([]float32, tc.lenC))
			require.ErrorIs(t, err, ErrBadArgs)
			assert.Contains(t, err.Error(), tc.detail)
		})
	}
	// Bad arguments send nothing: the connection is still in step.
	out := make([]float32, 1)
	require.NoError(t, c.GEMM(context.Background(), 1, 1, 1, []float32{3}, []float32{-2}, out))
	assert.Equal(t, float32(-6), out[0])
}

// TestClientContext checks that a deadline or a cancellation ends an op the server never
// answers, promptly and with the context's error.
func TestClientContext(t *testing.T) {
	hang := func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }
	cases := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		wantErr error
	}{
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Dial(context.Background(), startRaw(t, hang), ClientOptions{})
			require.NoError(t, err)
			defer c.Close()
			ctx, cancel := tc.ctx()
			defer cancel()
			start := time.Now()
			err = c.GEMM(ctx, 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1))
			require.ErrorIs(t, err, tc.wantErr)
			assert.Less(t, time.Since(start), 2*time.Second)
			require.ErrorIs(t, c.GEMM(context.Background(), 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1)), ErrUnusable)
		})
	}
	t.Run("op timeout", func(t *testing.T) {
		c, err := Dial(context.Background(), startRaw(t, hang), ClientOptions{Timeout: 100 * time.Millisecond})
		require.NoError(t, err)
		defer c.Close()
		start := time.Now()
		err = c.GEMM(context.Background(), 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1))
		require.ErrorIs(t, err, ErrTimeout)
		assert.Contains(t, err.Error(), "timeout 100ms")
		assert.Less(t, time.Since(start), 2*time.Second)
	})
	t.Run("ctx deadline sooner than the op timeout", func(t *testing.T) {
		c, err := Dial(context.Background(), startRaw(t, hang), ClientOptions{Timeout: time.Minute})
		require.NoError(t, err)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, c.GEMM(ctx, 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1)), context.DeadlineExceeded)
	})
	t.Run("op timeout not reached", func(t *testing.T) {
		c, err := Dial(context.Background(), startFloor(t), ClientOptions{Timeout: time.Minute})
		require.NoError(t, err)
		defer c.Close()
		out := make([]float32, 1)
		require.NoError(t, c.GEMM(context.Background(), 1, 1, 1, []float32{2}, []float32{5}, out))
		assert.Equal(t, float32(10), out[0])
	})
	t.Run("already done", func(t *testing.T) {
		c, err := Dial(context.Background(), startFloor(t), ClientOptions{})
		require.NoError(t, err)
		defer c.Close()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, c.GEMM(ctx, 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1)), context.Canceled)
		// Nothing was sent: the client is still usable.
		out := make([]float32, 1)
		require.NoError(t, c.GEMM(context.Background(), 1, 1, 1, []float32{2}, []float32{5}, out))
		assert.Equal(t, float32(10), out[0])
	})
}

func TestClientClose(t *testing.T) {
	c, err := Dial(context.Background(), startFloor(t), ClientOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	err = c.GEMM(context.Background(), 1, 1, 1, []float32{1}, []float32{1}, make([]float32, 1))
	require.ErrorIs(t, err, ErrClientClosed)
}
