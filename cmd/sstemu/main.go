package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func newApp() *cli.App {
	return &cli.App{
		Name:  "sstemu",
		Usage: "the PyTorch-to-SST accelerator simulation stack in one binary",
		Commands: []*cli.Command{
			serveCommand(),
			versionCommand(),
			benchCommand(),
			sstCommand(),
			estimateCommand(),
			floorCommand(),
		},
		HideHelpCommand: true,
	}
}

func main() {
	if err := newApp().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "sstemu:", err)
		os.Exit(1)
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintf(c.App.Writer, "sstemu %s\n", version)
			return err
		},
	}
}
