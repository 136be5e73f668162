package sstcomponent

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// benchSocket serves a fresh component on a Unix socket and returns a connection to it.
func benchSocket(b *testing.B, flushEach bool) net.Conn {
	b.Helper()
	comp, err := New(Config{Params: tutorialParams()})
	if err != nil {
		b.Fatal(err)
	}
	comp.flushEach = flushEach
	l, err := Listen(filepath.Join(b.TempDir(), "b.sock"))
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = comp.Serve(l) }()
	b.Cleanup(func() { _ = comp.Shutdown(context.Background()) })
	c, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// BenchmarkRoundTrip is one GEMM timing request and its answer through a Unix socket,
// one at a time, as the QEMU device sends them.
func BenchmarkRoundTrip(b *testing.B) {
	c := benchSocket(b, false)
	req, resp := gemmReq(1, 4, 16, 8, 4), make([]byte, respSize)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTripPipe is the same over net.Pipe into ServeConn, the in-process link.
func BenchmarkRoundTripPipe(b *testing.B) {
	comp, err := New(Config{Params: tutorialParams()})
	if err != nil {
		b.Fatal(err)
	}
	client, server := net.Pipe()
	go func() { _ = comp.ServeConn(context.Background(), server) }()
	b.Cleanup(func() { _ = client.Close() })
	req, resp := gemmReq(1, 4, 16, 8, 4), make([]byte, respSize)
	for b.Loop() {
		if _, err := client.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(client, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelined streams b.N GEMM requests through a Unix socket while reading the
// answers concurrently; "batched" is the component's policy (flush only when no whole
// request is buffered), "flush-each" flushes after every answer, for comparison.
func BenchmarkPipelined(b *testing.B) {
	for _, mode := range []struct {
		name      string
		flushEach bool
	}{{"batched", false}, {"flush-each", true}} {
		b.Run(mode.name, func(b *testing.B) {
			c := benchSocket(b, mode.flushEach)
			const batch = 64
			var stream []byte
			for i := range uint64(batch) {
				stream = append(stream, gemmReq(i, 4, 16, 8, 4)...)
			}
			werr := make(chan error, 1)
			b.ResetTimer()
			go func() {
				for sent := 0; sent < b.N; sent += batch {
					n := min(batch, b.N-sent)
					if _, err := c.Write(stream[:n*reqSize]); err != nil {
						werr <- err
						return
					}
				}
				werr <- nil
			}()
			resp := make([]byte, 16*respSize)
			for got := 0; got < b.N; {
				n := min(16, b.N-got)
				if _, err := io.ReadFull(c, resp[:n*respSize]); err != nil {
					b.Fatal(err)
				}
				got += n
			}
			if err := <-werr; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkHandle is the component's own cost of one GEMM request, without I/O.
func BenchmarkHandle(b *testing.B) {
	comp, err := New(Config{Params: tutorialParams()})
	if err != nil {
		b.Fatal(err)
	}
	var (
		req  protocol.Request
		resp reply
		st   Stats
		log  = zerolog.Nop()
	)
	if err := req.Decode(gemmReq(1, 4, 16, 8, 4)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		comp.handle(&req, &resp, &st, &log)
	}
}
