package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/device/opencl"
)

// TestTune: xent tune times its candidates on the OpenCL device, prints
// the best, and with --write keeps it in the table it names, which the
// device then opens with; bad grids are usage errors naming the flag.
func TestTune(t *testing.T) {
	if testing.Short() {
		t.Skip("-short (the race detector's run): three program builds; the full run has it")
	}
	spec := "opencl"
	if s := os.Getenv("XENT_TEST_OPENCL"); s != "" {
		spec += ":" + s
	}
	if _, _, err := opencl.TuningFor(strings.TrimPrefix(strings.TrimPrefix(spec, "opencl"), ":")); err != nil {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatalf("XENT_REQUIRE_OPENCL=1 but no OpenCL device: %v", err)
		}
		t.Skipf("no OpenCL device: %v", err)
	}
	table := filepath.Join(t.TempDir(), "t.json")
	// A file of CLBlast's tuner (opencl.ReadXgemmTuner's test file).
	b, err := os.ReadFile("../../device/opencl/testdata/clblast_xgemm_1_32.json")
	require.NoError(t, err)
	tuned := filepath.Join(t.TempDir(), "clblast_xgemm_1_32.json")
	require.NoError(t, os.WriteFile(tuned, b, 0o644))
	code, out, errOut := runCmd("tune", "--device", spec, "--batch", "3", "--vocab", "37,1031", "--repeat", "1",
		"--wg", "16", "--unroll", "1", "--unroll-half", "2", "--regs", "0", "--flight", "0", "--rc", "8", "--rev", "1", "--align", "1", "--pack", "0,4",
		"--linear", "33x97x16", "--lin-tile", "0,16", "--xgemm", "none,a100,"+tuned, "--table", table, "--write")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `(?m)^lin_tile=16 lin_reg=0: fused linear 33x97x16 forward \+ backward [0-9.]+ s \(linear\.cl 16×16/4\)$`, errOut, "linear.cl's tiles timed")
	require.Regexp(t, `(?m)^lin_tile=0 lin_reg=0 xgemm=a100: fused linear 33x97x16 forward \+ backward [0-9.]+ s \(CLBlast, Xgemm GEMMK=0,KREG=1,KWG=32,`, errOut, "CLBlast with the A100's parameters timed")
	require.Regexp(t, `(?m)^lin_tile=0 lin_reg=0 xgemm=none: fused linear .* \(CLBlast\)$`, errOut, "and with its own")
	require.Contains(t, errOut, "lin_tile=0 lin_reg=0 xgemm="+tuned+": fused linear 33x97x16", "and with its tuner's fastest")
	require.Contains(t, errOut, "(CLBlast, Xgemm GEMMK=0,KREG=1,KWG=32,KWI=2,MDIMA=16,MDIMC=16,MWG=64,NDIMB=32,NDIMC=32,NWG=64,")
	require.Regexp(t, `(?m)^wide=0: fused linear 33x97x16 forward [0-9.]+ s \(CLBlast`, errOut, "CLBlast's forward timed in chunks of rows")
	require.Regexp(t, `(?m)^wide=1: fused linear 33x97x16 forward [0-9.]+ s \(CLBlast`, errOut, "and in wide tiles")
	require.Regexp(t, `(?m)^xent tune: starting from wg=`, errOut)
	require.Regexp(t, `\): score 1\.000;`, errOut, "the starting candidate's line, the scores' unit")
	require.Regexp(t, `(?m)^align=\d .* wg=16 \(xent\.cl wg=16 `, errOut, "a candidate of the grid, built as asked")
	require.Regexp(t, `(?m)^align=\d .*pack=4 .*\(xent\.cl wg=\d+ .* pack=4`, errOut, "four rows a work-group on the short rows (37 columns)")
	require.Contains(t, errOut, "wrote "+table)
	es, err := opencl.ReadTable(table)
	require.NoError(t, err)
	require.Len(t, es, 1)
	require.Contains(t, out, "best: "+es[0].Tuning.String()+", ", "the best printed is the one written")
	require.Contains(t, es[0].Measured, "xent tune")
	require.Contains(t, es[0].Measured, "lin_tile of 0,16 (xgemm none,a100,"+tuned+") at 33x97x16")
	require.Contains(t, []int{0, 16}, es[0].LinTile, "the fastest of those timed")
	if es[0].LinTile != 0 {
		require.Zero(t, es[0].Wide, "wide tiles are CLBlast's path's")
	}
	require.NotEmpty(t, es[0].Device)

	for _, bad := range [][]string{{"--align", "0,x"}, {"--wg", "-2"}, {"--pack", "-4"}, {"--vocab", "0"}, {"--linear", "3x4"}, {"--lin-tile", "24", "--linear", "3x4x5"}, {"--lin-tile", "32/8", "--linear", "3x4x5"}, {"--lin-tile", "0/4", "--linear", "3x4x5"}, {"--xgemm", "h200", "--linear", "3x4x5"}, {"--xgemm", "none,missing.json", "--linear", "3x4x5"}} {
		code, _, errOut = runCmd(append([]string{"tune", "--device", spec}, bad...)...)
		require.Equal(t, 1, code)
		require.Contains(t, errOut, bad[0])
	}
	code, _, errOut = runCmd("tune", "--device", "cpu")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "xent tune tunes an OpenCL device")
}

// TestLinTileList: --lin-tile's tiles and register blocks, and what it
// refuses (a block of 8 takes tiles of 64: (64/8)² work-items ≥ 64
// classes for dBias's sums).
func TestLinTileList(t *testing.T) {
	got, err := linTileList("0, 16,32/4,64,64/8")
	require.NoError(t, err)
	require.Equal(t, [][2]int{{0, 0}, {16, 0}, {32, 4}, {64, 0}, {64, 8}}, got)
	for _, bad := range []string{"24", "32/8", "16/8", "0/4", "64/2", "x", "64/", ""} {
		_, err := linTileList(bad)
		require.ErrorContains(t, err, "--lin-tile", bad)
	}
}
