package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xentlab/xent/bench"
	"github.com/xentlab/xent/device"
	"github.com/xentlab/xent/device/opencl"
)

// tuneCmd times the OpenCL row kernels' parameters on one device and, with
// --write, keeps the best in the user's tuning table.
func tuneCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tune", flag.ContinueOnError)
	spec := fs.String("device", "opencl", "the OpenCL device: opencl (the first GPU or accelerator) or opencl:P:D")
	rows := fs.Int("batch", 1024, "rows of the logit matrices")
	vocabs := fs.String("vocab", "50257,128256", "vocabulary sizes, comma-separated: each candidate is timed at each")
	dtypes := fs.String("dtype", "float32,bfloat16", "the logits' element types, comma-separated (as xent bench)")
	ops := fs.String("ops", "lse,forward,fused", "operations timed: lse, forward, fused")
	repeat := fs.Int("repeat", 5, "timed repeats of each (after one warm-up); the median counts")
	rounds := fs.Int("rounds", 1, "passes over the parameters (coordinate descent)")
	grids := map[string]*string{
		"flight":      fs.String("flight", "0,16,32,64", "MiB of rows in flight to try (0: a work-group a row)"),
		"wg":          fs.String("wg", "64,128,256,512,1024", "work-group sizes to try"),
		"unroll":      fs.String("unroll", "1,2,4", "float4 loads in flight per work-item to try (float32 rows)"),
		"unroll_half": fs.String("unroll-half", "2,4,8", "float4 loads in flight per work-item to try (bfloat16 and float16 rows)"),
		"regs":        fs.String("regs", "0,32,64", "caps on a work-item's registers to try (0: the compiler's choice; NVIDIA only, the same kernels elsewhere)"),
		"rc":          fs.String("rc", "0,8", "float4s of a fused row kept per work-item to try"),
		"rev":         fs.String("rev", "0,1", "the fused gradient pass backwards (1) or forwards (0)"),
		"align":       fs.String("align", "0,1,2,3", "rows in aligned four-element accesses to try: 1 float32, 2 the half types, 3 both, 0 none"),
		"pack":        fs.String("pack", "0", "rows a work-group to try on short rows (those of at most 4·unroll·wg columns: give such a --vocab too), e.g. 0,4,16; 0: one a row"),
	}
	linShape := fs.String("linear", "", "NxVxD: after the row kernels, time the fused linear's forward + backward at this shape for each --lin-tile and keep the fastest; then CLBlast's forward with and without wide tiles (the table's wide)")
	linTiles := fs.String("lin-tile", "0,16,32,64,64/8", "with --linear: the fused linear's tiles to try (0: CLBlast's products; 16, 32, 64: linear.cl's kernels; 64/8: tiles of 64, 8 × 8 entries a work-item)")
	xgemm := fs.String("xgemm", "none", "with --linear: CLBlast's Xgemm parameters to try on its path (lin_tile 0): none (its database's), "+xgemmNames()+" (its entries for those GPUs), or FILE.json (the fastest in a file of CLBlast's tuner, clblast_tuner_xgemm)")
	write := fs.Bool("write", false, "keep the best in the user's tuning table (see --table)")
	table := fs.String("table", "", "the tuning table --write writes (default $XENT_TUNING, else xent/tuning.json in the user's configuration directory)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	arg, ok := strings.CutPrefix(*spec, "opencl")
	arg = strings.TrimPrefix(arg, ":")
	if !ok {
		return fmt.Errorf("--device %q: xent tune tunes an OpenCL device (opencl or opencl:P:D)", *spec)
	}
	types, err := parseTypes(*dtypes)
	if err != nil {
		return err
	}
	vs, err := intList("--vocab", *vocabs, 1)
	if err != nil {
		return err
	}
	if *rows < 1 {
		return fmt.Errorf("--batch %d: want ≥ 1", *rows)
	}
	var lin []int      // N, V, D
	var tiles [][2]int // lin_tile, lin_reg
	if *linShape != "" {
		for _, f := range strings.Split(*linShape, "x") {
			v, err := strconv.Atoi(f)
			if err != nil || v < 1 {
				return fmt.Errorf("--linear %q: want NxVxD, each ≥ 1", *linShape)
			}
			lin = append(lin, v)
		}
		if len(lin) != 3 {
			return fmt.Errorf("--linear %q: want NxVxD, each ≥ 1", *linShape)
		}
		if tiles, err = linTileList(*linTiles); err != nil {
			return err
		}
	}
	sets, err := xgemmList(*xgemm)
	if err != nil {
		return fmt.Errorf("--xgemm: %w", err)
	}
	var params []bench.Param
	for _, name := range []string{"regs", "wg", "unroll", "unroll_half", "flight", "rc", "rev", "align", "pack"} {
		v, err := intList("--"+name, *grids[name], 0)
		if err != nil {
			return err
		}
		params = append(params, bench.Param{Name: name, Values: v})
	}
	start, src, err := opencl.TuningFor(arg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "xent tune: starting from %v (%s)\n", start, src)
	of := func(p map[string]int) opencl.Tuning {
		return opencl.Tuning{WG: p["wg"], Unroll: p["unroll"], UnrollHalf: p["unroll_half"], Regs: p["regs"], RC: p["rc"], Rev: p["rev"], Align: p["align"], Flight: p["flight"], Pack: p["pack"],
			LinTile: start.LinTile, LinReg: start.LinReg, Split: start.Split, Xgemm: start.Xgemm, Pick: start.Pick, Wide: start.Wide, Options: start.Options} // not tuned here: kept
	}
	rep, err := bench.Tune(ctx, bench.TuneConfig{
		Batch: *rows, Vocabs: vs, Types: types, Ops: strings.Split(*ops, ","), Repeat: *repeat, Rounds: *rounds, Params: params,
		Start: map[string]int{"wg": start.WG, "unroll": start.Unroll, "unroll_half": start.UnrollHalf, "regs": start.Regs, "rc": start.RC, "rev": start.Rev, "align": start.Align, "flight": start.Flight, "pack": start.Pack},
		Open:  func(p map[string]int) (device.Device, error) { return opencl.OpenTuned(arg, of(p)) },
		Log:   func(f string, a ...any) { fmt.Fprintf(stderr, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	best := of(rep.Best.Params)
	if lin != nil {
		if best, err = tuneLinear(ctx, arg, best, lin, tiles, sets, *repeat, stderr); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", " ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "best: %v, %.3f× the starting tuning's times (geometric mean of %d)\n", best, rep.Best.Score, len(rep.Best.Seconds))
	}
	if !*write {
		return nil
	}
	path := *table
	if path == "" {
		if path, err = opencl.TablePath(); err != nil {
			return err
		}
	}
	measured := fmt.Sprintf("xent tune %s, batch %d, vocab %s, %s", time.Now().UTC().Format("2006-01-02"), *rows, *vocabs, *dtypes)
	if lin != nil {
		measured += fmt.Sprintf("; lin_tile of %s (xgemm %s) at %s, float32 forward + backward; wide from the forward", *linTiles, *xgemm, *linShape)
	}
	e, err := opencl.EntryFor(arg, best, measured)
	if err != nil {
		return err
	}
	if err := opencl.SaveEntry(path, e); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "xent tune: wrote %s (%s, driver %s)\n", path, e.Device, e.Driver)
	return nil
}

// tuneLinear times the fused linear's forward + backward at lin (N, V, D)
// on the device with tn and each tile and register block (tile 0:
// CLBlast's path, skipped where CLBlast does not load, with each of CLBlast's
// Xgemm parameter sets) and returns tn with the fastest; then, where
// CLBlast's path ran, the forward of its fastest set with and without
// wide tiles (Tuning.Wide), which decides Wide where that path is the
// fastest.
func tuneLinear(ctx context.Context, arg string, tn opencl.Tuning, lin []int, tiles [][2]int, sets []xgemmSet, repeat int, stderr io.Writer) (opencl.Tuning, error) {
	best, bestS := tn, 0.0
	blast, blastS := tn, 0.0 // CLBlast's path's fastest set
	for _, lt := range tiles {
		xs := []xgemmSet{{name: "none"}}
		if lt[0] == 0 {
			xs = sets
		}
		for _, x := range xs {
			tn.LinTile, tn.LinReg, tn.Xgemm = lt[0], lt[1], x.m
			name := fmt.Sprintf("lin_tile=%d lin_reg=%d", lt[0], lt[1])
			if lt[0] == 0 {
				name += " xgemm=" + x.name
			}
			d, err := opencl.OpenTuned(arg, tn)
			if err != nil {
				return tn, fmt.Errorf("%s: %w", name, err)
			}
			if !d.Caps().Linear {
				fmt.Fprintf(stderr, "%s: no fused linear here (CLBlast not loaded)\n", name)
				d.Close()
				break
			}
			s, err := bench.LinearSeconds(ctx, d, lin[0], lin[1], lin[2], repeat, true)
			info := d.Info().BLAS
			d.Close()
			if err != nil {
				return tn, fmt.Errorf("%s: %w", name, err)
			}
			fmt.Fprintf(stderr, "%s: fused linear %dx%dx%d forward + backward %.4f s (%s)\n", name, lin[0], lin[1], lin[2], s, info)
			if bestS == 0 || s < bestS {
				best, bestS = tn, s
			}
			if lt[0] == 0 && (blastS == 0 || s < blastS) {
				blast, blastS = tn, s
			}
		}
	}
	if blastS == 0 {
		return best, nil
	}
	var fwd [2]float64
	for wide := range 2 {
		blast.Wide = wide
		d, err := opencl.OpenTuned(arg, blast)
		if err != nil {
			return best, fmt.Errorf("wide=%d: %w", wide, err)
		}
		fwd[wide], err = bench.LinearSeconds(ctx, d, lin[0], lin[1], lin[2], repeat, false)
		d.Close()
		if err != nil {
			return best, fmt.Errorf("wide=%d: %w", wide, err)
		}
		fmt.Fprintf(stderr, "wide=%d: fused linear %dx%dx%d forward %.4f s (CLBlast, xgemm as the fastest above)\n", wide, lin[0], lin[1], lin[2], fwd[wide])
	}
	if best.LinTile == 0 {
		best.Wide = 0
		if fwd[1] < fwd[0] {
			best.Wide = 1
		}
	}
	return best, nil
}

// xgemmSet is a candidate of --xgemm: its name and CLBlast's Xgemm
// parameters (nil: its database's).
type xgemmSet struct {
	name string
	m    map[string]int
}

// xgemmList parses --xgemm: none, names of opencl.XgemmSets and files of
// CLBlast's tuner (ending .json: opencl.ReadXgemmTuner), comma-separated;
// each set is checked here, before the row kernels' tuning.
func xgemmList(s string) ([]xgemmSet, error) {
	var sets []xgemmSet
	for _, f := range strings.Split(s, ",") {
		m, ok := opencl.XgemmSets[f]
		switch {
		case f == "none" || ok:
		case strings.HasSuffix(f, ".json"):
			var err error
			if m, err = opencl.ReadXgemmTuner(f); err != nil {
				return nil, err
			}
			if err := opencl.CheckXgemm(m); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		default:
			return nil, fmt.Errorf("%q is not none, one of %s, or a file of CLBlast's tuner (.json)", f, xgemmNames())
		}
		sets = append(sets, xgemmSet{f, m})
	}
	return sets, nil
}

// xgemmNames lists opencl.XgemmSets' names.
func xgemmNames() string {
	return strings.Join(slices.Sorted(maps.Keys(opencl.XgemmSets)), ", ")
}

// linTileList parses --lin-tile: a comma-separated list of tiles, each
// optionally /R, R × R entries a work-item, in opencl.CheckLinear's
// ranges; CLBlast's path (0) takes no block.
func linTileList(s string) ([][2]int, error) {
	var out [][2]int
	for _, f := range strings.Split(s, ",") {
		ts, rs, hasR := strings.Cut(strings.TrimSpace(f), "/")
		lt, err := strconv.Atoi(ts)
		lr := 0
		if err == nil && hasR {
			lr, err = strconv.Atoi(rs)
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("--lin-tile: %q is not a tile or tile/block (0, 16, 32, 64, 64/8)", f)
		case lt == 0 && lr != 0:
			return nil, fmt.Errorf("--lin-tile: %q: CLBlast's path (0) takes no block", f)
		}
		if err := opencl.CheckLinear(lt, lr); err != nil {
			return nil, fmt.Errorf("--lin-tile: %q: %w", f, err)
		}
		out = append(out, [2]int{lt, lr})
	}
	return out, nil
}

// intList parses a comma-separated list of integers of at least lo.
func intList(flag, s string, lo int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < lo {
			return nil, fmt.Errorf("%s: %q is not an integer ≥ %d", flag, f, lo)
		}
		out = append(out, v)
	}
	return out, nil
}
