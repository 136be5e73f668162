package tcpfront

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/rs/zerolog"
)

// BenchmarkRoundTrip measures one small op (4×8 · 8×16, the small op of docs/performance.md §Targets) over
// loopback: sent as one write, and in the reference client's five writes with Nagle on,
// with and without the server's TCP_QUICKACK re-arming.
func BenchmarkRoundTrip(b *testing.B) {
	parts := frameParts(1, gemmJSONFor(1, 4, 16, 8), ramp(32, 1), ramp(128, 2))
	whole := bytes.Join(parts, nil)
	cases := []struct {
		name       string
		nagle      bool
		noQuickAck bool
		send       func(net.Conn) error
	}{
		{"one-write", false, false, func(c net.Conn) error { _, err := c.Write(whole); return err }},
		{"five-piece-nagle", true, false, nil},
		{"five-piece-nagle-no-quickack", true, true, nil},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			ts := startServer(b, &naiveExecutor{}, func(s *Server) {
				s.DisableQuickAck = bc.noQuickAck
				s.Logger = s.Logger.Level(zerolog.InfoLevel)
			})
			c := ts.dial(b)
			if bc.nagle {
				if err := c.SetNoDelay(false); err != nil {
					b.Fatal(err)
				}
			}
			op := func() error {
				if bc.send == nil {
					return fivePieceOp(c, parts)
				}
				if err := bc.send(c); err != nil {
					return err
				}
				_, err := readResponse(c)
				return err
			}
			// Leave Linux's initial quick-ACK phase before measuring.
			for range 30 {
				if err := op(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := op(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReadFloat32s compares reading a 1 MiB tensor through a byte view of its
// []float32 storage with decoding it four bytes at a time (the big-endian-safe path).
func BenchmarkReadFloat32s(b *testing.B) {
	const n = 1 << 18
	src := bytes.Repeat([]byte{0, 0, 0x80, 0x3f}, n)
	dst := make([]float32, n)
	for _, little := range []bool{true, false} {
		b.Run(map[bool]string{true: "view", false: "portable"}[little], func(b *testing.B) {
			defer setHostLittleEndian(little)()
			var scratch []byte
			r := bytes.NewReader(src)
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				r.Reset(src)
				if _, err := readFloat32s(r, dst, &scratch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecode decodes the small op from memory, without the network.
func BenchmarkDecode(b *testing.B) {
	f := frame(1, gemmJSONFor(1, 4, 16, 8), ramp(32, 1), ramp(128, 2))
	r := bytes.NewReader(f)
	d := NewDecoder(r, 0)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(f)
		if _, err := d.Decode(); err != nil && err != io.EOF {
			b.Fatal(err)
		}
	}
}
