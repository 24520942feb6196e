package opencl

import (
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
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
