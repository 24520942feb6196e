// Command simdslow reproduces what GOEXPERIMENT=simd costs ordinary Go
// code on AVX-512 CPUs: a loop of math.Exp, no xent code, timed.
//
//	go run ./bench/simdslow                                          # normal build
//	GOEXPERIMENT=simd go run ./bench/simdslow                        # with the experiment
//	GOEXPERIMENT=simd GODEBUG=asyncpreemptoff=1 go run ./bench/simdslow
//
// or bench/simdslow/run.sh for all three in one go (its arguments, such
// as -n, the loop's count, go to each). Seen on a 2-core Intel
// Xeon (Sapphire Rapids, AVX-512) with Go 1.26.8: 0.69 s, 58 s and 0.42 s
// (62 s with the experiment on Go 1.27.3); on an AMD EPYC (Zen 3, no
// AVX-512) the three take the same time. With the experiment, the
// runtime's asynchronous preemption (every 10 ms for a long-running
// goroutine) saves and restores Z0–Z31 and leaves their upper halves
// dirty, and every legacy SSE instruction after it — Go's scalar float
// arithmetic — pays for that state; asyncpreemptoff=1 stops the
// preemptions.
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"time"
)

func main() {
	n := flag.Int("n", 50_000_000, "the loop's `count` of math.Exp")
	flag.Parse()
	if *n < 1 {
		fmt.Fprintf(os.Stderr, "simdslow: -n %d: want a count of at least 1\n", *n)
		os.Exit(2)
	}
	start := time.Now()
	s := 0.0
	for i := range *n {
		s += math.Exp(-float64(i%1000) / 100)
	}
	fmt.Printf("sum %.6g in %.2f s\n", s, time.Since(start).Seconds())
}
