package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// The log vocabulary: every line has a `layer` key naming the package that logged it
// (tcpfront, deviceserver, sstdev, virtiodev, sstcomponent, stack; cmdLayer for the
// command's own lines), set once per logger; a key keeps one JSON type on every line
// (`device` is always the device's index, a path is `device_file` or `socket`); messages
// do not repeat the layer's name.

// cmdLayer is the layer key of the lines the command itself logs.
const cmdLayer = "sstemu"

// layerLogger is root with the layer key set, for the lines of one package.
func layerLogger(root zerolog.Logger, layer string) zerolog.Logger {
	return root.With().Str("layer", layer).Logger()
}

// logFlags are accepted by every long-running command.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"SSTEMU_LOG_LEVEL"}, Category: catLogging,
			Usage: "trace, debug, info, warn or error (debug logs every op's cycles)"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: []string{"SSTEMU_LOG_FORMAT"}, Category: catLogging,
			Usage: "console (human-readable, coloured on a terminal) or json"},
	}
}

// newLogger builds the process logger from the log flags, writing to w.
func newLogger(c *cli.Context, w io.Writer) (zerolog.Logger, error) {
	level, err := zerolog.ParseLevel(c.String("log-level"))
	if err != nil || level == zerolog.NoLevel {
		return zerolog.Nop(), fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", c.String("log-level"))
	}
	switch c.String("log-format") {
	case "json":
	case "console":
		colour := false
		if f, ok := w.(*os.File); ok {
			colour = isatty.IsTerminal(f.Fd())
		}
		w = zerolog.ConsoleWriter{Out: w, NoColor: !colour, TimeFormat: time.TimeOnly}
	default:
		return zerolog.Nop(), fmt.Errorf("--log-format %q: want console or json", c.String("log-format"))
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), nil
}
