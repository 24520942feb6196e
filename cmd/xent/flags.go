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
