// Package virtiodev is layer 4 of sstemu: the QEMU virtio-sst device. It serves the
// driver's split virtqueues in emulated guest memory (package virtqueue), answers NOOP,
// ECHO, GET_INFO and RESET itself, and forwards COMPUTE, READ, WRITE, CONFIGURE and GEMM
// as raw 4104-byte SSTRequests to the SST component (layer 5), over a byte stream or, for
// an in-process component, by a direct call (Config.Handler), and puts its 4112-byte
// SSTResponses back in the guest's buffers.
//
// # Interface to the driver (layer 3)
//
//	sess, err := comp.OpenDirect()                   // in-process layer 5, called directly
//	dev, err := virtiodev.New(virtiodev.Config{Handler: sess}) // or Dialer: UnixDialer(path)
//	offered := dev.OfferedFeatures()                 // feature negotiation
//	err = dev.AckFeatures(offered & wanted)
//	err = dev.Attach(mem, [3]virtqueue.Layout{req, resp, evt}, interrupt) // DRIVER_OK
//	dev.Notify(protocol.QueueRequest)                // the driver's kick; never blocks on I/O
//	…interrupt(queue) is called when used buffers are ready…
//	dev.Reset(); dev.Stats(); dev.ConfigSpace(); dev.Shutdown(ctx) / dev.Close()
//
// Queue 0 carries requests and their responses (one device-readable 4104-byte buffer
// then one device-writable 4112-byte buffer per chain); queue 1 is unused; on queue 2 the
// driver posts writable buffers of at least 24 bytes that the device fills with SSTEvents:
// LINK_UP and LINK_DOWN (data = connection number 1, 2, …) when the link to layer 5 comes
// and goes, RESET (data = request_id) when a RESET request is served. While no event
// buffer is posted, events wait in a bounded backlog (Config.EventBacklog, default 64);
// when it is full the oldest is dropped and counted in Stats.EventsDropped.
//
// # Answers
//
// A chain whose readable part is shorter than 4104 bytes, or whose writable part is
// shorter than 4112, is answered ERROR (with request_id and user_data copied when the
// readable part holds them) and counted in Stats.Errors. A writable part too short for a
// response gets as much of the ERROR response as fits, and the used length says how much
// that was (the reference claims 4112 bytes it never wrote). Otherwise the used length is
// always 4112. Responses forwarded from layer 5 get the request's request_id and
// user_data stamped in, so the driver's ids survive whatever layer 5 does.
//
// # In-process layer 5: direct calls
//
// With Config.Handler (sstcomponent.Direct) there is no link: Notify of the request queue
// serves the queue on the caller's goroutine, as QEMU serves a queue kick on the vCPU
// thread that wrote the notify register. It pops each chain, calls the Handler on the
// request and response buffers where they lie in guest memory (gathering and scattering
// only a chain laid out otherwise), and raises the interrupt before returning; a notify
// arriving while another goroutine serves the queue is left to that one, which serves the
// queue once more before it stops. A request then crosses no goroutine and no pipe.
//
// # The link to layer 5
//
// The link is any byte stream a Dialer opens: an in-memory pipe to an in-process
// component (PipeDialer) or a Unix socket to an external one (UnixDialer). A writer goroutine sends
// queued requests in batches and a reader goroutine matches each whole response (never a
// short read) to the oldest request outstanding, so many requests are in flight at once
// and the device goroutine never waits on the link. On the in-memory pipe, whose writes
// never wait while it has room, the device goroutine sends a request itself when the
// writer is idle with nothing queued, saving a goroutine hand-off per request. While the link is down a forwarded
// request is answered NO_DEVICE at once; requests in flight when it breaks are answered
// NO_DEVICE too. The device reconnects by itself with exponential back-off (50 ms to 1 s
// by default), unlike the reference, which connects only at start-up. An optional
// Config.ResponseTimeout drops a link whose oldest request waits too long (answering
// TIMEOUT). A response with no request outstanding drops the link (ErrUnsolicited).
//
// # Concurrency and cost
//
// One device goroutine serves the queues; the link adds a dialer, a writer and a reader.
// Forwarding slots (4 KiB request copies) are pooled, so a steady stream of requests does
// not allocate in this package. Driver notifications are suppressed while the device
// drains the request queue, and interrupts follow the driver's suppression flags or
// EVENT_IDX (VirtIO 1.x §2.7.7, §2.7.10).
package virtiodev
