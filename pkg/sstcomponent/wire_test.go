package sstcomponent

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// inPlace answers requests the way the serve loop does: one request structure and one
// answer reused for all, partial decoding, answers encoded over whatever the buffer held.
type inPlace struct {
	comp *Component
	req  protocol.Request
	resp reply
	st   Stats
	out  []byte
}

// whole answers requests with fresh structures, protocol's Decode and Encode.
type whole struct {
	comp *Component
	st   Stats
}

func newComparison(t testing.TB) (*inPlace, *whole) {
	t.Helper()
	a, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	b, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	return &inPlace{comp: a, out: bytes.Repeat([]byte{0xEE}, respSize)}, &whole{comp: b}
}

func (p *inPlace) answer(b []byte) []byte {
	log := zerolog.Nop()
	decodeRequest(&p.req, b)
	p.comp.handle(&p.req, &p.resp, &p.st, &log)
	p.resp.encode(p.out)
	return p.out
}

func (w *whole) answer(t testing.TB, b []byte) []byte {
	log := zerolog.Nop()
	var req protocol.Request
	require.NoError(t, req.Decode(b))
	var resp reply
	w.comp.handle(&req, &resp, &w.st, &log)
	out, err := resp.Response.MarshalBinary()
	require.NoError(t, err)
	return out
}

// compareAnswers feeds reqs to both and requires byte-identical answers and statistics.
func compareAnswers(t testing.TB, reqs []rawReq) {
	t.Helper()
	p, w := newComparison(t)
	for i, r := range reqs {
		want := w.answer(t, r)
		if got := p.answer(r); !bytes.Equal(got, want) {
			t.Fatalf("request %d (type %d): in-place answer differs from the whole-structure one at byte %d",
				i, le.Uint32(r), firstDiff(got, want))
		}
	}
	require.Equal(t, w.st, p.st, "statistics")
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// filled is a request whose whole payload is pattern bytes, with the given fields on top.
func filled(r rawReq, pattern byte) rawReq {
	for i := offReqPayload; i < reqSize; i++ {
		r[i] = pattern
	}
	return r
}

// TestAnswersInPlace checks that reusing the request and answer structures and decoding
// and encoding only what a type uses gives the same bytes as whole structures: no byte of
// one request or answer leaks into the next.
func TestAnswersInPlace(t *testing.T) {
	echo := filled(newReq(typeEcho, 1), 0x5A)
	data := bytes.Repeat([]byte{0xC3}, 4064)
	tests := []struct {
		name string
		reqs []rawReq
	}{
		{"fixed-field answers after an echo", []rawReq{
			echo, gemmReq(2, 4, 16, 8, 4), echo, computeReq(3, 7, 1), echo,
			newReq(typeGetInfo, 4), echo, newReq(typeNoop, 5), echo, configureReq(6, 1, 128),
		}},
		{"fixed-field requests after payload-heavy ones", []rawReq{
			writeReq(1, 0x1000, data), filled(gemmReq(2, 4, 16, 8, 4), 0x77).u32(24, 4).u32(28, 16).u32(32, 8).u32(36, 4),
			readReq(3, 0x1000, 4080), computeReq(4, 9, 2), readReq(5, 0x1000, 17), newReq(typeReset, 6),
		}},
		{"INVALID after answers with payload", []rawReq{
			readReq(1, 0, 4080), gemmReq(2, 0, 16, 8, 4), echo, newReq(42, 3), readReq(4, 0, 4081),
			computeReq(5, 1, 9), writeReq(6, protocol.DeviceMemorySize-1, []byte{1, 2}),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { compareAnswers(t, tt.reqs) })
	}
	t.Run("random mix", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		reqs := make([]rawReq, 2000)
		for i := range reqs {
			reqs[i] = randomRequest(rng, uint64(i))
		}
		compareAnswers(t, reqs)
	})
}

// randomRequest is a request of any type (unknown ones included) over a random payload,
// with fields that are valid more often than chance would make them.
func randomRequest(rng *rand.Rand, id uint64) rawReq {
	r := newReq(uint32(rng.IntN(11)), id)
	for i := offReqPayload; i < reqSize; i++ {
		r[i] = byte(rng.Uint32())
	}
	r.u32(4, rng.Uint32())
	switch le.Uint32(r) {
	case typeCompute:
		r.u64(24, rng.Uint64N(1000)).u32(32, rng.Uint32N(5))
	case typeGEMM:
		r.u32(24, rng.Uint32N(256)).u32(28, rng.Uint32N(256)).u32(32, rng.Uint32N(256)).u32(36, 1+rng.Uint32N(8))
	case typeRead:
		r.u64(24, rng.Uint64N(1<<20)).u32(32, rng.Uint32N(4200))
	case typeWrite:
		r.u64(24, rng.Uint64N(1<<20)).u32(32, rng.Uint32N(4100))
	case typeConfigure:
		r.u32(24, rng.Uint32N(8)).u64(32, 1+rng.Uint64N(1000))
	}
	return r
}

// FuzzAnswersInPlace compares in-place and whole-structure answers over requests built
// from fuzzer bytes: each 48-byte chunk is a request's type (byte 0, modulo 11), its
// request_id (bytes 0-7) and the first 40 bytes of its payload (bytes 8-47); the rest of
// the payload repeats byte 1.
func FuzzAnswersInPlace(f *testing.F) {
	chunk := func(typ byte, fields ...uint32) []byte {
		c := make([]byte, 48)
		c[0], c[1] = typ, 0x9C
		for i, v := range fields {
			le.PutUint32(c[8+4*i:], v)
		}
		return c
	}
	f.Add(append(chunk(typeEcho), chunk(typeGEMM, 4, 16, 8, 4)...))
	f.Add(append(chunk(typeRead, 0, 0, 4080), chunk(typeCompute, 5, 0, 1)...))
	f.Add(append(chunk(typeWrite, 64, 0, 100), chunk(typeRead, 64, 0, 200)...))
	f.Add(append(chunk(typeGetInfo), chunk(10)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		var reqs []rawReq
		for len(in) > 0 && len(reqs) < 64 {
			c := make([]byte, 48)
			in = in[copy(c, in):]
			r := filled(newReq(uint32(c[0]%11), le.Uint64(c)), c[1])
			copy(r[offReqPayload:], c[8:])
			reqs = append(reqs, r)
		}
		compareAnswers(t, reqs)
	})
}

// TestAnswerWriter checks batching, flushing when full and short writes.
func TestAnswerWriter(t *testing.T) {
	t.Run("batches until full", func(t *testing.T) {
		var sink bytes.Buffer
		aw := newAnswerWriter(&sink, 2*respSize)
		for i := range 3 {
			out, err := aw.next()
			require.NoError(t, err)
			require.Len(t, out, respSize)
			for j := range out {
				out[j] = byte(i + 1)
			}
			aw.commit()
		}
		require.Equal(t, 2*respSize, sink.Len(), "the third answer must flush the first two")
		require.NoError(t, aw.flush())
		want := append(append(bytes.Repeat([]byte{1}, respSize), bytes.Repeat([]byte{2}, respSize)...),
			bytes.Repeat([]byte{3}, respSize)...)
		require.Equal(t, want, sink.Bytes())
		require.NoError(t, aw.flush(), "an empty flush")
		require.Equal(t, 3*respSize, sink.Len())
	})
	t.Run("short write", func(t *testing.T) {
		aw := newAnswerWriter(shortWriter{}, respSize)
		_, err := aw.next()
		require.NoError(t, err)
		aw.commit()
		require.ErrorIs(t, aw.flush(), io.ErrShortWrite)
	})
}

// shortWriter accepts one byte less than asked, without an error.
type shortWriter struct{}

func (shortWriter) Write(b []byte) (int, error) { return len(b) - 1, nil }
