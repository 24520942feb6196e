package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"

	"codeberg.org/sbinet/npyio"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/internal/npyfile"
	"github.com/xentlab/xent/internal/tensorfile"
)

// chunkBytes is the size of the logit chunk eval holds in memory (a
// variable for tests).
var chunkBytes = 64 << 20

type evalOut struct {
	Loss       *float64 `json:"loss"`
	Sum        *float64 `json:"sum"`
	Tokens     int64    `json:"tokens"`
	Ignored    int64    `json:"ignored"`
	Perplexity *float64 `json:"perplexity"`
	Accuracy   *float64 `json:"accuracy"`
	ZLoss      *float64 `json:"z_loss"`
	Device     string   `json:"device"`
}

// num is v, or nil (JSON null) when v is NaN or infinite.
func num(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// eval streams a logit dump in row chunks and prints its loss.
func eval(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eval", flag.ContinueOnError)
	logits := fs.String("logits", "", "logits `L`: a .npy, 2-D [rows × vocab] float32, float16 or float64 (narrowed to float32); or file.safetensors[:name], F32, BF16 or F16 (default: the only tensor, or \"logits\")")
	targets := fs.String("targets", "", "targets `T.npy`: 1-D int32 or int64, one per row")
	weights := fs.String("weights", "", "class weights `W.npy`: 1-D float32 or float64, one per class (optional)")
	tokenWeights := fs.String("token-weights", "", "token weights `TW.npy`: 1-D float32 or float64, one per row, finite and ≥ 0: the mean is Σ w_i·loss_i / Σ w_i (optional)")
	dev := fs.String("device", "auto", "device: auto, cpu, cpu:portable, cpu:avx2, cpu:avx512, cpu:neon, opencl, opencl:P:D, all")
	ignore := fs.Int("ignore-index", batch.DefaultIgnoreIndex, "target value (an integer) of rows not counted")
	smoothing := fs.Float64("label-smoothing", 0, "label smoothing ε, a number in [0, 1]")
	zloss := fs.Float64("z-loss", 0, "z-loss λ ≥ 0 (adds λ·lse² per counted row)")
	softcap := fs.Float64("softcap", 0, "logit soft cap c > 0 (z ← c·tanh(z/c)); 0: none")
	rowsOut := fs.String("rows-out", "", "write the per-row losses to `R.npy` (1-D float32; written whole when the run succeeds, never over an input)")
	asJSON := fs.Bool("json", false, "print one JSON object (and nothing on stderr unless --verbose)")
	verbose := fs.Bool("verbose", false, "say on stderr which device runs, also with --json")
	hidden := fs.String("hidden", "", "hidden states `H` [tokens × features]: a .npy (float32, float16, float64) or file.safetensors[:name] (F32, BF16, F16): the fused linear, with --weight, instead of --logits")
	weight := fs.String("weight", "", "classifier `W` [classes × features]: a .npy (float32, float16, float64), file.safetensors[:name] (F32, BF16, F16; lm_head.weight by default), or a Hugging Face checkpoint, its directory or model.safetensors.index.json [:name] (lm_head.weight, else the tied embed_tokens.weight / wte.weight, said on stderr)")
	bias := fs.String("bias", "", "classifier bias `B.npy`: 1-D float32 or float64, one per class (optional)")
	gradHidden := fs.String("grad-hidden", "", "write dL/dH of the mean loss to `dH.npy` (float32 [tokens × features])")
	gradWeight := fs.String("grad-weight", "", "write dL/dW of the mean loss to `dW.npy` (float32 [classes × features])")
	budget := fs.Int("budget", 0, "bytes (an integer ≥ 0) of logits the fused linear holds at a time (0: ce.DefaultBudget: 16 MiB, or 64 rows of the vocabulary when more)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	// Every input, for the outputs to be checked against before any work.
	inputs := []named{{"--logits", tensorfile.FilePath(*logits)}, {"--targets", *targets}, {"--weights", *weights}, {"--token-weights", *tokenWeights},
		{"--hidden", tensorfile.FilePath(*hidden)}, {"--bias", *bias}}
	for _, f := range tensorfile.Files(*weight) { // a checkpoint's index and shard too
		inputs = append(inputs, named{"--weight", f})
	}
	if *hidden != "" || *weight != "" {
		if *logits != "" || *hidden == "" || *weight == "" || *targets == "" {
			fmt.Fprintln(stderr, "xent eval: the fused linear takes --hidden, --weight and --targets, without --logits")
			fs.Usage()
			return errUsage
		}
		outs, err := plan(inputs, named{"--rows-out", *rowsOut}, named{"--grad-hidden", *gradHidden}, named{"--grad-weight", *gradWeight})
		if err != nil {
			return err
		}
		defer discardAll(outs)
		return evalLinear(ctx, linearArgs{hidden: *hidden, weight: *weight, bias: *bias, targets: *targets, weights: *weights, tokenWeights: *tokenWeights,
			rowsOut: outs[0], gradHidden: outs[1], gradWeight: outs[2], dev: *dev, ignore: *ignore, budget: *budget,
			smoothing: *smoothing, zloss: *zloss, softcap: *softcap, say: sayDevice(stderr, *asJSON, *verbose), asJSON: *asJSON}, stdout, stderr)
	}
	if *gradHidden != "" || *gradWeight != "" || *bias != "" {
		fmt.Fprintln(stderr, "xent eval: --bias, --grad-hidden and --grad-weight go with --hidden and --weight")
		return errUsage
	}
	if *logits == "" || *targets == "" {
		fmt.Fprintln(stderr, "xent eval: --logits and --targets are required")
		fs.Usage()
		return errUsage
	}
	outs, err := plan(inputs, named{"--rows-out", *rowsOut})
	if err != nil {
		return err
	}
	defer discardAll(outs)

	// whole is the matrix in memory or mapped, in its file's element type,
	// when it is not streamed.
	var (
		lf         *npyfile.File
		whole      batch.Matrix
		rows, cols int
	)
	if tensorfile.IsSafetensors(*logits) {
		// .safetensors (F32, BF16, F16): the tensor named, else the only
		// one, else "logits"; computed in its own type.
		t, done, err := tensorfile.MapSafetensors(*logits, "logits") // read-only: the forward pass only reads
		if err != nil {
			return err
		}
		defer done()
		rows, cols = t.Rows, t.Cols
		whole = batch.NewMatrix(t.F32, rows, cols)
		if t.Half != nil {
			whole = batch.NewHalfMatrix(t.Half, halfType(t.BF16), rows, cols)
		}
	} else {
		if lf, err = npyfile.Open(*logits); err != nil {
			return err
		}
		defer lf.Close()
		if rows, cols, err = lf.Matrix(); err != nil {
			return err
		}
	}
	tg, err := npyfile.Read(*targets, (*npyfile.File).Targets)
	if err != nil {
		return err
	}
	if len(tg) != rows {
		return fmt.Errorf("%s: expected %d targets to match the %d rows of %s, got %d", *targets, rows, rows, *logits, len(tg))
	}
	// Checked here as well as in batch so that the row named is the file's,
	// not the chunk's, and nothing is computed before a bad target is seen.
	for i, t := range tg {
		if int(t) != *ignore && (t < 0 || int(t) >= cols) {
			return fmt.Errorf("%s: target %d out of bounds [0, %d) at row %d (ignore index %d)", *targets, t, cols, i, *ignore)
		}
	}
	opts := []batch.Option{batch.IgnoreIndex(*ignore), batch.LabelSmoothing(*smoothing), batch.ZLoss(*zloss), batch.Softcap(*softcap)}
	if *weights != "" {
		w, err := npyfile.Read(*weights, (*npyfile.File).Vector)
		if err != nil {
			return err
		}
		if len(w) != cols {
			return fmt.Errorf("%s: expected %d class weights to match the %d columns of %s, got %d", *weights, cols, cols, *logits, len(w))
		}
		opts = append(opts, batch.Weights(w))
	}
	if *rowsOut != "" {
		opts = append(opts, batch.KeepRows())
	}
	tw, err := readTokenWeights(*tokenWeights, rows, *logits)
	if err != nil {
		return err
	}

	d, err := openDevice(*dev, sayDevice(stderr, *asJSON, *verbose))
	if err != nil {
		return err
	}
	defer d.Close()
	ce, err := batch.New(d, opts...)
	if err != nil {
		return err
	}

	var st batch.Stats
	var perRow []float32
	if *rowsOut != "" {
		perRow = make([]float32, 0, rows)
	}
	step := max(1, chunkBytes/4/max(cols, 1))
	bar := newProgress(stderr, int64(rows))
	// compute adds rows [lo, hi) of x (its rows) to the stats.
	compute := func(x batch.Matrix, lo, hi int) error {
		ce := ce
		if tw != nil { // the chunk's rows' weights
			var err error
			if ce, err = batch.New(d, append(opts, batch.TokenWeights(tw[lo:hi]))...); err != nil {
				return err
			}
		}
		r, err := ce.Forward(ctx, x, tg[lo:hi])
		if err != nil {
			return err
		}
		st.Merge(r.Stats)
		perRow = append(perRow, r.Losses...)
		bar.add(int64(hi - lo))
		return nil
	}
	finish := func() error {
		bar.finish()
		if err := writeNpy(outs[0], perRow); err != nil {
			return err
		}
		return report(stdout, d, st, *ignore, *asJSON)
	}
	// Native float32 and float16 are computed where they lie, mapped:
	// nothing is read into a buffer or copied.
	if lf != nil {
		if data, unmap, err := lf.Map(); err == nil {
			defer unmap()
			whole = batch.NewMatrix(data, rows, cols)
		} else if bits, unmap, err := lf.MapF16(); err == nil {
			defer unmap()
			whole = batch.NewHalfMatrix(bits, batch.F16, rows, cols)
		}
	}
	if whole.Rows > 0 {
		for lo := 0; lo < rows; lo += step {
			hi := min(rows, lo+step)
			if err := compute(whole.RowRange(lo, hi), lo, hi); err != nil {
				return err
			}
		}
		return finish()
	}
	if lf == nil { // an empty .safetensors tensor
		return finish()
	}
	// The next chunk is read while this one is computed: two buffers, the
	// reader one chunk ahead.
	type chunk struct {
		buf    []float32
		lo, hi int
		err    error
	}
	free := make(chan []float32, 2)
	for range 2 {
		free <- make([]float32, min(step, rows)*cols)
	}
	full := make(chan chunk, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(full)
		for lo := 0; lo < rows; lo += step {
			var buf []float32
			select {
			case buf = <-free:
			case <-done:
				return
			}
			hi := min(rows, lo+step)
			err := lf.Rows(buf, lo, hi)
			select {
			case full <- chunk{buf, lo, hi, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range full {
		if c.err != nil {
			return c.err
		}
		if err := compute(batch.NewMatrix(c.buf[:(c.hi-c.lo)*cols], c.hi-c.lo, cols), c.lo, c.hi); err != nil {
			return err
		}
		free <- c.buf
	}
	return finish()
}

// halfType returns the batch type of a half-precision tensor.
func halfType(bf16 bool) batch.DType {
	if bf16 {
		return batch.BF16
	}
	return batch.F16
}

// report prints the stats of an evaluation on d.
func report(stdout io.Writer, d device.Device, st batch.Stats, ignore int, asJSON bool) error {
	info := d.Info()
	devName := fmt.Sprintf("%s (%s, %s)", info.Spec, info.Name, info.Kernel)
	if asJSON {
		out := evalOut{Loss: num(st.Mean()), Sum: num(st.Sum), Tokens: st.Counted, Ignored: st.Ignored(),
			Perplexity: num(st.Perplexity()), Accuracy: num(st.Accuracy()), ZLoss: num(st.ZLoss), Device: devName}
		enc := json.NewEncoder(stdout)
		return enc.Encode(out)
	}
	fmt.Fprintf(stdout, "loss        %.6f nats (mean over %d tokens)\n", st.Mean(), st.Counted)
	fmt.Fprintf(stdout, "perplexity  %.4f\n", st.Perplexity())
	fmt.Fprintf(stdout, "accuracy    %.4f (top-1)\n", st.Accuracy())
	fmt.Fprintf(stdout, "tokens      %d counted, %d ignored (ignore index %d)\n", st.Counted, st.Ignored(), ignore)
	fmt.Fprintf(stdout, "sum         %.6f\n", st.Sum)
	fmt.Fprintf(stdout, "z-loss      %.6f\n", st.ZLoss)
	fmt.Fprintf(stdout, "device      %s\n", devName)
	return nil
}

// writeNpy writes v as a .npy file to o (nothing when o is nil: not
// asked for).
func writeNpy(o *output, v any) error {
	return o.write(func(w io.Writer) error { return npyio.Write(w, v) })
}

// readTokenWeights reads --token-weights (none: nil), one per row of the
// rows of src, each finite and ≥ 0.
func readTokenWeights(path string, rows int, src string) ([]float32, error) {
	if path == "" {
		return nil, nil
	}
	w, err := npyfile.Read(path, (*npyfile.File).Vector)
	if err != nil {
		return nil, err
	}
	if len(w) != rows {
		return nil, fmt.Errorf("%s: expected %d token weights to match the %d rows of %s, got %d", path, rows, rows, src, len(w))
	}
	for i, v := range w {
		if !(v >= 0) || math.IsInf(float64(v), 1) {
			return nil, fmt.Errorf("%s: token weight %g at row %d must be finite and ≥ 0", path, v, i)
		}
	}
	return w, nil
}
