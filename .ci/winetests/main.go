// Command winetests reads the events of a Windows test binary run under
// Wine (go tool test2json's, on stdin) and says whether its tests passed,
// excusing one failure that is Wine's and not the test's: Wine 8 does not
// implement the file disposition Go's os.RemoveAll uses (1.26), so the
// cleanup of every t.TempDir fails with "Invalid function." A failed test
// is excused when that line is its only output besides the test's
// headers and the seed it logs, or when it failed only through subtests
// that are excused.
// Any other output (an assertion, a panic) of a failed test fails the
// run, as does a run with no test at all. It prints the failures it does
// not excuse, with their output, and how many it excused.
//
//	wine x.test.exe -test.v=test2json | go tool test2json -t | go run ./.ci/winetests
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

type event struct {
	Action string
	Test   string
	Output string
}

// cleanup is the line t.TempDir's cleanup writes when Wine refuses.
var cleanup = regexp.MustCompile(`^\s*testing\.go:\d+: TempDir RemoveAll cleanup: unlinkat .*: Invalid function\.\s*$`)

// header is a line the test runner writes of its own; logged, what the
// tests log whether they pass or fail (the seed of their inputs).
var (
	header = regexp.MustCompile(`^\s*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|FAIL|SKIP)|PASS$|FAIL$|ok\s)`)
	logged = regexp.MustCompile(`^\s*\w+\.go:\d+: seed \d+ \(XENT_SEED=\d+ runs this again\)$`)
)

func main() {
	v, err := judge(os.Stdin)
	if err != nil {
		fmt.Println("winetests:", err)
		os.Exit(1)
	}
	for _, t := range v.failed {
		name := t
		if t == "" {
			name = "(the test binary, outside any test)"
		}
		fmt.Printf("--- FAIL: %s\n", name)
		for _, l := range v.output[t] {
			fmt.Println(l)
		}
	}
	fmt.Printf("%d tests, %d failed for Wine's TempDir cleanup alone (excused), %d failed\n", v.tests, v.excused, len(v.failed))
	if len(v.failed) > 0 {
		os.Exit(1)
	}
}

// verdict is judge's: the tests run, those excused, those failed (and
// each failed test's output).
type verdict struct {
	tests, excused int
	failed         []string
	output         map[string][]string
}

// judge reads test2json's events from r.
func judge(r io.Reader) (verdict, error) {
	other := map[string][]string{} // each test's lines that are neither headers nor the cleanup's
	wine := map[string]bool{}      // the tests whose cleanup Wine refused
	failed := map[string]bool{}
	tests := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return verdict{}, fmt.Errorf("not test2json's output: %q", sc.Text())
		}
		switch e.Action {
		case "run":
			tests++
		case "fail":
			failed[e.Test] = true // "": the binary's own, judged by its tests' and its output
		case "output":
			switch line := strings.TrimRight(e.Output, "\n"); {
			case cleanup.MatchString(line):
				wine[e.Test] = true
			case header.MatchString(line), logged.MatchString(line), strings.TrimSpace(line) == "":
			default:
				other[e.Test] = append(other[e.Test], line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return verdict{}, err
	}
	if tests == 0 {
		return verdict{}, errors.New("no test ran")
	}
	// excused reports whether test failed for Wine's cleanup alone.
	var excused func(test string) bool
	excused = func(test string) bool {
		if len(other[test]) > 0 {
			return false
		}
		children := 0
		for t := range failed {
			if t != test && strings.HasPrefix(t, test+"/") && !strings.Contains(t[len(test)+1:], "/") {
				children++
				if !excused(t) {
					return false
				}
			}
		}
		return wine[test] || children > 0
	}
	v := verdict{tests: tests, output: other}
	for t := range failed {
		switch {
		case t == "":
		case excused(t):
			v.excused++
		default:
			v.failed = append(v.failed, t)
		}
	}
	if failed[""] && len(other[""]) > 0 { // output of the binary's own (a crash outside any test)
		v.failed = append(v.failed, "")
	}
	sort.Strings(v.failed)
	return v, nil
}
