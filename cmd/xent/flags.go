package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

var (
	errUsage = errors.New("usage")
	errHelp  = errors.New("help")
)

// runFlags are the flags of a command that computes on a device and
// reports: --device, --json and --verbose.
type runFlags struct {
	dev             *string
	asJSON, verbose *bool
}

// newRunFlags defines the run flags on fs.
func newRunFlags(fs *flag.FlagSet) runFlags {
	return runFlags{
		dev:     fs.String("device", "auto", "device: auto, cpu, cpu:portable, cpu:avx2, cpu:avx512, cpu:neon, opencl, opencl:P:D, all"),
		asJSON:  fs.Bool("json", false, "print one JSON object (and nothing on stderr unless --verbose)"),
		verbose: fs.Bool("verbose", false, "say on stderr which device runs, also with --json"),
	}
}

// parse parses args for command name; bad flags print the usage on stderr.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xent %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}
