package virtiodev

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/sstemu/sstemu/pkg/protocol"
)

// Defaults of Config.
const (
	DefaultReconnectMin = 50 * time.Millisecond
	DefaultReconnectMax = time.Second
	DefaultEventBacklog = 64
	// DefaultSSTWindow is the window (Config.MaxInFlight) for an external SST component:
	// the real acalsim.VirtIODevice closes its link when about 40 answers wait unread in
	// its socket (internal/refsst's fake, with the same default socket buffer, first
	// fails at 45 on Linux), and with 32 it was measured to survive 64 clients.
	DefaultSSTWindow = 32
)

// SupportedFeatures is every bit the device may ever offer: protocol.BaseFeatures and
// protocol.TransportFeatures always, protocol.FeatureEvents while it is connected to the
// SST component. AckFeatures accepts any subset of it.
const SupportedFeatures = protocol.BaseFeatures | protocol.FeatureEvents | protocol.TransportFeatures

// Config configures a Device.
type Config struct {
	// DeviceID is SSTConfig.device_id (the QEMU property device-id).
	DeviceID uint32
	// Dialer opens the byte stream to the SST component (layer 5): UnixDialer for an
	// external one (--sst-socket), PipeDialer for an in-process component behind a
	// stream. Exactly one of Dialer and Handler is required.
	Dialer Dialer
	// Handler is an in-process SST component answered without a stream: the device
	// calls it on the goroutine that notified the request queue (see Handler). There is
	// then no link: it is up from New until Shutdown, and never reconnects.
	Handler Handler
	// ReconnectMin and ReconnectMax bound the exponential back-off between connection
	// attempts (defaults 50 ms and 1 s).
	ReconnectMin, ReconnectMax time.Duration
	// ResponseTimeout, when positive, is how long the oldest request sent to layer 5 may
	// wait for its answer; past it the device drops the connection, answers everything
	// in flight with TIMEOUT and reconnects. Zero waits forever (layer 3 has its own
	// 5 s timeout).
	ResponseTimeout time.Duration
	// MaxInFlight, when positive, is the window: the most requests sent to layer 5 and not
	// yet answered; more wait in the device, in order, until answers free the window.
	// Zero is no bound (the in-process component has none to fear); an external SST
	// needs one (DefaultSSTWindow).
	MaxInFlight int
	// EventBacklog is how many events the device keeps while the driver has no event
	// buffer posted (default 64); beyond it the oldest event is dropped and counted.
	EventBacklog int
	// Logger receives link changes (info, warn) and faulty chains (debug, warn); the zero
	// value logs nothing.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.Dialer == nil && c.Handler == nil {
		return &ConfigError{Field: "Dialer", Reason: "nil, and no Handler: the device needs an SST component"}
	}
	if c.Dialer != nil && c.Handler != nil {
		return &ConfigError{Field: "Handler", Reason: "set with a Dialer: the device has one SST component"}
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax <= 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMax < c.ReconnectMin {
		return &ConfigError{Field: "ReconnectMax", Reason: "smaller than ReconnectMin"}
	}
	if c.ResponseTimeout < 0 {
		return &ConfigError{Field: "ResponseTimeout", Reason: "negative"}
	}
	if c.MaxInFlight < 0 {
		return &ConfigError{Field: "MaxInFlight", Reason: "negative"}
	}
	if c.EventBacklog < 0 {
		return &ConfigError{Field: "EventBacklog", Reason: "negative"}
	}
	if c.EventBacklog == 0 {
		c.EventBacklog = DefaultEventBacklog
	}
	return nil
}
