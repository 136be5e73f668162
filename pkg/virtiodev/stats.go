package virtiodev

import "sync/atomic"

// Stats is a snapshot of the device's counters. Counters only grow: unlike the reference,
// a device reset does not clear them.
type Stats struct {
	// Requests is the number of chains popped from the request queue, good or bad.
	Requests uint64 `json:"requests"`
	// Responses is the number of chains completed with a whole 4112-byte response, of
	// any status.
	Responses uint64 `json:"responses"`
	// Events is the number of SSTEvents delivered on the event queue.
	Events uint64 `json:"events"`
	// Errors counts the faults the device detected in what the driver gave it: requests
	// answered ERROR for a short readable or writable part, malformed chains, event
	// buffers too small to hold an event.
	Errors uint64 `json:"errors"`

	// Forwarded is the number of requests sent to the SST component.
	Forwarded uint64 `json:"forwarded"`
	// NoDevice is the number of requests answered NO_DEVICE (link down, or lost when it
	// broke); Timeouts those answered TIMEOUT when the link was dropped for not answering.
	NoDevice uint64 `json:"no_device"`
	Timeouts uint64 `json:"timeouts"`
	// Invalid is the number of requests of unknown type (answered INVALID).
	Invalid uint64 `json:"invalid"`
	// Stale is the number of answers from the SST component discarded because the
	// driver reset the device while they were in flight.
	Stale uint64 `json:"stale"`
	// EventsDropped is the number of events lost because the backlog was full.
	EventsDropped uint64 `json:"events_dropped"`
	// LinkUps and LinkDowns count connections made and lost; DialFailures failed
	// connection attempts; LinkTimeouts and LinkProtocolErrors connections the device
	// dropped itself (no answer in time; a response nobody asked for).
	LinkUps            uint64 `json:"link_ups"`
	LinkDowns          uint64 `json:"link_downs"`
	DialFailures       uint64 `json:"dial_failures"`
	LinkTimeouts       uint64 `json:"link_timeouts"`
	LinkProtocolErrors uint64 `json:"link_protocol_errors"`

	// LinkUp reports whether the device is connected to the SST component now.
	LinkUp bool `json:"link_up"`
	// InFlight is the number of requests sent to the SST component and not yet answered.
	InFlight int64 `json:"in_flight"`
}

// counters are the live, atomic counters behind Stats.
type counters struct {
	requests, responses, events, errors      atomic.Uint64
	forwarded, noDevice, timeouts, invalid   atomic.Uint64
	stale, eventsDropped, linkUps, linkDowns atomic.Uint64
}
