package opencl_test

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/bench"
	"github.com/xentlab/xent/cpu"
	"github.com/xentlab/xent/device"
	. "github.com/xentlab/xent/device/opencl"
	"github.com/xentlab/xent/internal/spec"
)

// openTest opens the OpenCL device the tests run on: $XENT_TEST_OPENCL
// (a spec argument such as "0:0"), else the first device of any kind. With
// XENT_REQUIRE_OPENCL=1 a missing device fails the test; otherwise it skips
// with a one-line reason.
func openTest(t testing.TB) *Device {
	t.Helper()
	dev, err := Open(os.Getenv("XENT_TEST_OPENCL"))
	if err != nil {
		if os.Getenv("XENT_REQUIRE_OPENCL") == "1" {
			t.Fatalf("XENT_REQUIRE_OPENCL=1 but no OpenCL device: %v", err)
		}
		t.Skipf("no OpenCL device: %v", err)
	}
	d := dev.(*Device)
	t.Cleanup(func() { d.Close() })
	return d
}

func TestSpecOpenCL(t *testing.T) {
	d := openTest(t)
	t.Logf("device %s: %s, %s", d.Info().Spec, d.Info().Name, d.Info().Platform)
	spec.Run(t, d, 1e-5)
}

func TestGoldenOpenCL(t *testing.T) {
	spec.RunGolden(t, openTest(t), 1e-5)
}

// TestChunked forces many small chunk buffers (the double-buffered path)
// and strided gradients, against the CPU device.
func TestChunked(t *testing.T) {
	d := openTest(t)
	d.ChunkBytes = 3 * 1000 * 4 // three rows of 1000 floats per chunk
	spec.RunCase(t, d, spec.Case{Name: "chunked", Rows: 41, Cols: 997, Stride: 1000, Opts: spec.Opts{Ignore: -100, Smoothing: 0.1, ZLoss: 1e-3}, Fill: spec.Normal(3, 5, -100)}, rand.Uint64(), 1e-5)
	spec.RunCase(t, d, spec.Case{Name: "chunked-one-row", Rows: 7, Cols: 2999, Opts: spec.Opts{Ignore: -100}, Fill: spec.Normal(3, 5, -100)}, rand.Uint64(), 1e-5)
	_, err := ChunkRowsOf(d, 1, 4000, 4000)
	require.ErrorIs(t, err, ErrTooLarge)
}

// TestOffsets64 checks the kernels' 64-bit offset arithmetic: the logits'
// row numbers start at 2^28 with a stride of 64, so (row_base+row)*stride
// passes 2^34 and only the subtraction of the base brings it back.
func TestOffsets64(t *testing.T) {
	d := openTest(t)
	SetRowBase(d, 1<<28)
	defer SetRowBase(d, 0)
	spec.RunCase(t, d, spec.Case{Name: "offsets64", Rows: 9, Cols: 61, Stride: 64, Opts: spec.Opts{Ignore: -100}, Fill: spec.Normal(3, 4, -100)}, rand.Uint64(), 1e-5)
}

// TestVersusCPU: OpenCL and CPU per-row losses within 2e-5·max(1, |cpu|),
// gradients within 2e-5, on a large vocabulary.
func TestVersusCPU(t *testing.T) {
	d := openTest(t)
	const rows, cols = 24, 50257
	seed := rand.Uint64()
	x, tg := bench.Logits(rows, cols, seed), bench.Targets(rows, cols, seed)
	res := func(dev device.Device) ([]float32, []float32) {
		l, err := batch.New(dev, batch.Reduce(batch.None), batch.LabelSmoothing(0.05))
		require.NoError(t, err)
		g := make([]float32, len(x))
		r, err := l.ForwardBackward(context.Background(), batch.NewMatrix(x, rows, cols), tg, batch.NewMatrix(g, rows, cols), nil)
		require.NoError(t, err)
		return r.Rows, g
	}
	lc, gc := res(device.NewCPU(cpu.Portable))
	lo, goo := res(d)
	for i := range lc {
		require.InDelta(t, lc[i], lo[i], 2e-5*math.Max(1, math.Abs(float64(lc[i]))), "row %d", i)
	}
	for k := range gc {
		require.InDelta(t, gc[k], goo[k], 2e-5, "grad %d", k)
	}
}

// TestLiveObjects: every OpenCL object is released after Close.
func TestLiveObjects(t *testing.T) {
	before := Live()
	d := openTest(t)
	l, err := batch.New(d)
	require.NoError(t, err)
	x := make([]float32, 5*33)
	_, err = l.ForwardBackward(context.Background(), batch.NewMatrix(x, 5, 33), []int32{1, 2, 3, 4, 5}, batch.NewMatrix(x, 5, 33), nil)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	require.NoError(t, d.Close(), "Close twice is fine")
	require.Equal(t, before, Live(), "live OpenCL objects after Close")
	_, err = l.Forward(context.Background(), batch.NewMatrix(x, 5, 33), []int32{1, 2, 3, 4, 5})
	require.ErrorIs(t, err, device.ErrClosed)
}

func TestOpenErrors(t *testing.T) {
	_, err := device.Open("opencl:99:0")
	require.Error(t, err)
	_, err = device.Open("opencl:x")
	require.Error(t, err)
}

func TestResidentOpenCL(t *testing.T) {
	d := openTest(t)
	spec.RunResident(t, d, 1e-5)
	cpuDev, _ := device.Open("cpu")
	dm, err := batch.Upload(context.Background(), cpuDev, batch.NewMatrix(make([]float32, 6), 2, 3))
	require.NoError(t, err)
	l, err := batch.New(d)
	require.NoError(t, err)
	_, err = l.ForwardDevice(context.Background(), dm, []int32{0, 1})
	require.ErrorIs(t, err, batch.ErrOption, "a matrix of another device")
}

func TestConcurrentOpenCL(t *testing.T) {
	spec.RunConcurrent(t, openTest(t), openTest(t)) // two Devices sharing one program
}

func TestNoGrowthOpenCL(t *testing.T) {
	d := openTest(t)
	before := Live()
	spec.RunNoGrowth(t, d)
	require.Equal(t, before, Live(), "OpenCL objects leaked across calls")
}

// TestGroupOpenCL: "all"-style group of the OpenCL device and the CPU
// passes the shared table (rows split by measured speed).
func TestGroupOpenCL(t *testing.T) {
	g, err := device.NewGroup(openTest(t), device.NewCPU(cpu.Portable))
	require.NoError(t, err)
	spec.Run(t, g, 1e-5)
}

// TestCancelOpenCL: a cancelled context stops a chunked evaluation between
// chunks and returns ctx.Err() promptly.
func TestCancelOpenCL(t *testing.T) {
	d := openTest(t)
	d.ChunkBytes = 1 << 16
	defer func() { d.ChunkBytes = 0 }()
	l, err := batch.New(d)
	require.NoError(t, err)
	x := make([]float32, 4096*1024)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Forward(ctx, batch.NewMatrix(x, 4096, 1024), make([]int32, 4096))
	require.ErrorIs(t, err, context.Canceled)
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = l.Forward(ctx, batch.NewMatrix(x, 4096, 1024), make([]int32, 4096))
	if err != nil {
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Less(t, time.Since(start), 2*time.Second, "cancellation took too long")
	}
	before := Live()
	_, err = l.Forward(context.Background(), batch.NewMatrix(x[:1024*5], 5, 1024), make([]int32, 5))
	require.NoError(t, err, "the device still works after a cancelled call")
	require.Equal(t, before, Live())
}

func TestPast2p31OpenCL(t *testing.T) { spec.RunPast2p31(t, openTest(t)) }
