package corpus

import (
	"fmt"
	"math"
	"strings"

	"github.com/xentlab/xent/batch"
)

// Text is the size of the text a line's counted targets encode, for the
// measures that compare models whose tokenizers differ, as
// lm-evaluation-harness reports them: its length in bytes (UTF-8), for
// bits per byte and the byte perplexity, and in words, for the word
// perplexity. A count of 0 is one not given; counts add over lines.
type Text struct {
	Bytes int64 `json:"bytes,omitempty"`
	Words int64 `json:"words,omitempty"`
}

// count is one of a Text's counts and its name (a manifest line's key).
type count struct {
	key string
	n   int64
}

func (x Text) counts() []count { return []count{{"bytes", x.Bytes}, {"words", x.Words}} }

// given reports whether x has a count.
func (x Text) given() bool { return x.Bytes != 0 || x.Words != 0 }

// Add adds o's counts to x's.
func (x *Text) Add(o Text) {
	x.Bytes += o.Bytes
	x.Words += o.Words
}

// check refuses a negative count, naming its key.
func (x Text) check() error {
	for _, c := range x.counts() {
		if c.n < 0 {
			return fmt.Errorf(`"%s" %d: want the text's length in %s, > 0 (or no "%s")`, c.key, c.n, c.key, c.key)
		}
	}
	return nil
}

// differs returns the key of a count one of x and o has and the other
// has not ("" for none).
func (x Text) differs(o Text) string {
	for k, c := range x.counts() {
		if (c.n == 0) != (o.counts()[k].n == 0) {
			return c.key
		}
	}
	return ""
}

// has reports whether x has the count named key.
func (x Text) has(key string) bool {
	for _, c := range x.counts() {
		if c.key == key {
			return c.n != 0
		}
	}
	return false
}

// String lists the counts given: "40 bytes, 9 words".
func (x Text) String() string {
	var s []string
	for _, c := range x.counts() {
		if c.n != 0 {
			s = append(s, fmt.Sprintf("%d %s", c.n, c.key))
		}
	}
	return strings.Join(s, ", ")
}

// NLL returns the log-loss's sum of st: Sum less the z-loss.
func NLL(st batch.Stats) float64 { return st.Sum - st.ZLoss }

// BitsPerByte returns the log-loss of st over a text of n bytes, in bits
// a byte: NLL / (ln 2 · n).
func BitsPerByte(st batch.Stats, n int64) float64 {
	return NLL(st) / (math.Ln2 * float64(n))
}

// WordPerplexity returns exp(NLL / n), the perplexity of st over a text
// of n words.
func WordPerplexity(st batch.Stats, n int64) float64 { return math.Exp(NLL(st) / float64(n)) }
