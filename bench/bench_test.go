package bench

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRunSmall(t *testing.T) {
	rep, err := Run(context.Background(), Config{Batch: 16, Vocabs: []int{33, 65}, Ops: []string{OpLSE, OpForward, OpFused}, Devices: []string{"cpu:portable", "cpu"}, Repeat: 2})
	require.NoError(t, err)
	devices := 1 // "cpu" is "cpu:portable" without the SIMD build
	if rep.Machine["cpu_kernel"] != "portable" {
		devices = 2
	}
	require.Len(t, rep.Results, devices*2*3)
	require.Greater(t, rep.Roofline.ReadGBps, 0.0)
	require.Greater(t, rep.Roofline.CopyGBps, 0.0)
	for _, r := range rep.Results {
		require.Greater(t, r.GBps, 0.0)
		require.LessOrEqual(t, r.SecondsMin, r.SecondsMed)
		require.LessOrEqual(t, r.SecondsMed, r.SecondsMax)
		require.Greater(t, r.VsPortable, 0.0)
		require.Equal(t, "host", r.Mode)
		if r.Device == "cpu:portable" {
			require.InDelta(t, 1, r.VsPortable, 1e-12)
		}
	}
	b, err := json.Marshal(rep)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	for _, k := range []string{"machine", "roofline", "results"} {
		require.Contains(t, doc, k)
	}
	res := doc["results"].([]any)[0].(map[string]any)
	for _, k := range []string{"device", "kernel", "op", "batch", "vocab", "seconds_median", "seconds_min", "seconds_max", "gbps", "roofline_fraction"} {
		require.Contains(t, res, k)
	}
	_, err = Run(context.Background(), Config{Batch: 4, Vocabs: []int{8}, Ops: []string{"nope"}, Devices: []string{"cpu"}})
	require.Error(t, err)
}

// TestLinearSmall: the fused linear's benchmark on the CPU, with the
// gradient filter and a distillation (linear-fused-distill), each op's
// times ordered; a teacher of more classes than the vocabulary is an
// error that says so.
func TestLinearSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the BLAS's peak it measures first is 2048³ products (the plain run checks it)")
	}
	logf := func(string, ...any) {}
	rs, _, err := Linear(context.Background(), LinearConfig{N: 24, V: 300, D: 16, Devices: []string{"cpu"}, BLAS: []string{"gonum"}, Repeat: 2, Filter: 1e-3, TeacherK: 7, Log: logf})
	require.NoError(t, err)
	var ops []string
	for _, r := range rs {
		ops = append(ops, r.Op)
		require.LessOrEqual(t, r.SecondsMin, r.SecondsMed)
		require.LessOrEqual(t, r.SecondsMed, r.SecondsMax)
		require.Greater(t, r.SecondsMin, 0.0)
	}
	require.Equal(t, []string{"linear-forward", "linear-fused", "linear-fused-filter", "linear-fused-distill"}, ops)
	_, _, err = Linear(context.Background(), LinearConfig{N: 4, V: 5, D: 2, Devices: []string{"cpu"}, Repeat: 1, TeacherK: 6, Log: logf})
	require.ErrorContains(t, err, "a teacher of 6 classes a row: it takes 0 (none) to the vocabulary's 5")
}
