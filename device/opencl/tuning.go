package opencl

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Tuning is the row kernels' parameters on one device: the build-time
// tunables of xent.cl (WG, UNROLL, RC, REV) and the host's Flight.
type Tuning struct {
	// WG is the work-group size, a power of two (capped at what the
	// device and the compiled kernels allow).
	WG int `json:"wg"`
	// Unroll is the float4 loads in flight per work-item, 1 to 8, for
	// float32 rows; UnrollHalf for bfloat16 and float16 rows (half the
	// bytes a load: more of them keep as many bytes in flight).
	Unroll     int `json:"unroll"`
	UnrollHalf int `json:"unroll_half"`
	// RC is the float4s of a fused row each work-item keeps in registers,
	// 0 to 64: rows of up to 4·RC·WG columns are read once.
	RC int `json:"rc"`
	// Rev is 1 when the fused kernel's second pass walks each work-item's
	// columns backwards (what the first pass read last first), else 0.
	Rev int `json:"rev"`
	// Align says which rows are read and written in aligned four-element
	// accesses (one wide load; up to 3 columns before them one at a time):
	// 1 float32, 2 bfloat16 and float16, 3 both, 0 none (four-element loads
	// from element-aligned addresses).
	Align int `json:"align"`
	// Regs caps the registers of a work-item where the compiler takes a
	// cap (NVIDIA's -cl-nv-maxrregcount; ignored elsewhere), so that more
	// work-groups share a compute unit; 0: the compiler's choice.
	Regs int `json:"regs,omitempty"`
	// Flight is the mebibytes of rows in flight: a launch of n rows of b
	// bytes runs max(compute units, Flight MiB / b) work-groups, at most
	// n, each taking rows that many apart, so that the rows between the
	// fused kernel's two passes may stay in the cache. 0: one work-group
	// a row.
	Flight int `json:"flight_mib"`
	// LinTile, when > 0, runs the fused linear cross-entropy on
	// linear.cl's kernels in tiles of LinTile rows × LinTile classes
	// (16, 32 or 64; work-groups of (LinTile/4)²) instead of CLBlast's
	// products and the row kernels; 0, CLBlast's. Opt-in: no GPU has
	// timed it (bench/gpu/run.sh's linear stage does).
	LinTile int `json:"lin_tile,omitempty"`
	// LinReg is the block of linear.cl's tiles that one work-item
	// computes, LinReg × LinReg entries: 0 or 4, or 8 (with LinTile 64:
	// work-groups of 64, half the local reads an fma of 4's). Opt-in
	// and untimed on a GPU, as LinTile.
	LinReg int `json:"lin_reg,omitempty"`
	// Split, when > 1, lets a call whose rows are fewer than the device's
	// compute units run up to Split work-groups a row, each over a split
	// of its columns (the partials merged on the host, the gradient from
	// them in a second pass), so that few rows do not leave the device
	// idle; 0 or 1: one work-group a row. Opt-in: no GPU has timed it.
	Split int `json:"split,omitempty"`
	// Pack, when > 1, runs calls on short rows, of at most 4·U·WG
	// columns (U the type's unroll: rows that one step of the whole
	// work-group covers), Pack rows a work-group, WG/Pack work-items a
	// row (xent.cl's PACK: a second program, built on first use), so that
	// the work-items of a short row are not mostly idle and a row's
	// reduction takes fewer steps; a power of two, at most WG as built
	// (a larger one is capped). 0 or 1: one row a work-group. Opt-in: no
	// GPU has timed it.
	Pack int `json:"pack,omitempty"`
	// Xgemm, when not empty, are CLBlast's parameters of its Xgemm kernel
	// in float32 (GEMMK, KREG, KWG, KWI, MDIMA, MDIMC, MWG, NDIMB, NDIMC,
	// NWG, SA, SB, STRM, STRN, VWM, VWN in CLBlast 1.5: every one, or
	// CLBlast refuses the set) for the fused linear's products on CLBlast's
	// path, set through CLBlastOverrideParameters where CLBlast's own
	// database has no entry for the device (the H200 takes NVIDIA's
	// default, tiles of 16 × 32). CLBlast's parameters are the OpenCL
	// device's, process-wide: the last Device opened on it decides them
	// for every Device there (a table's entry gives them all the same).
	// CLBlast's own tuner finds them on the device at hand
	// (ReadXgemmTuner). Opt-in: no GPU has timed a set (xent tune
	// --xgemm does).
	Xgemm map[string]int `json:"clblast_xgemm,omitempty"`
	// Pick, when 1, has CLBlast's path of the fused linear pick a
	// distillation's logits at the teacher's classes from its tiles
	// (device.LinearPicker: xent_tile_pick), so that the tail has no error
	// of its own, as the CPU and linear.cl's path do; 0: computed apart, on
	// the host in float64 (W on the host) or W's device (held). Opt-in: no
	// GPU has timed it.
	Pick int `json:"pick,omitempty"`
	// Wide, when 1, has CLBlast's path of the fused linear run a pass
	// without gradients (the forward, partials, picks, ranks) in wide
	// tiles (tiles.WidePlanOf: every row the budget holds × at least 1024
	// classes, as the CPU does with OpenBLAS) instead of chunks of rows ×
	// the whole vocabulary: fewer, squarer products. Opt-in: no GPU has
	// timed it.
	Wide int `json:"wide,omitempty"`
	// Options are OpenCL C build options added to the row kernels'
	// programs (xent.cl's), space-separated, for experiments: those of
	// the specification that keep what the kernels rely on,
	// -cl-denorms-are-zero, -cl-mad-enable and -cl-no-signed-zeros, and
	// -DNAME or -DNAME=VALUE (-Dexp=native_exp, say). Not
	// -cl-finite-math-only or -cl-fast-relaxed-math (the kernels keep
	// infinities: a row's max starts at -FLT_MAX, a -inf logit has its
	// term 0) nor -cl-unsafe-math-optimizations (it may reassociate the
	// compensated sums). The tests check the kernels without them: a
	// result with them is the user's to check. Opt-in: none is timed on a
	// GPU.
	Options string `json:"options,omitempty"`
}

func (t Tuning) String() string {
	s := fmt.Sprintf("wg=%d unroll=%d/%d rc=%d rev=%d align=%d flight=%d", t.WG, t.Unroll, t.UnrollHalf, t.RC, t.Rev, t.Align, t.Flight)
	if t.Regs > 0 {
		s += fmt.Sprintf(" regs=%d", t.Regs)
	}
	if t.LinTile > 0 {
		s += fmt.Sprintf(" lin_tile=%d", t.LinTile)
	}
	if t.LinReg > 0 {
		s += fmt.Sprintf(" lin_reg=%d", t.LinReg)
	}
	if t.Split > 1 {
		s += fmt.Sprintf(" split=%d", t.Split)
	}
	if t.Pack > 1 {
		s += fmt.Sprintf(" pack=%d", t.Pack)
	}
	if t.Pick > 0 {
		s += " pick=1"
	}
	if t.Wide > 0 {
		s += " wide=1"
	}
	if len(t.Xgemm) > 0 {
		s += " xgemm=" + XgemmString(t.Xgemm)
	}
	if t.Options != "" {
		s += fmt.Sprintf(" options=%q", t.Options)
	}
	return s
}

// check reports what is out of range in t.
func (t Tuning) check() error {
	var errs []error
	if t.WG < 1 || t.WG&(t.WG-1) != 0 {
		errs = append(errs, fmt.Errorf("wg %d is not a power of two", t.WG))
	}
	if t.Unroll < 1 || t.Unroll > 8 {
		errs = append(errs, fmt.Errorf("unroll %d is not in [1, 8]", t.Unroll))
	}
	if t.UnrollHalf < 1 || t.UnrollHalf > 16 {
		errs = append(errs, fmt.Errorf("unroll_half %d is not in [1, 16]", t.UnrollHalf))
	}
	if t.Regs != 0 && (t.Regs < 16 || t.Regs > 255) {
		errs = append(errs, fmt.Errorf("regs %d is not 0 or in [16, 255]", t.Regs))
	}
	if t.RC < 0 || t.RC > 64 {
		errs = append(errs, fmt.Errorf("rc %d is not in [0, 64]", t.RC))
	}
	if t.Rev != 0 && t.Rev != 1 {
		errs = append(errs, fmt.Errorf("rev %d is not 0 or 1", t.Rev))
	}
	if t.Align < 0 || t.Align > 3 {
		errs = append(errs, fmt.Errorf("align %d is not in [0, 3]", t.Align))
	}
	if err := CheckLinear(t.LinTile, t.LinReg); err != nil {
		errs = append(errs, err)
	}
	if t.Split < 0 || t.Split > 4096 {
		errs = append(errs, fmt.Errorf("split %d is not in [0, 4096]", t.Split))
	}
	if t.Pick != 0 && t.Pick != 1 {
		errs = append(errs, fmt.Errorf("pick %d is not 0 or 1", t.Pick))
	}
	if t.Wide != 0 && t.Wide != 1 {
		errs = append(errs, fmt.Errorf("wide %d is not 0 or 1", t.Wide))
	}
	if t.Pack < 0 || t.Pack > 1024 || t.Pack&(t.Pack-1) != 0 {
		errs = append(errs, fmt.Errorf("pack %d is not 0 or a power of two up to 1024", t.Pack))
	}
	if len(t.Xgemm) > 0 {
		if err := CheckXgemm(t.Xgemm); err != nil {
			errs = append(errs, fmt.Errorf("clblast_xgemm: %w", err))
		}
	}
	for _, o := range strings.Fields(t.Options) {
		switch {
		case o == "-cl-denorms-are-zero" || o == "-cl-mad-enable" || o == "-cl-no-signed-zeros":
		case strings.HasPrefix(o, "-D") && len(o) > 2 && o[2] != '=':
		default:
			errs = append(errs, fmt.Errorf("option %q is not -cl-denorms-are-zero, -cl-mad-enable, -cl-no-signed-zeros or -DNAME[=VALUE]", o))
		}
	}
	if t.Flight < 0 || t.Flight > 1<<20 {
		errs = append(errs, fmt.Errorf("flight_mib %d is not in [0, 2^20]", t.Flight))
	}
	return errors.Join(errs...)
}

// Entry is one line of a tuning table: the tuning of the devices it
// matches, and where it was measured. An empty Platform (a prefix of the
// platform's name), Device (the device's name) or Driver (its version)
// matches any; the entry naming the most (device 4, driver 2, platform 1)
// wins.
type Entry struct {
	Platform string `json:"platform,omitempty"`
	Device   string `json:"device,omitempty"`
	Driver   string `json:"driver,omitempty"`
	Tuning
	Measured string `json:"measured"`
}

// score is how much of h e names, or -1 when e does not match h.
func (e Entry) score(h handle) int {
	if (e.Platform != "" && !strings.HasPrefix(h.platName, e.Platform)) ||
		(e.Device != "" && e.Device != h.name) || (e.Driver != "" && e.Driver != h.driver) {
		return -1
	}
	n := 0
	for i, s := range []string{e.Platform, e.Driver, e.Device} {
		if s != "" {
			n += 1 << i
		}
	}
	return n
}

// The tuning table in the tree: measured entries only (bench/RESULTS.md
// says where each comes from).
//
//go:embed tuning.json
var shipped []byte

// TablePath is the user's tuning table, which xent tune writes and which
// is consulted before the one in the tree: $XENT_TUNING, else
// tuning.json in xent's directory of os.UserConfigDir.
func TablePath() (string, error) {
	if p := os.Getenv("XENT_TUNING"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "xent", "tuning.json"), nil
}

// parseTable reads a table (a JSON array of entries), checking every
// entry; name names it in errors.
func parseTable(name string, b []byte) ([]Entry, error) {
	var es []Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&es); err != nil {
		return nil, fmt.Errorf("tuning table %s: %w", name, err)
	}
	for i, e := range es {
		if err := e.check(); err != nil {
			return nil, fmt.Errorf("tuning table %s: entry %d (%q %q %q): %w", name, i, e.Platform, e.Device, e.Driver, err)
		}
	}
	return es, nil
}

// ReadTable reads the table at path; a missing file is an empty table.
func ReadTable(path string) ([]Entry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return parseTable(path, b)
}

// SaveEntry writes e into the table at path, in place of the entry naming
// the same platform, device and driver: the new table is written beside
// it and renamed over it, so that a failure leaves the old one whole.
func SaveEntry(path string, e Entry) error {
	if err := e.check(); err != nil {
		return err
	}
	es, err := ReadTable(path)
	if err != nil {
		return err
	}
	out := []Entry{e}
	for _, o := range es {
		if o.Platform != e.Platform || o.Device != e.Device || o.Driver != e.Driver {
			out = append(out, o)
		}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tuning-*.json")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(b, '\n'))
	if err := errors.Join(werr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// kindDefault is the tuning of a device no table names: on CPUs (PoCL)
// rows kept in registers (RC 8) at a work-group of 64; elsewhere WG 256,
// unroll 2, RC 0 (the registers RC 16 reserves cost an NVIDIA H200's fused
// kernel a third of its speed, bench/gpu/results-2026-12-04/tune.txt).
func kindDefault(kind string) Tuning {
	if kind == "cpu" {
		return Tuning{WG: 64, Unroll: 1, UnrollHalf: 1, RC: 8, Rev: 1}
	}
	return Tuning{WG: 256, Unroll: 2, UnrollHalf: 2, RC: 0, Rev: 1}
}

// tuningOf returns the tuning for h and where it comes from: the user's
// table (TablePath), else the one in the tree, else the kind's default;
// then XENT_OPENCL_WG (a power of two), XENT_OPENCL_UNROLL (1 to 8),
// XENT_OPENCL_UNROLL_HALF (1 to 16), XENT_OPENCL_REGS (0, 16 to 255),
// XENT_OPENCL_RC (0 to 64), XENT_OPENCL_REV (0 or 1), XENT_OPENCL_ALIGN
// (0 to 3) and
// XENT_OPENCL_FLIGHT (MiB), XENT_OPENCL_LIN_TILE (0, 16, 32, 64),
// XENT_OPENCL_LIN_REG (0, 4, 8; XENT_OPENCL_LIN_TILE alone sets it to 0) and
// XENT_OPENCL_SPLIT (0 to 4096), XENT_OPENCL_PACK (0 or a power of two
// up to 1024), XENT_OPENCL_PICK (0 or 1) and XENT_OPENCL_XGEMM (CLBlast's Xgemm parameters,
// NAME=VALUE,...; "none" for CLBlast's own; a file of CLBlast's tuner,
// FILE.json) and XENT_OPENCL_OPTIONS (build options) override its
// fields, for
// tuning runs. A user
// table that cannot be read is an error.
func tuningOf(h handle) (Tuning, string, error) {
	tn, src := kindDefault(h.kind), "default for "+h.kind
	var user []Entry
	path, err := TablePath()
	if err == nil { // no user directory: no user table
		if user, err = ReadTable(path); err != nil {
			return tn, src, err
		}
	}
	tree, err := parseTable("device/opencl/tuning.json", shipped)
	if err != nil {
		return tn, src, err
	}
	for _, t := range []struct {
		name string
		es   []Entry
	}{{path, user}, {"device/opencl/tuning.json", tree}} {
		best, bs := Entry{}, -1
		for _, e := range t.es {
			if s := e.score(h); s > bs {
				best, bs = e, s
			}
		}
		if bs >= 0 {
			tn, src = best.Tuning, fmt.Sprintf("table %s: %s", t.name, best.Measured)
			break
		}
	}
	for _, v := range []struct {
		env string
		dst *int
	}{
		{"XENT_OPENCL_WG", &tn.WG},
		{"XENT_OPENCL_UNROLL", &tn.Unroll},
		{"XENT_OPENCL_UNROLL_HALF", &tn.UnrollHalf},
		{"XENT_OPENCL_REGS", &tn.Regs},
		{"XENT_OPENCL_RC", &tn.RC},
		{"XENT_OPENCL_REV", &tn.Rev},
		{"XENT_OPENCL_ALIGN", &tn.Align},
		{"XENT_OPENCL_FLIGHT", &tn.Flight},
		{"XENT_OPENCL_LIN_TILE", &tn.LinTile},
		{"XENT_OPENCL_LIN_REG", &tn.LinReg},
		{"XENT_OPENCL_SPLIT", &tn.Split},
		{"XENT_OPENCL_PACK", &tn.Pack},
		{"XENT_OPENCL_PICK", &tn.Pick},
		{"XENT_OPENCL_WIDE", &tn.Wide},
	} {
		s := os.Getenv(v.env)
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return tn, src, fmt.Errorf("%s=%q: not an integer", v.env, s)
		}
		*v.dst = n
		if v.dst == &tn.LinTile {
			tn.LinReg = 0 // a table's block goes with its tile: 4 × 4 unless XENT_OPENCL_LIN_REG says
		}
		if err := tn.check(); err != nil { // the ranges are check's: the rest of tn was in range
			return tn, src, fmt.Errorf("%s=%q: %w", v.env, s, err)
		}
		src += ", " + v.env + "=" + s
	}
	if s := os.Getenv("XENT_OPENCL_OPTIONS"); s != "" {
		tn.Options = s
		if err := tn.check(); err != nil {
			return tn, src, fmt.Errorf("XENT_OPENCL_OPTIONS=%q: %w", s, err)
		}
		src += fmt.Sprintf(", XENT_OPENCL_OPTIONS=%q", s)
	}
	if s := os.Getenv("XENT_OPENCL_XGEMM"); s != "" {
		x, err := ParseXgemm(s)
		if err == nil {
			tn.Xgemm = x
			err = tn.check()
		}
		if err != nil {
			return tn, src, fmt.Errorf("XENT_OPENCL_XGEMM=%q: %w", s, err)
		}
		src += ", XENT_OPENCL_XGEMM=" + s
	}
	return tn, src, nil
}

// xgemmNames are the parameters of CLBlast's Xgemm kernel (its database's
// for CLBlast 1.5 and 1.6), every one of which an override gives.
var xgemmNames = []string{"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"}

// CheckXgemm reports what is wrong in a set of CLBlast Xgemm parameters:
// a name missing or unknown, a flag (GEMMK, SA, SB, STRM, STRN) not 0 or
// 1, a vector width (VWM, VWN) not 1, 2, 4, 8 or 16, another value not in
// [1, 1024], or a tile that CLBlast's kernel cannot cut as asked (its
// tuner's constraints: KWG a multiple of KWI; MWG of MDIMC·VWM and of
// MDIMA·VWM; NWG of NDIMC·VWN and of NDIMB·VWN; with GEMMK 0, KWG of
// MDIMC·NDIMC/MDIMA and of MDIMC·NDIMC/NDIMB; with GEMMK 1, KREG of
// VWN). CLBlast itself checks only that every name is there: a set
// outside these computes wrong products without an error.
func CheckXgemm(m map[string]int) error {
	var errs []error
	for _, k := range xgemmNames {
		if _, ok := m[k]; !ok {
			errs = append(errs, fmt.Errorf("%s missing (CLBlast takes all of %s)", k, strings.Join(xgemmNames, ", ")))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		switch k {
		case "GEMMK", "SA", "SB", "STRM", "STRN":
			if v != 0 && v != 1 {
				errs = append(errs, fmt.Errorf("%s %d is not 0 or 1", k, v))
			}
		case "VWM", "VWN":
			if v != 1 && v != 2 && v != 4 && v != 8 && v != 16 {
				errs = append(errs, fmt.Errorf("%s %d is not 1, 2, 4, 8 or 16", k, v))
			}
		case "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG":
			if v < 1 || v > 1024 {
				errs = append(errs, fmt.Errorf("%s %d is not in [1, 1024]", k, v))
			}
		default:
			errs = append(errs, fmt.Errorf("%s is not a parameter of CLBlast's Xgemm", k))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	multiple := func(a string, b int, of string) {
		if m[a]%b != 0 {
			errs = append(errs, fmt.Errorf("%s %d is not a multiple of %s = %d", a, m[a], of, b))
		}
	}
	multiple("KWG", m["KWI"], "KWI")
	multiple("MWG", m["MDIMC"]*m["VWM"], "MDIMC·VWM")
	multiple("MWG", m["MDIMA"]*m["VWM"], "MDIMA·VWM")
	multiple("NWG", m["NDIMC"]*m["VWN"], "NDIMC·VWN")
	multiple("NWG", m["NDIMB"]*m["VWN"], "NDIMB·VWN")
	if m["GEMMK"] == 0 {
		multiple("KWG", max(1, m["MDIMC"]*m["NDIMC"]/m["MDIMA"]), "MDIMC·NDIMC/MDIMA")
		multiple("KWG", max(1, m["MDIMC"]*m["NDIMC"]/m["NDIMB"]), "MDIMC·NDIMC/NDIMB")
	} else {
		multiple("KREG", m["VWN"], "VWN")
	}
	return errors.Join(errs...)
}

// XgemmSets are candidates for Tuning.Xgemm, by name: CLBlast 1.6's
// database entries for float32 Xgemm on the NVIDIA GPUs named (its
// database has none for the H100 or the H200, which take NVIDIA's
// default, tiles of 16 × 32). xent tune --xgemm times them on the device
// at hand; none is applied unmeasured.
var XgemmSets = map[string]map[string]int{
	"a100":      xgemmOf(0, 1, 32, 2, 8, 8, 32, 16, 16, 64, 1, 1, 0, 0, 4, 4),
	"rtx4090":   xgemmOf(0, 1, 32, 2, 32, 32, 128, 8, 8, 64, 0, 1, 1, 1, 4, 4),
	"rtx2080ti": xgemmOf(0, 1, 32, 2, 8, 32, 128, 16, 8, 128, 1, 1, 1, 1, 2, 2),
}

// xgemmOf is a set of Xgemm parameters given in xgemmNames' order (its
// database's).
func xgemmOf(v ...int) map[string]int {
	m := map[string]int{}
	for i, k := range xgemmNames {
		m[k] = v[i]
	}
	return m
}

// xgemmLocal is the local memory in bytes of CLBlast's float32 Xgemm
// kernel with m (its tiles of A and B where SA and SB cache them), and its
// work-group size.
func xgemmLocal(m map[string]int) (bytes, wg int) {
	return 4 * (m["SA"]*m["KWG"]*m["MWG"] + m["SB"]*m["KWG"]*m["NWG"]), m["MDIMC"] * m["NDIMC"]
}

// ParseXgemm parses CLBlast Xgemm parameters written NAME=VALUE,...
// (XgemmString's form); "none" is an empty set (CLBlast's own); a path
// ending in .json is a file of CLBlast's tuner (ReadXgemmTuner).
func ParseXgemm(s string) (map[string]int, error) {
	if s == "none" {
		return nil, nil
	}
	if strings.HasSuffix(s, ".json") {
		return ReadXgemmTuner(s)
	}
	m := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("%q is not NAME=VALUE", f)
		}
		if _, dup := m[k]; dup {
			return nil, fmt.Errorf("%s given twice", k)
		}
		m[k] = n
	}
	return m, nil
}

// XgemmString writes CLBlast Xgemm parameters as ParseXgemm reads them,
// by name; "none" for none.
func XgemmString(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	return b.String()
}

// OpenTuned opens the device that arg names (as Open) with the kernels
// built with tn, whatever the tables and XENT_OPENCL_* say: xent tune's
// candidates (the work-group size capped as the device allows).
func OpenTuned(arg string, tn Tuning) (*Device, error) {
	h, err := find(arg)
	if err != nil {
		return nil, err
	}
	return newDevice(h, tn, "given")
}

// TuningFor returns the tuning Open would give the device that arg names,
// before the work-group size is capped, and where it comes from.
func TuningFor(arg string) (Tuning, string, error) {
	h, err := find(arg)
	if err != nil {
		return Tuning{}, "", err
	}
	return tuningOf(h)
}

// EntryFor returns the table entry of tn for the device that arg names:
// its name and driver.
func EntryFor(arg string, tn Tuning, measured string) (Entry, error) {
	h, err := find(arg)
	if err != nil {
		return Entry{}, err
	}
	return Entry{Device: h.name, Driver: h.driver, Tuning: tn, Measured: measured}, nil
}

// CheckLinear reports what is out of range in a fused linear's tile and
// register block (Tuning.LinTile, Tuning.LinReg): a tile of 0, 16, 32 or
// 64, a block of 0, 4, or 8 with a tile of 64.
func CheckLinear(tile, reg int) error {
	var errs []error
	if tile != 0 && tile != 16 && tile != 32 && tile != 64 {
		errs = append(errs, fmt.Errorf("lin_tile %d is not 0, 16, 32 or 64", tile))
	}
	switch {
	case reg != 0 && reg != 4 && reg != 8:
		errs = append(errs, fmt.Errorf("lin_reg %d is not 0, 4 or 8", reg))
	case reg == 8 && tile != 64:
		errs = append(errs, fmt.Errorf("lin_reg 8 takes lin_tile 64, not %d", tile))
	}
	return errors.Join(errs...)
}

// linReg is linear.cl's LR: LinReg, 4 when 0.
func (t Tuning) linReg() int {
	if t.LinReg == 0 {
		return 4
	}
	return t.LinReg
}

// ReadXgemmTuner returns the fastest set of CLBlast Xgemm parameters in
// path, a file of CLBlast's own tuner: clblast_tuner_xgemm (Debian's
// clblast-utils) writes clblast_xgemm_V_32.json after each of its
// searches V (1 and 2 with GEMMK 0, 11 and 12 with GEMMK 1). The set is
// the parameters of the result of least time, its PRECISION dropped; the
// file must be float32's (precision 32: the products are float32) and
// Xgemm's (kernel_family xgemm_V; xgemm_direct_V is another kernel's).
// The set itself is checked where it is used (CheckXgemm).
func ReadXgemmTuner(path string) (map[string]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f struct {
		Family    string `json:"kernel_family"`
		Precision string `json:"precision"`
		Results   []struct {
			Time       float64        `json:"time"`
			Parameters map[string]int `json:"parameters"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s:%d: %w", path, 1+bytes.Count(b[:se.Offset], []byte("\n")), err)
		}
		return nil, fmt.Errorf("%s: not a file of CLBlast's tuner: %w", path, err)
	}
	v, ok := strings.CutPrefix(f.Family, "xgemm_")
	if _, err := strconv.Atoi(v); !ok || err != nil {
		return nil, fmt.Errorf("%s: kernel_family %q: not a search of clblast_tuner_xgemm (xgemm_1, xgemm_2, xgemm_11 or xgemm_12)", path, f.Family)
	}
	if f.Precision != "32" {
		return nil, fmt.Errorf("%s: precision %q: the fused linear's products are float32 (32)", path, f.Precision)
	}
	best := -1
	for i, r := range f.Results {
		if r.Time > 0 && (best < 0 || r.Time < f.Results[best].Time) {
			best = i
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("%s: no result with a time", path)
	}
	m := maps.Clone(f.Results[best].Parameters)
	delete(m, "PRECISION")
	return m, nil
}
