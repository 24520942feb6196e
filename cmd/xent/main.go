// Command xent computes softmax cross-entropy over large logit matrices.
//
//	xent demo                      the textbook worked example
//	xent eval --logits L.npy --targets T.npy [flags]
//	xent devices                   list the compute devices
//	xent bench [flags]             CPU vs GPU benchmarks with the roofline
//
// Run "xent CMD -h" for the flags of a command.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
)

const usage = `usage: xent <command> [flags]

commands:
  demo      the textbook worked example (4 positions, vocab 5), on the CPU
  eval      loss, perplexity and accuracy of a .npy logit dump against .npy targets
  devices   list the compute devices (CPU, OpenCL platforms and devices)
  bench     benchmarks: log-sum-exp, forward and fused forward+backward, with the roofline

Run "xent <command> -h" for its flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command and returns the exit status: 0, 1 for a failure
// (one line on stderr), 2 for bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"demo": demo, "eval": eval, "devices": devices, "bench": benchCmd,
	}
	f, ok := cmds[args[0]]
	if !ok {
		if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "xent: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if err := f(ctx, args[1:], stdout, stderr); err != nil {
		if err == errUsage {
			return 2
		}
		if err == errHelp {
			return 0
		}
		fmt.Fprintf(stderr, "xent %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
