package opencl

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestTuningTable: the table in the tree parses and every entry is in
// range; a user's table wins over it; the entry naming the most of a
// device wins; XENT_OPENCL_* override a field and a bad value is an error
// naming it; a bad table names its file and entry.
func TestTuningTable(t *testing.T) {
	tree, err := parseTable("tuning.json", shipped)
	require.NoError(t, err)
	for _, e := range tree {
		require.NotEmpty(t, e.Measured, "an entry in the tree says where it was measured")
		require.NotEmpty(t, e.Device+e.Platform, "an entry in the tree names what it tunes")
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "tuning.json")
	t.Setenv("XENT_TUNING", path)
	for _, v := range []string{"WG", "UNROLL", "UNROLL_HALF", "REGS", "RC", "REV", "ALIGN", "FLIGHT", "LIN_TILE", "LIN_REG", "SPLIT", "PACK", "PICK", "OPTIONS", "XGEMM"} { // every override tuningOf reads: the run's own (CI sets OPTIONS) are not the test's
		t.Setenv("XENT_OPENCL_"+v, "")
	}
	h := handle{kind: "gpu", name: "Card X", driver: "1.2", platName: "Vendor OpenCL"}
	tn, src, err := tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, kindDefault("gpu"), tn)
	require.Equal(t, "default for gpu", src)

	plat := Entry{Platform: "Vendor", Tuning: Tuning{WG: 64, Unroll: 1, UnrollHalf: 1, Rev: 1}, Measured: "platform"}
	exact := Entry{Device: "Card X", Driver: "1.2", Tuning: Tuning{WG: 128, Unroll: 2, UnrollHalf: 4, Rev: 0, Flight: 8}, Measured: "exact"}
	other := Entry{Device: "Card Y", Tuning: Tuning{WG: 32, Unroll: 1, UnrollHalf: 1}, Measured: "other"}
	for _, e := range []Entry{plat, exact, other} {
		require.NoError(t, SaveEntry(path, e))
	}
	es, err := ReadTable(path)
	require.NoError(t, err)
	require.Len(t, es, 3)
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, exact.Tuning, tn, "the entry naming device and driver wins")
	require.Contains(t, src, "exact")

	h.driver = "1.3" // another driver: the platform's entry
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, plat.Tuning, tn)

	exact.Driver, exact.Tuning.WG = "1.3", 512 // replaced, not added
	require.NoError(t, SaveEntry(path, exact))
	exact.Driver = "1.2"
	require.NoError(t, SaveEntry(path, exact))
	es, err = ReadTable(path)
	require.NoError(t, err)
	require.Len(t, es, 4)
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 512, tn.WG)

	t.Setenv("XENT_OPENCL_WG", "32")
	t.Setenv("XENT_OPENCL_FLIGHT", "0")
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 32, tn.WG)
	require.Equal(t, 0, tn.Flight)
	require.Contains(t, src, "XENT_OPENCL_WG=32")
	// refuses sets env to each of bad in turn: tuningOf fails, naming env
	// and want(bad); then env is unset.
	refuses := func(env string, bad []string, want func(string) string) {
		t.Helper()
		for _, b := range bad {
			t.Setenv(env, b)
			_, _, err := tuningOf(h)
			require.ErrorContains(t, err, env+"=")
			require.ErrorContains(t, err, want(b))
		}
		t.Setenv(env, "")
	}
	refuses("XENT_OPENCL_WG", []string{"48", "0", "x"}, func(b string) string { return "XENT_OPENCL_WG=\"" + b + "\"" })
	t.Setenv("XENT_OPENCL_LIN_TILE", "32")
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 32, tn.LinTile, "the fused linear's own kernels, opt-in")
	require.Contains(t, src, "XENT_OPENCL_LIN_TILE=32")
	t.Setenv("XENT_OPENCL_LIN_TILE", "48")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "lin_tile 48 is not 0, 16, 32 or 64")
	t.Setenv("XENT_OPENCL_LIN_TILE", "64")
	t.Setenv("XENT_OPENCL_LIN_REG", "8")
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, 8, tn.LinReg, "8 × 8 entries a work-item, opt-in")
	require.Contains(t, tn.String(), "lin_tile=64 lin_reg=8")
	t.Setenv("XENT_OPENCL_LIN_TILE", "32")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "lin_reg 8 takes lin_tile 64, not 32")
	require.NoError(t, SaveEntry(path, Entry{Device: h.name, Driver: h.driver, Tuning: Tuning{WG: 64, Unroll: 1, UnrollHalf: 1, LinTile: 64, LinReg: 8}, Measured: "lin_reg"}))
	t.Setenv("XENT_OPENCL_LIN_REG", "")
	t.Setenv("XENT_OPENCL_LIN_TILE", "")
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, [2]int{64, 8}, [2]int{tn.LinTile, tn.LinReg}, "the table's")
	t.Setenv("XENT_OPENCL_LIN_TILE", "32")
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, [2]int{32, 0}, [2]int{tn.LinTile, tn.LinReg}, "a table's block of 8 goes with its tile of 64")
	t.Setenv("XENT_OPENCL_LIN_REG", "6")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "lin_reg 6 is not 0, 4 or 8")
	t.Setenv("XENT_OPENCL_LIN_REG", "")
	t.Setenv("XENT_OPENCL_LIN_TILE", "")
	t.Setenv("XENT_OPENCL_SPLIT", "-1")
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, "split -1 is not in [0, 4096]")
	t.Setenv("XENT_OPENCL_SPLIT", "")
	// takes sets env to v: the tuning takes it (its field, want), shows
	// it in String and names it in the source.
	takes := func(env, v string, field func(Tuning) int, want int, msg string) {
		t.Helper()
		t.Setenv(env, v)
		tn, src, err := tuningOf(h)
		require.NoError(t, err)
		require.Equal(t, want, field(tn), msg)
		require.Contains(t, tn.String(), fmt.Sprintf(" %s=%d", strings.ToLower(strings.TrimPrefix(env, "XENT_OPENCL_")), want))
		require.Contains(t, src, env+"="+v)
	}
	takes("XENT_OPENCL_PACK", "8", func(tn Tuning) int { return tn.Pack }, 8, "rows a work-group for short rows, opt-in")
	refuses("XENT_OPENCL_PACK", []string{"3", "-2", "2048"}, func(b string) string { return "pack " + b + " is not 0 or a power of two up to 1024" })
	takes("XENT_OPENCL_PICK", "1", func(tn Tuning) int { return tn.Pick }, 1, "CLBlast's tiles' logits picked, opt-in")
	refuses("XENT_OPENCL_PICK", []string{"2", "-1"}, func(b string) string { return "pick " + b + " is not 0 or 1" })
	takes("XENT_OPENCL_WIDE", "1", func(tn Tuning) int { return tn.Wide }, 1, "wide tiles without gradients, opt-in")
	refuses("XENT_OPENCL_WIDE", []string{"2", "-1"}, func(b string) string { return "wide " + b + " is not 0 or 1" })
	t.Setenv("XENT_OPENCL_OPTIONS", " -cl-denorms-are-zero  -Dexp=native_exp -DXENT_X")
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, " -cl-denorms-are-zero  -Dexp=native_exp -DXENT_X", tn.Options, "build options, opt-in")
	require.Contains(t, tn.String(), ` options=" -cl-denorms-are-zero  -Dexp=native_exp -DXENT_X"`)
	require.Contains(t, src, "XENT_OPENCL_OPTIONS=")
	require.True(t, strings.HasSuffix(buildOptions(tn, h), " -cl-denorms-are-zero -Dexp=native_exp -DXENT_X"), "the program's, last")
	refuses("XENT_OPENCL_OPTIONS", []string{"-cl-fast-relaxed-math", "-cl-mad-enable -cl-finite-math-only", "-D", "-D=1", "-cl-unsafe-math-optimizations"}, func(b string) string {
		f := strings.Fields(b)
		return fmt.Sprintf("option %q is not -cl-denorms-are-zero, -cl-mad-enable, -cl-no-signed-zeros or -DNAME[=VALUE]", f[len(f)-1])
	})
	t.Setenv("XENT_OPENCL_XGEMM", XgemmString(XgemmSets["a100"]))
	tn, src, err = tuningOf(h)
	require.NoError(t, err)
	require.Equal(t, XgemmSets["a100"], tn.Xgemm, "CLBlast's parameters, opt-in")
	require.Contains(t, tn.String(), " xgemm=GEMMK=0,KREG=1,KWG=32,")
	require.Contains(t, src, "XENT_OPENCL_XGEMM=GEMMK=0,")
	xbad := map[string]string{
		"KWG":           `"KWG" is not NAME=VALUE`,
		"KWG=32,KWG=16": "KWG given twice",
		"KWG=32":        "GEMMK missing",
		strings.Replace(XgemmString(XgemmSets["a100"]), "VWN=4", "VWN=3", 1): "VWN 3 is not 1, 2, 4, 8 or 16",
		XgemmString(XgemmSets["a100"]) + ",FOO=1":                            "FOO is not a parameter of CLBlast's Xgemm",
	}
	refuses("XENT_OPENCL_XGEMM", slices.Collect(maps.Keys(xbad)), func(b string) string { return xbad[b] })
	t.Setenv("XENT_OPENCL_XGEMM", "none")
	tn, _, err = tuningOf(h)
	require.NoError(t, err)
	require.Nil(t, tn.Xgemm)
	t.Setenv("XENT_OPENCL_XGEMM", "")

	require.Error(t, SaveEntry(path, Entry{Device: "Z", Tuning: Tuning{WG: 3, Unroll: 1, UnrollHalf: 1}}), "an entry out of range is not written")
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": "Z", "wg": 100, "unroll": 1, "unroll_half": 1}]`), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, path)
	require.ErrorContains(t, err, "entry 0")
	require.ErrorContains(t, err, "wg 100 is not a power of two")
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": "Z", "wgs": 64}]`), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, `unknown field "wgs"`)
	require.NoError(t, os.WriteFile(path, []byte(`[{"device": `), 0o644))
	_, _, err = tuningOf(h)
	require.ErrorContains(t, err, path)
	require.NoError(t, SaveEntry(path+".new", plat))
	b, err := os.ReadFile(path + ".new")
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(string(b), "}\n]\n"))
	left, err := filepath.Glob(filepath.Join(dir, ".tuning-*"))
	require.NoError(t, err)
	require.Empty(t, left, "no temporary file left beside the table")
}

// TestXgemmSets: the candidates of xent tune --xgemm are sets CLBlast's
// kernel can run (CheckXgemm), each XgemmString reads back as it was,
// and CheckXgemm refuses tiles the kernel would cut wrongly.
func TestXgemmSets(t *testing.T) {
	for name, m := range XgemmSets {
		require.NoError(t, CheckXgemm(m), name)
		back, err := ParseXgemm(XgemmString(m))
		require.NoError(t, err)
		require.Equal(t, m, back, name)
	}
	m := maps.Clone(XgemmSets["rtx2080ti"])
	m["KWG"], m["NWG"] = 48, 80
	err := CheckXgemm(m)
	require.ErrorContains(t, err, "KWG 48 is not a multiple of MDIMC·NDIMC/MDIMA = 32")
	require.ErrorContains(t, err, "NWG 80 is not a multiple of NDIMB·VWN = 32")
	m = maps.Clone(XgemmSets["a100"])
	m["GEMMK"], m["KREG"], m["VWN"] = 1, 2, 4
	require.ErrorContains(t, CheckXgemm(m), "KREG 2 is not a multiple of VWN = 4")
}

// TestXgemmTuner: a file of CLBlast's tuner (testdata: Debian's
// clblast_tuner_xgemm -m 64 -n 64 -k 64 -runs 1 on PoCL 3.1, its first
// search, trimmed to four of its 578 results) gives the set of its least
// time, as ReadXgemmTuner, as XENT_OPENCL_XGEMM=FILE.json and as
// ParseXgemm; files of another kernel or precision, without a result or
// not JSON are refused, naming the file.
func TestXgemmTuner(t *testing.T) {
	const file = "testdata/clblast_xgemm_1_32.json"
	want := xgemmOf(0, 1, 32, 2, 16, 16, 64, 32, 32, 64, 0, 0, 0, 0, 4, 1) // the third result, 0.062 ms
	m, err := ReadXgemmTuner(file)
	require.NoError(t, err)
	require.Equal(t, want, m)
	require.NoError(t, CheckXgemm(m))
	m, err = ParseXgemm(file)
	require.NoError(t, err)
	require.Equal(t, want, m)

	hs := handles(t)
	t.Setenv("XENT_TUNING", filepath.Join(t.TempDir(), "none.json"))
	t.Setenv("XENT_OPENCL_XGEMM", file)
	tn, src, err := tuningOf(hs[0])
	require.NoError(t, err)
	require.Equal(t, want, tn.Xgemm)
	require.Contains(t, src, "XENT_OPENCL_XGEMM="+file)

	b, err := os.ReadFile(file)
	require.NoError(t, err)
	dir := t.TempDir()
	for edit, msg := range map[[2]string]string{
		{`"kernel_family": "xgemm_1"`, `"kernel_family": "xgemm_direct_1"`}: `kernel_family "xgemm_direct_1": not a search of clblast_tuner_xgemm`,
		{`"precision": "32"`, `"precision": "16"`}:                          `precision "16": the fused linear's products are float32`,
		{`"results": [`, `"results": [], "rest": [`}:                        "no result with a time",
		{`"time": 0.200,`, `"time": 0.200`}:                                 ".json:33: invalid character",
		{`"results": [`, `"results": 3, "rest": [`}:                         "not a file of CLBlast's tuner",
	} {
		bad := filepath.Join(dir, "bad.json")
		require.NoError(t, os.WriteFile(bad, []byte(strings.Replace(string(b), edit[0], edit[1], 1)), 0o644))
		_, err := ParseXgemm(bad)
		require.ErrorContains(t, err, bad)
		require.ErrorContains(t, err, msg)
	}
	_, err = ReadXgemmTuner(filepath.Join(dir, "missing.json"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// TestBuildOptions: Tuning.Options reach the row kernels' compiler (a
// PACK that xent.cl refuses fails Open with its #error and the options)
// and the Device says them.
func TestBuildOptions(t *testing.T) {
	handles(t)
	arg := os.Getenv("XENT_TEST_OPENCL")
	_, err := OpenTuned(arg, Tuning{WG: 16, Unroll: 1, UnrollHalf: 1, Options: "-DPACK=3"})
	require.ErrorContains(t, err, "PACK, the rows of a work-group, must be a power of two dividing WG")
	require.ErrorContains(t, err, "-DPACK=3")
	d, err := OpenTuned(arg, Tuning{WG: 16, Unroll: 1, UnrollHalf: 1, Options: "-cl-mad-enable -DXENT_UNUSED"})
	require.NoError(t, err)
	defer d.Close()
	require.Contains(t, d.Info().Kernel, `options="-cl-mad-enable -DXENT_UNUSED"`)
	require.True(t, strings.HasSuffix(d.p.options, " -cl-mad-enable -DXENT_UNUSED"))
}

// TestLinearOptions: linear.cl's build options are its tile's and what
// every program's options end with (NVIDIA's register limit, the tuning's
// Options last), the same for any row tuning (one build serves them all,
// in a cache keyed by the options), with none of the row kernels' macros.
func TestLinearOptions(t *testing.T) {
	t.Setenv("XENT_OPENCL_BUILD_LOG", "")
	h := handle{kind: "gpu", nv: true}
	a := Tuning{WG: 256, Unroll: 2, UnrollHalf: 4, RC: 16, Rev: 1, Align: 1, Regs: 128, LinTile: 32, Options: "-cl-mad-enable -DXENT_X"}
	b := a
	b.WG, b.Unroll, b.UnrollHalf, b.RC, b.Rev, b.Align, b.Split, b.Pack, b.Flight = 64, 8, 8, 0, 0, 3, 4, 2, 64
	opts := linearOptions(a, h)
	require.Equal(t, opts, linearOptions(b, h), "a row tuning of its own")
	require.True(t, strings.HasPrefix(opts, "-cl-std=CL1.2 -DLT=32 -DLK=8 -DLR=4 -DF_SMOOTH="), opts)
	require.True(t, strings.HasSuffix(opts, " -cl-nv-maxrregcount=128 -cl-mad-enable -DXENT_X"), opts)
	for _, m := range []string{"-DWG", "-DUNROLL", "-DRC", "-DREV", "-DALIGN", "-DFMA_W", "-DPACK"} {
		require.NotContains(t, opts, m)
	}
	require.True(t, strings.HasSuffix(buildOptions(a, h), sharedOptions(a, h)), "xent.cl's end as linear.cl's do")
	a.LinTile, a.LinReg = 64, 8
	require.Contains(t, linearOptions(a, h), "-DLT=64 -DLK=8 -DLR=8 ")
	require.NotContains(t, linearOptions(a, handle{kind: "gpu"}), "maxrregcount", "not NVIDIA")
}
