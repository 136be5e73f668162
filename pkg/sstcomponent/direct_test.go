package sstcomponent

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// TestDirectAnswersAsStream sends the same requests to two equal components, one over a
// socket and one through a Direct session: the answers are byte for byte the same.
func TestDirectAnswersAsStream(t *testing.T) {
	reqs := []rawReq{
		newReq(typeEcho, 1).u64(offReqPayload, 0xfeed),
		gemmReq(2, 4, 16, 8, 4),
		gemmReq(3, 1024, 1024, 1024, 4),
		computeReq(4, 10, 1),
		writeReq(5, 0x100, []byte("layer five")),
		readReq(6, 0x100, 10),
		configureReq(7, 1, 2),
		newReq(0x77, 8),                                 // unknown type: INVALID
		newReq(typeCompute, 9).u32(offReqPayload+8, 99), // a latency model out of range
		gemmListReq(10, 4, listEntries...),
		gemmListReq(11, 4, listEntry{4, 16, 8, 1}, listEntry{1, 0, 1, 1}), // answered up to its second entry
		gemmListReq(12, 4).u32(offReqPayload, 128),                        // a count beyond the list's room: INVALID
	}
	h := start(t, Config{})
	c := h.dial()
	other := start(t, Config{})
	d, err := other.comp.OpenDirect()
	require.NoError(t, err)
	resp := make([]byte, respSize)
	var invalid uint64
	for _, r := range reqs {
		want := roundTrip(t, c, r)
		if want.status() == statusInvalid {
			invalid++
		}
		require.True(t, d.Handle(typeOf(r), r, resp))
		assert.Equal(t, []byte(want), resp, "request type %d id %d", le.Uint32(r[offType:]), le.Uint64(r[offRequestID:]))
	}
	st := other.comp.Stats()
	assert.Equal(t, uint64(len(reqs)), st.Total)
	assert.Equal(t, uint64(1), st.Connections)
	assert.Equal(t, invalid, st.Invalid)
	assert.NotZero(t, invalid, "the requests include invalid ones")
	require.NoError(t, d.Close())
	assert.False(t, d.Handle(typeOf(reqs[0]), reqs[0], resp), "a closed session answers")
	assert.Equal(t, uint64(len(reqs)), other.comp.Stats().Total, "statistics kept after Close")
}

// TestDirectTakesTheRoutedType: Handle acts on the type it is given, not on the request's
// type field, which a driver may have changed after the device routed the request: a GEMM
// whose bytes now say RESET (or an unknown type) is answered as the GEMM it was routed as,
// and the component is not reset.
func TestDirectTakesTheRoutedType(t *testing.T) {
	c, err := New(Config{Params: tutorialParams()})
	require.NoError(t, err)
	d, err := c.OpenDirect()
	require.NoError(t, err)
	defer d.Close()
	want := make([]byte, respSize)
	require.True(t, d.Handle(protocol.ReqGEMM, gemmReq(7, 4, 16, 8, 4), want))
	for _, flipped := range []uint32{uint32(protocol.ReqReset), 999} {
		r := gemmReq(7, 4, 16, 8, 4)
		le.PutUint32(r[offType:], flipped)
		got := make([]byte, respSize)
		require.True(t, d.Handle(protocol.ReqGEMM, r, got))
		assert.Equal(t, want, got, "type field %d", flipped)
	}
	st := c.Stats()
	assert.Equal(t, uint64(3), st.Total)
	assert.Zero(t, st.Invalid)
}

// TestDirectShutdown checks that Shutdown ends Direct sessions, concurrent calls
// included, and that none opens after it.
func TestDirectShutdown(t *testing.T) {
	comp, err := New(Config{})
	require.NoError(t, err)
	d, err := comp.OpenDirect()
	require.NoError(t, err)
	var wg sync.WaitGroup
	var answered [4]uint64
	for w := range answered {
		wg.Go(func() {
			resp := make([]byte, respSize)
			for i := range 1000 {
				if !d.Handle(protocol.ReqGEMM, gemmReq(uint64(i), 4, 16, 8, 4), resp) {
					return
				}
				answered[w]++
			}
		})
	}
	require.NoError(t, comp.Shutdown(context.Background()))
	wg.Wait()
	var sum uint64
	for _, n := range answered {
		sum += n
	}
	assert.Equal(t, sum, comp.Stats().Total, "every answer counted, none after the merge")
	assert.False(t, d.Handle(protocol.ReqGEMM, gemmReq(1, 4, 16, 8, 4), make([]byte, respSize)))
	_, err = comp.OpenDirect()
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, d.Close())
}
