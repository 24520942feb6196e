package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/xentlab/xent/device"
)

// devices lists every device like clinfo in brief.
func devices(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	for _, d := range device.List() {
		fmt.Fprintf(stdout, "%-14s %s\n", d.Spec, d.Name)
		for _, kv := range d.Details {
			fmt.Fprintf(stdout, "%-14s   %-18s %s\n", "", kv[0], kv[1])
		}
	}
	return nil
}
