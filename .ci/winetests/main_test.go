package main

import (
	"strings"
	"testing"
)

// TestJudge: a failure with an assertion, or with no output at all, is a
// failure; one whose only output is Wine's cleanup line (and the seed)
// is excused, and so is a parent that failed through such a subtest alone;
// a run of no test is an error.
func TestJudge(t *testing.T) {
	const wine = `    testing.go:1464: TempDir RemoveAll cleanup: unlinkat C:\\x: Invalid function.\n`
	events := strings.Join([]string{
		`{"Action":"run","Test":"TestA"}`,
		`{"Action":"output","Test":"TestA","Output":"    a_test.go:3: boom\n"}`,
		`{"Action":"output","Test":"TestA","Output":"` + wine + `"}`,
		`{"Action":"fail","Test":"TestA"}`,
		`{"Action":"run","Test":"TestB"}`,
		`{"Action":"run","Test":"TestB/c"}`,
		`{"Action":"output","Test":"TestB/c","Output":"    b_test.go:9: seed 12 (XENT_SEED=12 runs this again)\n"}`,
		`{"Action":"output","Test":"TestB/c","Output":"` + wine + `"}`,
		`{"Action":"fail","Test":"TestB/c"}`,
		`{"Action":"output","Test":"TestB","Output":"--- FAIL: TestB (0.01s)\n"}`,
		`{"Action":"fail","Test":"TestB"}`,
		`{"Action":"run","Test":"TestC"}`,
		`{"Action":"fail","Test":"TestC"}`,
		`{"Action":"run","Test":"TestD"}`,
		`{"Action":"output","Test":"TestD","Output":"    d_test.go:1: seed 1 (XENT_SEED=1 runs this again)\n"}`,
		`{"Action":"pass","Test":"TestD"}`,
		`{"Action":"fail"}`,
	}, "\n")
	v, err := judge(strings.NewReader(events))
	if err != nil {
		t.Fatal(err)
	}
	if v.tests != 5 || v.excused != 2 || strings.Join(v.failed, ",") != "TestA,TestC" {
		t.Fatalf("%d tests, %d excused, failed %q: want 5, 2, [TestA TestC]", v.tests, v.excused, v.failed)
	}
	if _, err := judge(strings.NewReader(`{"Action":"start"}`)); err == nil {
		t.Fatal("no test ran: no error")
	}
	if _, err := judge(strings.NewReader("PASS")); err == nil {
		t.Fatal("not test2json's: no error")
	}
}
