package virtiodev

import (
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Handler is layer 5 in the same process, called directly (sstcomponent.Direct): Handle
// answers the encoded SSTRequest req (protocol.RequestSize bytes), which the device routed
// to layer 5 as type t, into resp (protocol.ResponseSize bytes) and reports true, or
// reports false when the component is gone (the device then answers NO_DEVICE). It may be
// called from several devices' goroutines at once. req and resp may be the driver's
// buffers in guest memory, which a hostile driver can change during the call: Handle takes
// the type from t, reads every other byte of req once, and keeps neither slice.
//
// With a Handler the device serves its request queue on the goroutine that notifies it,
// as QEMU handles a queue kick on the vCPU thread that wrote the notify register: the
// driver's Notify pops the chain, calls Handle on the request and response buffers where
// they lie in guest memory (handleInPlace; other layouts are gathered and scattered),
// and raises the interrupt before it returns, with no goroutine hand-off and no stream.
// Notifies that arrive while another goroutine is serving the queue are left to it.
type Handler interface {
	Handle(t protocol.RequestType, req, resp []byte) bool
}

// kickRequests serves the request queue on the calling goroutine, unless another is
// serving it: that one then serves it once more before it stops, so no notification is
// lost and the queue is never popped by two goroutines at once.
func (d *Device) kickRequests() {
	d.svcPending.Store(true)
	for d.svcMu.TryLock() {
		for d.svcPending.Swap(false) {
			d.serviceRequests()
		}
		d.svcMu.Unlock()
		if !d.svcPending.Load() {
			return
		}
	}
}

// handleInPlace answers a request for layer 5 through the Handler in guest memory itself:
// when the chain's first readable and first writable descriptors hold a whole SSTRequest
// and SSTResponse apart from each other (as every driver lays them out, sstdev's
// included), the component reads the request where the driver wrote it and writes its
// answer where the driver reads it, so neither is copied through the device. It reports
// false, having done nothing, for any other chain or request type; process then copies.
func (d *Device) handleInPlace(a *attachment, c virtqueue.Chain) bool {
	req, resp, ok := c.Views(protocol.RequestSize, protocol.ResponseSize)
	if !ok {
		return false
	}
	t := requestType(req) // read once: the Handler is told it, and does not read it again
	if RouteOf(t) != RouteForward {
		return false
	}
	d.handleDirect(t, req, resp)
	d.returnChain(a.req, c, protocol.ResponseSize)
	return true
}

// handleDirect answers a request for layer 5 through the Handler, into resp, with the
// request's ids as the link's answers carry them. The ids are read before Handle: req
// may be guest memory, which only the driver's layout keeps apart from resp.
func (d *Device) handleDirect(t protocol.RequestType, req, resp []byte) {
	var head [protocol.RequestIDOffset + protocol.IDsSize]byte // the header up to the ids, read once
	copy(head[:], req)
	if d.linkUp.Load() && d.cfg.Handler.Handle(t, req, resp) {
		d.stats.forwarded.Add(1)
		copy(resp[protocol.ResponseRequestIDOffset:], head[protocol.RequestIDOffset:])
		return
	}
	d.stats.noDevice.Add(1)
	statusResponse(resp, protocol.StatusNoDevice, head[:])
}
