package virtiodev

import (
	"github.com/sstemu/sstemu/pkg/protocol"
	"github.com/sstemu/sstemu/pkg/virtqueue"
)

// Handler is layer 5 in the same process, called directly (sstcomponent.Direct): Handle
// answers the encoded SSTRequest req (protocol.RequestSize bytes) into resp
// (protocol.ResponseSize bytes) and reports true, or reports false when the component is
// gone (the device then answers NO_DEVICE). It may be called from several devices'
// goroutines at once.
//
// With a Handler the device serves its request queue on the goroutine that notifies it,
// as QEMU handles a queue kick on the vCPU thread that wrote the notify register: the
// driver's Notify pops the chain, gathers the request, calls Handle, scatters the answer
// and raises the interrupt before it returns, with no goroutine hand-off and no stream.
// Notifies that arrive while another goroutine is serving the queue are left to it.
type Handler interface {
	Handle(req, resp []byte) bool
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
	if !ok || RouteOf(requestType(req)) != RouteForward {
		return false
	}
	d.handleDirect(req, resp)
	d.returnChain(a.req, c, protocol.ResponseSize)
	return true
}

// handleDirect answers a request for layer 5 through the Handler, into resp, with the
// request's ids as the link's answers carry them. The ids are read before Handle: req
// may be guest memory, which only the driver's layout keeps apart from resp.
func (d *Device) handleDirect(req, resp []byte) {
	var ids [protocol.IDsSize]byte
	copy(ids[:], req[protocol.RequestIDOffset:])
	if d.linkUp.Load() && d.cfg.Handler.Handle(req, resp) {
		d.stats.forwarded.Add(1)
		copy(resp[protocol.ResponseRequestIDOffset:], ids[:])
		return
	}
	d.stats.noDevice.Add(1)
	statusResponse(resp, protocol.StatusNoDevice, req)
}
