package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/bench"
	"github.com/xentlab/xent/cpu"
)

// benchCmd runs the benchmarks and prints a table, or JSON.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	rows := fs.Int("batch", 1024, "rows of the logit matrix")
	vocab := fs.Int("vocab", 50257, "vocabulary size (columns)")
	ops := fs.String("ops", "lse,forward,fused", "operations: lse, forward, fused; or linear (the fused linear: forward and forward + backward, --hidden)")
	hidden := fs.Int("hidden", 768, "with --ops linear: the hidden size D (H is batch × D, W vocab × D)")
	blasNames := fs.String("blas", "", "with --ops linear: gonum, openblas or both, comma-separated (default: those present)")
	peaked := fs.Float64("peaked", 0, "with --ops linear: rows like a trained model's, the target logit about this far above the rest's spread")
	filter := fs.Float64("filter", 0, "with --ops linear: also time forward + backward with gradient filtering at this threshold (e.g. 0.000244140625 = 2^-12)")
	teacherK := fs.Int("teacher-k", 0, "with --ops linear: also time forward + backward with top-k distillation from a teacher of this many classes a row (linear-fused-distill)")
	budget := fs.Int("budget", 0, "with --ops linear: bytes of logits held at a time (0: the device's default: 16 MiB or 64 rows of the vocabulary, whichever is more; on the CPU with OpenBLAS min(N, 256) rows where that is more, up to 256 MiB)")
	dtypes := fs.String("dtype", "float32", "the logits' element types, comma-separated: float32, bfloat16, float16 (or f32, bf16, f16), or all")
	devs := fs.String("device", "cpu", "devices, comma-separated: all, cpu, cpu:portable, cpu:simd, cpu:avx2, cpu:avx512, cpu:neon, opencl, opencl:P:D")
	repeat := fs.Int("repeat", 7, "timed repeats (after one warm-up); the median is reported")
	mode := fs.String("mode", "", "OpenCL modes, comma-separated: kernel (resident logits, profiled kernel time), end-to-end (host logits, transfers counted); default both")
	sweep := fs.String("sweep", "", "vocabulary sweep, e.g. vocab=8192,32000,50257,128256,256000 (overrides --vocab)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	plotTo := fs.String("plot", "", "write a plot of throughput against vocabulary to `FILE` (.svg, .png, .pdf, .eps, .jpg or .tif)")
	peers := fs.Bool("peers", false, "run PyTorch's F.cross_entropy on the CPU beside us (bench/peers/pytorch_cpu.py)")
	from := fs.String("from", "", "print (and plot) `REPORT.json`, saved from --json, instead of measuring")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	vocabs := []int{*vocab}
	if *sweep != "" {
		list, ok := strings.CutPrefix(*sweep, "vocab=")
		if !ok {
			return fmt.Errorf("--sweep %q: want vocab=N,N,N", *sweep)
		}
		vocabs = nil
		for _, f := range strings.Split(list, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || v < 1 {
				return fmt.Errorf("--sweep: bad vocabulary size %q", f)
			}
			vocabs = append(vocabs, v)
		}
	}
	if *rows < 1 || *vocab < 1 {
		return fmt.Errorf("--batch and --vocab must be ≥ 1")
	}
	plotOut, format, err := planPlot([]named{{"--from", *from}}, "--plot", *plotTo)
	if err != nil {
		return err
	}
	defer plotOut.discard()
	if w := cpu.ExperimentWarning(); w != "" && *from == "" {
		fmt.Fprintf(stderr, "xent bench: warning: %s\n", w)
	}
	if cpu.SIMD() == nil && *from == "" {
		fmt.Fprintf(stderr, "xent bench: the CPU runs the portable kernels: %s\n", cpu.SIMDUnavailable())
	}
	if *ops == "linear" {
		var bl []string
		if *blasNames != "" {
			bl = strings.Split(*blasNames, ",")
		}
		return benchLinear(ctx, bench.LinearConfig{N: *rows, V: *vocab, D: *hidden, Budget: *budget, Devices: strings.Split(*devs, ","),
			BLAS: bl, Repeat: *repeat, Peers: *peers, Peaked: *peaked, Filter: *filter, TeacherK: *teacherK, Log: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }}, *asJSON, stdout)
	}
	var modes []string
	if *mode != "" {
		for _, m := range strings.Split(*mode, ",") {
			if m != "kernel" && m != "end-to-end" {
				return fmt.Errorf("--mode: unknown mode %q (kernel, end-to-end)", m)
			}
			modes = append(modes, m)
		}
	}
	types, err := parseTypes(*dtypes)
	if err != nil {
		fmt.Fprintln(stderr, "xent bench:", err)
		return errUsage
	}
	cfg := bench.Config{Batch: *rows, Vocabs: vocabs, Ops: strings.Split(*ops, ","), Devices: strings.Split(*devs, ","),
		Repeat: *repeat, Peers: *peers, Types: types, Modes: modes,
		Log: func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) }}
	var rep *bench.Report
	if *from != "" {
		rep, err = loadReport(*from)
	} else {
		rep, err = bench.Run(ctx, cfg)
	}
	if err != nil {
		return err
	}
	if err := plotOut.write(func(w io.Writer) error { return plotBench(w, rep, format) }); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", " ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(stdout, "machine: %s, %s threads, %s; %s\n", rep.Machine["cpu"], rep.Machine["gomaxprocs"], rep.Machine["go"], rep.Machine["date"])
	printRoofline(stdout, rep.Roofline)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "device\tkernel\top\ttype\tmode\tbatch×vocab\tmedian s\tmin s\tmax s\tGB/s\troofline\tof\tvs portable\tvs float32\t")
	times := func(v float64) string {
		if v > 0 {
			return fmt.Sprintf("%.2f×", v)
		}
		return "—" // no portable (or float32) run of this op and size
	}
	for _, r := range rep.Results {
		typ := r.Type
		if typ == "" { // a report from before the types
			typ = "float32"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d×%d\t%.4f\t%.4f\t%.4f\t%.2f\t%.0f%%\t%s %.1f GB/s\t%s\t%s\t\n",
			r.Device, r.Kernel, r.Op, typ, r.Mode, r.Batch, r.Vocab, r.SecondsMed, r.SecondsMin, r.SecondsMax, r.GBps,
			100*r.Fraction, r.RooflineFor, r.RooflineGB, times(r.VsPortable), times(r.VsF32))
	}
	return tw.Flush()
}

// parseTypes parses --dtype.
func parseTypes(s string) ([]batch.DType, error) {
	if s == "all" {
		return []batch.DType{batch.F32, batch.BF16, batch.F16}, nil
	}
	var ts []batch.DType
	for _, name := range strings.Split(s, ",") {
		switch strings.TrimSpace(name) {
		case "float32", "f32":
			ts = append(ts, batch.F32)
		case "bfloat16", "bf16":
			ts = append(ts, batch.BF16)
		case "float16", "f16":
			ts = append(ts, batch.F16)
		default:
			return nil, fmt.Errorf("--dtype: unknown element type %q (float32, bfloat16, float16, or all)", name)
		}
	}
	return ts, nil
}

// printRoofline prints the roofline and every probe behind it, peers'
// beside ours.
func printRoofline(w io.Writer, rl bench.Roofline) {
	fmt.Fprintf(w, "roofline (CPU, measured in this run): read %.2f GB/s, copy %.2f GB/s (read+write)", rl.ReadGBps, rl.CopyGBps)
	if rl.FMAGflops > 0 {
		fmt.Fprintf(w, ", FMA %.0f GFLOP/s", rl.FMAGflops)
	}
	fmt.Fprintln(w)
	for _, p := range rl.Probes {
		unit, mark := "GB/s", ""
		if p.Kind == "fma" {
			unit = "GFLOP/s"
		}
		switch {
		case p.Peer:
			mark = "  (peer, not counted)"
		case p.Name == rl.ReadBy || p.Name == rl.CopyBy:
			mark = "  (best)"
		}
		fmt.Fprintf(w, "  %-5s %8.2f %-7s %s%s\n", p.Kind, p.Value, unit, p.Name, mark)
	}
	fmt.Fprintln(w)
}

func loadReport(path string) (*bench.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: not a xent bench report: %w", path, err)
	}
	return &rep, nil
}

// benchLinear runs and prints the fused linear benchmark.
func benchLinear(ctx context.Context, c bench.LinearConfig, asJSON bool, stdout io.Writer) error {
	if c.N < 1 || c.V < 1 || c.D < 1 {
		return fmt.Errorf("--batch, --vocab and --hidden must be ≥ 1")
	}
	rs, peaks, err := bench.Linear(ctx, c)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", " ")
		return enc.Encode(map[string]any{"results": rs, "sgemm_peak_gflops": peaks})
	}
	fmt.Fprintf(stdout, "fused linear cross-entropy, N %d × V %d × D %d (logits would be %.0f MB); %d threads\n", c.N, c.V, c.D, float64(c.N)*float64(c.V)*4/1e6, runtime.GOMAXPROCS(0))
	for _, key := range slices.Sorted(maps.Keys(peaks)) {
		if dev, ok := strings.CutSuffix(key, " fp32 FMA probe"); ok {
			fmt.Fprintf(stdout, "fp32 FMA peak (a probe of ours, measured in this run): %.1f GFLOP/s  %s\n", peaks[key], dev)
		} else {
			fmt.Fprintf(stdout, "sgemm peak (2048³, measured in this run): %.1f GFLOP/s  %s\n", peaks[key], key)
		}
	}
	fmt.Fprintln(stdout)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "device\tkernel\top\tmedian s\tmin s\tmax s\tGFLOP/s\textra MB\tdevice MB\tdW error\t")
	for _, r := range rs {
		e := ""
		if r.Op == "linear-fused-filter" {
			e = fmt.Sprintf("%.2g", r.DWErr)
		}
		dm := ""
		if r.DeviceMB > 0 {
			dm = fmt.Sprintf("%.1f", r.DeviceMB)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%s\t%s\t\n", r.Device, r.Kernel, r.Op, r.SecondsMed, r.SecondsMin, r.SecondsMax, r.GFLOPs, r.ExtraMB, dm, e)
	}
	return tw.Flush()
}
