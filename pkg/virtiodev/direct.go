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

// handleDirect answers a request for layer 5 through the Handler, into resp, with the
// request's ids as the link's answers carry them.
func (d *Device) handleDirect(s *forwarded, c virtqueue.Chain, resp []byte) {
	if d.linkUp.Load() && d.cfg.Handler.Handle(s.req[:], resp) {
		d.stats.forwarded.Add(1)
		copy(resp[protocol.ResponseRequestIDOffset:][:protocol.IDsSize], s.req[protocol.RequestIDOffset:][:protocol.IDsSize])
		return
	}
	d.stats.noDevice.Add(1)
	statusResponse(resp, protocol.StatusNoDevice, s.req[:])
}
