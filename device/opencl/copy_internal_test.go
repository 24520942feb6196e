package opencl

import (
	"math/rand/v2"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/xentlab/xent/device/opencl/internal/cl"
)

// TestCopyBytes: the staging copy gives every byte whatever the number of
// goroutines (XENT_OPENCL_COPY_THREADS, capped at GOMAXPROCS) and sizes
// that do not divide among them.
func TestCopyBytes(t *testing.T) {
	src := make([]byte, 13<<20+7)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	for _, c := range []struct {
		env  string
		want int
	}{{"", 8}, {"1", 1}, {"3", 3}, {"16", 16}, {"0", 8}} {
		t.Setenv("XENT_OPENCL_COPY_THREADS", c.env)
		require.Equal(t, min(c.want, runtime.GOMAXPROCS(0)), copyThreads())
		for _, n := range []int{0, 5, 4 << 20, len(src)} {
			dst := make([]byte, n)
			copyBytes(dst, src[:n])
			require.Equal(t, src[:n], dst, "threads %q, %d bytes", c.env, n)
		}
	}
}

// TestProbeShapes: on a CPU runtime (a work-group's items run one after
// another there) the copy probe's grid is one float4 a work-item and the
// FMA probe's fmas are of 16 lanes (xent.cl's FMA_W); on a GPU the copy
// runs 8 work-groups a compute unit and the fmas are scalar, its build
// options as they were.
func TestProbeShapes(t *testing.T) {
	handles(t)
	d, err := OpenTuned(os.Getenv("XENT_TEST_OPENCL"), Tuning{WG: 16, Unroll: 2, UnrollHalf: 3})
	require.NoError(t, err)
	defer d.Close()
	for _, n4 := range []int{1, 15, 16, 17, 1 << 20} {
		d.h.kind = "cpu"
		g, wg := d.copyGroups(n4), d.p.tn.WG
		require.True(t, g*wg >= n4 && (g-1)*wg < n4, "cpu: %d groups of %d for %d float4s", g, wg, n4)
		d.h.kind = "gpu"
		cu, _ := d.h.dev.Uint(cl.DeviceMaxComputeUnits)
		require.Equal(t, 8*int(max(cu, 1)), d.copyGroups(n4), "gpu")
	}
	tn := Tuning{WG: 16, Unroll: 1, UnrollHalf: 1}
	require.Equal(t, 16, fmaWidth(handle{kind: "cpu"}))
	require.Contains(t, buildOptions(tn, handle{kind: "cpu"}), " -DFMA_W=16")
	require.Equal(t, 1, fmaWidth(handle{kind: "gpu"}))
	require.NotContains(t, buildOptions(tn, handle{kind: "gpu", nv: true}), "FMA_W")
}
