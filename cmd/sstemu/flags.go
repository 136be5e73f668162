package main

import "github.com/urfave/cli/v2"

// Flag categories, the headings of `sstemu serve --help`.
const (
	catFront   = "front end and limits"
	catLayers  = "layers"
	catModel   = "performance model"
	catRecords = "timing records"
	catLogging = "logging"
)

// ptr returns a pointer to a copy of v, for flag values given as pointers.
func ptr[T any](v T) *T { return &v }

// byteFlag returns the value of the byteSize flag name, in bytes.
func byteFlag(c *cli.Context, name string) int64 {
	if b, ok := c.Generic(name).(*byteSize); ok {
		return int64(*b)
	}
	return 0
}
