//go:build unix

package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/internal/seed"
)

// TestOutputsOnlyRegularFiles: an output that exists and is not a regular
// file (FIFO, directory, socket) is refused before any work, and left as
// it is; one in a missing directory or an unknown plot format too. (The
// tests never touch a real device node: the check is the same mode test.)
func TestOutputsOnlyRegularFiles(t *testing.T) {
	dir := safetyDir(t)
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer l.Close()
	require.NoError(t, os.Symlink("fifo", filepath.Join(dir, "link-to-fifo")))
	writeFile(t, dir, "bad.npy", []byte("not a .npy file"))
	logits := []string{"eval", "--device", "cpu", "--logits", "L.npy", "--targets", "T.npy"}
	cases := []struct {
		args []string
		want string
	}{
		{append(logits, "--rows-out", "fifo"), "--rows-out fifo: exists and is a FIFO, not a regular file"},
		{append(logits, "--rows-out", "link-to-fifo"), "--rows-out link-to-fifo: exists and is a FIFO, not a regular file"},
		{append(logits, "--rows-out", "sub"), "--rows-out sub: exists and is a directory, not a regular file"},
		{append(logits, "--rows-out", "sock"), "--rows-out sock: exists and is a socket, not a regular file"},
		{append(logits, "--rows-out", "missing-dir/r.npy"), "--rows-out missing-dir/r.npy: directory missing-dir: no such file or directory"},
		{append(logits, "--rows-out", "L.npy/r.npy"), "--rows-out L.npy/r.npy: L.npy is not a directory"},
		// The output is checked before the inputs are read: a bad input
		// and a bad output report the output.
		{[]string{"eval", "--device", "cpu", "--logits", "bad.npy", "--targets", "T.npy", "--rows-out", "missing-dir/r.npy"}, "--rows-out missing-dir/r.npy: directory missing-dir"},
		{[]string{"demo", "--linear", "--plot", "loss.xyz"}, `--plot loss.xyz: unknown plot format ".xyz"`},
		{[]string{"demo", "--linear", "--plot", "fifo.svg/x.svg"}, "--plot fifo.svg/x.svg: fifo.svg is not a directory"},
		{[]string{"bench", "--from", "rep.json", "--plot", "sub"}, "--plot sub: unknown plot format"},
		{[]string{"bench", "--from", "rep.json", "--plot", "fifo.svg"}, "--plot fifo.svg: exists and is a FIFO"},
	}
	if runtime.GOOS == "linux" { // a link of /proc no path walk follows: stdout is a pipe here
		cases = append(cases, struct {
			args []string
			want string
		}{append(logits, "--rows-out", "/dev/stdout"), "--rows-out /dev/stdout: exists and is a FIFO, not a regular file"})
	}
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo.svg"), 0o644))
	writeFile(t, dir, "rep.json", []byte(`{"results": []}`))
	if os.Geteuid() != 0 { // root writes anywhere
		ro := filepath.Join(dir, "ro")
		require.NoError(t, os.Mkdir(ro, 0o555))
		cases = append(cases, struct {
			args []string
			want string
		}{append(logits, "--rows-out", "ro/r.npy"), "--rows-out ro/r.npy: cannot write in ro: permission denied"})
	}
	for _, c := range cases {
		before := files(t, dir)
		t0 := time.Now()
		code, out, errOut := xent(t, dir, c.args...)
		require.Equal(t, 1, code, "%v: %s", c.args, errOut)
		require.Empty(t, out)
		require.Contains(t, errOut, c.want, "%v", c.args)
		require.NotContains(t, errOut, ".xent-", "the user's path is named, not a temporary file")
		require.Less(t, time.Since(t0), 20*time.Second)
		require.Equal(t, before, files(t, dir))
		noTemps(t, dir)
		for _, name := range []string{"fifo", "fifo.svg"} {
			fi, err := os.Stat(filepath.Join(dir, name))
			require.NoError(t, err)
			require.NotZero(t, fi.Mode()&os.ModeNamedPipe, "%s is still a FIFO", name)
		}
	}
}

// TestInterrupt: SIGINT and SIGTERM during the work stop it, leave no
// temporary file and an existing output as it was, print "interrupted"
// and exit 130 and 143; so does one while the command is stuck where it
// cannot look at its context (opening a FIFO no one writes), after the
// grace period.
func TestInterrupt(t *testing.T) {
	dir := safetyDir(t)
	// A fused linear of 16384 rows × 4096 classes in tiles of 1 row ×
	// 1024 classes: about 5 s of work on 2 cores, in 200k tiles, checking
	// its context before each.
	r := seed.Rand(t, 25)
	const n, v, d = 16384, 4096, 64
	mat := func(rows int) [][]float32 {
		m := make([]float32, rows*d)
		for i := range m {
			m[i] = float32(r.NormFloat64())
		}
		return rows2(m, rows, d)
	}
	writeNpyFile(t, dir, "HH.npy", mat(n))
	writeNpyFile(t, dir, "WW.npy", mat(v))
	tg := make([]int64, n)
	for i := range tg {
		tg[i] = int64(r.IntN(v))
	}
	writeNpyFile(t, dir, "TT.npy", tg)
	writeFile(t, dir, "dH.npy", []byte("an earlier result"))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "never-written"), 0o644))
	work := []string{"eval", "--json", "--device", "cpu", "--hidden", "HH.npy", "--weight", "WW.npy", "--targets", "TT.npy",
		"--budget", "4096", "--grad-hidden", "dH.npy", "--grad-weight", "dW.npy"}
	stuck := []string{"eval", "--json", "--device", "cpu", "--logits", "L.npy", "--targets", "never-written", "--rows-out", "dH.npy"}
	for _, c := range []struct {
		name string
		args []string
		sig  syscall.Signal
		code int
		say  string
	}{
		{"SIGINT", work, syscall.SIGINT, 130, "xent eval: interrupted\n"},
		{"SIGTERM", work, syscall.SIGTERM, 143, "xent eval: interrupted\n"},
		{"SIGINT, stuck", stuck, syscall.SIGINT, 130, "xent: interrupted\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := files(t, dir)
			cmd := xentCmd(dir, c.args...)
			var o, e bytes.Buffer
			cmd.Stdout, cmd.Stderr = &o, &e
			require.NoError(t, cmd.Start())
			// The temporary outputs are made before any work, after the
			// signals are caught: once one is there, the work is under way.
			deadline := time.Now().Add(30 * time.Second)
			for {
				ents, _ := filepath.Glob(filepath.Join(dir, ".xent-*"))
				if len(ents) > 0 {
					break
				}
				if !time.Now().Before(deadline) {
					cmd.Process.Kill()
					cmd.Wait() // stderr is read by then
					require.Failf(t, "no temporary output appeared", "%s", e.String())
				}
				time.Sleep(time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
			t0 := time.Now()
			require.NoError(t, cmd.Process.Signal(c.sig))
			err := cmd.Wait()
			took := time.Since(t0)
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "exit status 0: the work ended before the signal (%s)", e.String())
			require.Equal(t, c.code, ee.ExitCode(), e.String())
			require.Equal(t, c.say, e.String())
			require.Empty(t, o.String())
			require.Equal(t, before, files(t, dir), "no output written, the earlier one kept")
			noTemps(t, dir)
			if c.say == "xent: interrupted\n" {
				require.GreaterOrEqual(t, took, grace-100*time.Millisecond)
			} else {
				require.Less(t, took, grace, "the work stopped at its next tile")
			}
		})
	}
}
