package sstcomponent

import (
	"sync"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Direct is an in-process session with the component that needs no stream: layer 4
// hands it each encoded SSTRequest and gets the encoded SSTResponse back in the same
// call, on its own goroutine. It is what an in-process device uses instead of a link (as
// QEMU handles a queue kick on the vCPU thread that made it), so a timing request crosses
// no goroutine and no pipe. The answers are those ServeConn gives, request for request;
// its statistics count as one connection's. Handle is safe for concurrent use; calls are
// answered one at a time.
type Direct struct {
	cn   *conn
	log  zerolog.Logger
	once sync.Once
}

// OpenDirect opens a direct session, or returns ErrClosed after Shutdown.
func (c *Component) OpenDirect() (*Direct, error) {
	d := &Direct{}
	if _, err := c.track(nil, d); err != nil {
		return nil, err
	}
	d.log.Info().Msg("client connected")
	return d, nil
}

// Handle answers the request encoded in req (RequestSize bytes), of type t, into resp
// (ResponseSize bytes) and reports true, or reports false, writing nothing, once the
// session is closed (by Close or the component's Shutdown). t is the type the caller
// routed the request by; req's own type field is not read, and every other byte of req is
// read once, before resp is written: req and resp may be guest memory a driver can change
// meanwhile (virtiodev.Handler).
func (d *Direct) Handle(t protocol.RequestType, req, resp []byte) bool {
	cn := d.cn
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.closing.Load() {
		return false
	}
	decodeRequestAs(&cn.req, t, req[:protocol.RequestSize])
	cn.comp.handle(&cn.req, &cn.resp, &cn.stats, &d.log)
	cn.resp.encode(resp[:protocol.ResponseSize])
	return true
}

// Close ends the session; later Handle calls report false. It is idempotent and always
// returns nil.
func (d *Direct) Close() error {
	d.once.Do(func() {
		d.cn.mu.Lock()
		d.cn.closing.Store(true) // under mu: no Handle counts a request after the merge
		d.cn.mu.Unlock()
		d.cn.comp.untrack(d.cn)
		d.log.Info().Msg("client disconnected")
	})
	return nil
}
