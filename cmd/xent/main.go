// Command xent computes softmax cross-entropy over large logit matrices.
//
//	xent demo                      the textbook worked example
//	xent eval --logits L.npy --targets T.npy [flags]
//	xent eval --manifest M.jsonl [--shard i/n --stats-out S.json] [flags]
//	xent merge S_0.json S_1.json ...  the report of a sharded evaluation (or comparison)
//	xent compare --a A --b B [flags]  two models on the same rows, paired
//	xent devices                   list the compute devices
//	xent bench [flags]             CPU vs GPU benchmarks with the roofline
//	xent tune [flags]              time the OpenCL kernels' parameters on a device
//
// Run "xent CMD -h" for the flags of a command.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xentlab/xent/device"
)

const usage = `usage: xent <command> [flags]

commands:
  demo      the textbook worked example (4 positions, vocab 5), on the CPU; --linear trains a bigram model
  eval      loss, perplexity and accuracy of logits (.npy, .safetensors) against .npy targets,
            or of hidden states and a classifier (--hidden, --weight) through the fused linear;
            --manifest: many files as one evaluation, whole or a shard (--shard i/n --stats-out)
  merge     the report of a sharded evaluation (or comparison): merges the shards' --stats-out files exactly
  compare   two models on the same rows (--a, --b: logits files or manifests, line by line):
            each one's report, and B − A's mean loss with its paired standard error over
            the sequences, 95% interval and p-value (and accuracies', a teacher's KL's)
  devices   list the compute devices (CPU, OpenCL platforms and devices)
  bench     benchmarks: log-sum-exp, forward and fused forward+backward, with the roofline
  tune      time the OpenCL row kernels' parameters on a device; --write keeps the best

Run "xent <command> -h" for its flags. Outputs are written whole when a command succeeds,
never over an input or a file that is not a regular file. SIGINT/SIGTERM stop the work,
leave no partial output and exit 130/143.
`

// interrupted is the cause of the context's cancellation by a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted" }

// code returns the exit status of a process ended by i.sig: 128 + its
// number (130 for SIGINT, 143 for SIGTERM).
func (i interrupted) code() int {
	if s, ok := i.sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return 130
}

// grace is how long an interrupted command has to return before the
// process exits anyway (its temporary outputs removed): work that does not
// look at its context, such as a read blocked on a FIFO, is not waited for.
const grace = 3 * time.Second

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan int, 1)
	go func() { done <- run(ctx, os.Args[1:], os.Stdout, os.Stderr) }()
	select {
	case code := <-done:
		os.Exit(code)
	case sig := <-sigs:
		in := interrupted{sig}
		cancel(in)
		select {
		case code := <-done: // run said "interrupted" and removed its outputs
			os.Exit(code)
		case <-sigs: // a second signal: stop now
		case <-time.After(grace):
		}
		removeTemps()
		fmt.Fprintf(os.Stderr, "xent: interrupted\n")
		os.Exit(in.code())
	}
}

// run executes one command and returns the exit status: 0, 1 for a failure
// (one line on stderr), 2 for bad usage, 128 + the signal's number when
// ctx was cancelled by one (an interrupted cause).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"demo": demo, "eval": eval, "compare": compare, "merge": merge, "devices": devices, "bench": benchCmd, "tune": tuneCmd,
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
		var in interrupted
		if errors.As(context.Cause(ctx), &in) {
			fmt.Fprintf(stderr, "xent %s: interrupted\n", args[0])
			return in.code()
		}
		fmt.Fprintf(stderr, "xent %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

// sayDevice returns how a command tells the user which device runs: one
// line on stderr, without a timestamp; nothing with --json unless
// --verbose.
func sayDevice(stderr io.Writer, asJSON, verbose bool) func(string) {
	if asJSON && !verbose {
		return func(string) {}
	}
	return func(s string) { fmt.Fprintf(stderr, "xent: %s\n", s) }
}

// openDevice opens the device spec names and says which (say), with why
// when it is not the one asked for (auto's fallback to the CPU).
func openDevice(spec string, say func(string)) (device.Device, error) {
	d, err := device.Open(spec)
	if err != nil {
		return nil, err
	}
	in := d.Info()
	line := fmt.Sprintf("device %s (%s, %s)", in.Spec, in.Name, in.Kernel)
	if in.Note != "" {
		line += ": " + in.Note
	}
	say(line)
	return d, nil
}
