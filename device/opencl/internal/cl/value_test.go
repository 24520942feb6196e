package cl

import (
	"strings"
	"testing"
)

// TestGapless checks ValueOf's refusal of a struct with padding, which
// drivers size differently: at its end (rusticl 22.3 took {ulong; int}
// as 12 bytes, C's sizeof is 16), before a field, inside a nested struct
// or an array's element; and its acceptance of one without.
func TestGapless(t *testing.T) {
	type tail struct {
		A uint64
		B int32
	}
	type inner struct {
		A int32
		B uint64
	}
	type nested struct {
		A [2]tail
	}
	type exact struct {
		A, B uint64
		C, D int32
		E    [2]float32
	}
	for _, c := range []struct {
		v    Value
		want string // "" for none
	}{
		{ValueOf(&tail{}), "4 bytes of padding at its end"},
		{ValueOf(&inner{}), "4 bytes of padding before its field B"},
		{ValueOf(&nested{}), "padding at its end"},
		{ValueOf(&exact{}), ""},
		{ValueOf(&[3]float32{}), ""},
	} {
		if c.want == "" {
			if c.v.err != nil {
				t.Errorf("refused a struct without padding: %v", c.v.err)
			}
			continue
		}
		if c.v.err == nil || !strings.Contains(c.v.err.Error(), c.want) {
			t.Errorf("got %v, want an error saying %q", c.v.err, c.want)
		}
		// SetArgs refuses it before calling any library (none is loaded
		// here: a call would crash).
		if err := Kernel(0).SetArgs(c.v); err == nil || !strings.Contains(err.Error(), "kernel argument 0") {
			t.Errorf("SetArgs: got %v", err)
		}
	}
}
