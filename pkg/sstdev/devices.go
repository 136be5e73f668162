package sstdev

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
)

// Devices is the set /dev/sst0 … /dev/sst(n-1) of one driver instance, each Device with
// its own guest memory, queues and backend.
type Devices struct {
	devs []*Device
}

// NewDevices creates n devices (1 … MaxDevices) from the template cfg (its Index and
// Backend are ignored), binding device i to newBackend(i), which the device then owns.
// On error every device and backend created so far is closed.
func NewDevices(n int, cfg Config, newBackend func(index int) (Backend, error)) (*Devices, error) {
	if n < 1 || n > MaxDevices {
		return nil, &ConfigError{Field: "devices", Reason: fmt.Sprintf("%d is outside 1 … %d", n, MaxDevices)}
	}
	if newBackend == nil {
		return nil, &ConfigError{Field: "newBackend", Reason: "nil"}
	}
	s := &Devices{}
	for i := range n {
		c := cfg
		c.Index, c.Backend = i, nil
		d, err := New(c)
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		s.devs = append(s.devs, d)
		b, err := newBackend(i)
		if err != nil {
			return nil, errors.Join(fmt.Errorf("sstdev: backend of %s: %w", d.path, err), s.Close())
		}
		if err := d.Bind(b); err != nil {
			if c, ok := b.(io.Closer); ok {
				err = errors.Join(err, c.Close())
			}
			return nil, errors.Join(err, s.Close())
		}
	}
	return s, nil
}

// Len returns the number of devices.
func (s *Devices) Len() int { return len(s.devs) }

// Device returns /dev/sst<i>, or nil when there is no such device.
func (s *Devices) Device(i int) *Device {
	if i < 0 || i >= len(s.devs) {
		return nil
	}
	return s.devs[i]
}

// All returns the devices in index order.
func (s *Devices) All() []*Device { return append([]*Device(nil), s.devs...) }

// Lookup finds a device by path ("/dev/sst3") or name ("sst3").
func (s *Devices) Lookup(name string) (*Device, bool) {
	rest, ok := strings.CutPrefix(name, DevicePrefix)
	if !ok {
		rest, ok = strings.CutPrefix(name, DevicePrefix[len("/dev/"):])
	}
	if !ok {
		return nil, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || strconv.Itoa(i) != rest {
		return nil, false
	}
	d := s.Device(i)
	return d, d != nil
}

// Open opens the device with the given path or name, as open(2): ENOENT when there is no
// such device, ENODEV when it is not ready.
func (s *Devices) Open(name string) (*File, error) {
	d, ok := s.Lookup(name)
	if !ok {
		return nil, pathError(opOpen, name, syscall.ENOENT)
	}
	return d.Open()
}

// Stats returns every device's statistics, in index order.
func (s *Devices) Stats() []Stats {
	out := make([]Stats, len(s.devs))
	for i, d := range s.devs {
		out[i] = d.Stats()
	}
	return out
}

// WaitLinkUp waits until every device's link to the SST component is up (see
// Device.WaitLinkUp); it returns the first device's error otherwise.
func (s *Devices) WaitLinkUp(ctx context.Context) error {
	for _, d := range s.devs {
		if err := d.WaitLinkUp(ctx); err != nil {
			return fmt.Errorf("sstdev: %s: waiting for the link to the SST component: %w", d.path, err)
		}
	}
	return nil
}

// Close closes every device (and its backend) and returns their errors joined.
func (s *Devices) Close() error {
	var errs []error
	for _, d := range s.devs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}
