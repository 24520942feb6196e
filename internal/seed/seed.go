// Package seed gives tests the seeds of their random inputs: fresh on
// every run, logged, and injectable to run a failure again.
package seed

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
)

// Env is the environment variable that sets the seed.
const Env = "XENT_SEED"

// New returns the seed of a test's random inputs: $XENT_SEED when it is
// set (to run a failure again), else a fresh one. It logs the seed and how
// to reuse it, so that every failure can be reproduced.
func New(t testing.TB) uint64 {
	t.Helper()
	if v := os.Getenv(Env); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q is not an unsigned integer", Env, v)
		}
		t.Logf("seed %d (from %s)", s, Env)
		return s
	}
	s := rand.Uint64()
	t.Logf("seed %d (%s=%d runs this again)", s, Env, s)
	return s
}

// Rand returns a generator seeded with New(t) and stream, for tests that
// draw their inputs from one generator.
func Rand(t testing.TB, stream uint64) *rand.Rand {
	t.Helper()
	return rand.New(rand.NewPCG(New(t), stream))
}
