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

// logFlags are accepted by every long-running command.
func logFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"SSTEMU_LOG_LEVEL"},
			Usage: "trace, debug, info, warn or error (debug logs every op's cycles)"},
		&cli.StringFlag{Name: "log-format", Value: "console", EnvVars: []string{"SSTEMU_LOG_FORMAT"},
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
