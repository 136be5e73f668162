package loadgen

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClientTimingTrailer: with Timing the request carries "timing": true and the client
// reads u32 BE T | T bytes of JSON after the result (docs/wire.md); bad trailers are typed
// errors.
func TestClientTimingTrailer(t *testing.T) {
	record := `{"op_id":0,"timed":true,"cycles":16}`
	good := append([]byte{0, 0, 0, 4, 0, 0, 0, 0x3f, 0, 0, 0, byte(len(record))}, record...)
	cases := []struct {
		name   string
		answer []byte
		err    error
		detail string
	}{
		{"record", good, nil, ""},
		{"missing", []byte{0, 0, 0, 4, 0, 0, 0, 0x3f}, ErrTruncated, "got 0 of 4 bytes"},
		{"too long", []byte{0, 0, 0, 4, 0, 0, 0, 0x3f, 0, 1, 0, 1}, ErrBadTiming, "announced 65537 bytes"},
		{"not an object", []byte{0, 0, 0, 4, 0, 0, 0, 0x3f, 0, 0, 0, 2, '[', ']'}, ErrBadTiming, "not a JSON object"},
		{"cut", append([]byte{0, 0, 0, 4, 0, 0, 0, 0x3f, 0, 0, 0, 40}, record[:10]...), ErrTruncated, "got 10 of 40 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			frames := make(chan *rawFrame, 1)
			addr := startRaw(t, func(c net.Conn) {
				defer c.Close()
				f, err := readRawFrame(c)
				if err != nil {
					return
				}
				frames <- f
				_, _ = c.Write(tc.answer)
			})
			c, err := Dial(context.Background(), addr, ClientOptions{Timing: true})
			require.NoError(t, err)
			defer c.Close()
			out := make([]float32, 1)
			err = c.GEMM(context.Background(), 1, 1, 2, []float32{1, -2}, []float32{0.25, 3}, out)
			f := <-frames
			assert.Equal(t, `{"op_id": 0, "M": 1, "N": 1, "K": 2, "A_shape": [1, 2], "B_shape": [2, 1], "dtype": "float32", "timing": true}`, f.jsonText)
			if tc.err == nil {
				require.NoError(t, err)
				assert.Equal(t, float32(0.5), out[0])
				assert.Equal(t, record, string(c.LastTiming()))
				return
			}
			require.ErrorIs(t, err, tc.err)
			var oe *OpError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, PhaseTiming, oe.Phase)
			assert.Contains(t, err.Error(), tc.detail)
		})
	}
}
