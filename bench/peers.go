package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/xentlab/xent/batch"
)

// Peers runs bench/peers/pytorch_cpu.py (PyTorch's F.cross_entropy on the
// CPU, same thread count) and returns its rows, and its bandwidth probes
// on the same matrix (PyTorch's x.sum() and copy_, NumPy's sum and
// copyto), marked Peer. It needs a python3 with torch: /usr/bin/python3
// (Debian's python3-torch) is tried first. Each of types runs (a type this
// PyTorch cannot run on the CPU is left out).
func Peers(ctx context.Context, dir string, rows, cols int, ops []string, repeat int, types []batch.DType) ([]Result, []Probe, error) {
	if dir == "" {
		dir = filepath.Join("bench", "peers")
	}
	script := filepath.Join(dir, "pytorch_cpu.py")
	if _, err := os.Stat(script); err != nil {
		return nil, nil, fmt.Errorf("%s: %w (run from the repository root or set the peer directory)", script, err)
	}
	py, err := python(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, py, script, "--batch", fmt.Sprint(rows), "--vocab", fmt.Sprint(cols),
		"--ops", strings.Join(ops, ","), "--repeat", fmt.Sprint(repeat), "--threads", fmt.Sprint(runtime.GOMAXPROCS(0)), "--probes",
		"--dtypes", typeNames(types))
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("%s: %v: %s", script, err, strings.TrimSpace(errb.String()))
	}
	var rs []Result
	var probes []Probe
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		if strings.Contains(line, `"probe"`) {
			var p struct {
				Probe, Kind string
				GBps        float64
			}
			if err := json.Unmarshal([]byte(line), &p); err != nil {
				return nil, nil, fmt.Errorf("%s: bad probe line %q: %v", script, line, err)
			}
			probes = append(probes, Probe{Name: p.Probe, Kind: p.Kind, Value: p.GBps, Peer: true})
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, nil, fmt.Errorf("%s: bad output line %q: %v", script, line, err)
		}
		rs = append(rs, r)
	}
	return rs, probes, nil
}

// python returns a python3 that imports torch.
func python(ctx context.Context) (string, error) {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.CommandContext(ctx, p, "-c", "import torch").Run() == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no python3 with torch (apt-get install python3-torch)")
}

// typeNames returns the types as PyTorch names them (float32 for none).
func typeNames(types []batch.DType) string {
	if len(types) == 0 {
		return "float32"
	}
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.String()
	}
	return strings.Join(names, ",")
}
