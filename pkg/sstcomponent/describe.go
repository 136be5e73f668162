package sstcomponent

import "github.com/sstemu/sstemu/pkg/perfmodel"

// Model returns the kind and parameters of the model the component answers with now:
// Config's (or their defaults) until a CONFIGURE request changes them; RESET restores them.
func (c *Component) Model() (kind string, params perfmodel.Params) {
	m := c.model.Load()
	return m.kind, m.params
}

// ClockHz returns the component clock, which converts simulated cycles to simulated time.
func (c *Component) ClockHz() float64 { return c.clockHz }
