// Package bigram trains a byte-level bigram language model through the
// fused linear cross-entropy: the hidden state of position i is E[x_i], the
// embedding of the previous byte (V 256 × D), the classifier W (V × D) and
// a bias give the next byte's logits, and plain full-batch SGD on E, W and
// b follows dH, dW and db, which a Step gives (package batch's fused
// linear, in the demo and the tests). It is the test that the fused path
// learns (batch) and xent demo --linear.
package bigram

import (
	"cmp"
	"context"
	_ "embed"
	"math"
	"math/rand/v2"
	"slices"
)

// Step computes the mean loss over the n rows of H (n × d) against
// targets tg with the classifier W (V × d) and bias b, the gradients
// into dH (written), dW and db (added to).
type Step func(ctx context.Context, dH, dW, db, H, W, b []float32, tg []int32) (float64, error)

// Alice is the text the demo and the tests learn: the first page of Lewis
// Carroll's Alice's Adventures in Wonderland (public domain), embedded so
// that an installed xent runs the demo from any directory.
//
//go:embed alice.txt
var Alice []byte

// V is the vocabulary: bytes.
const V = 256

// Model is a trained bigram model: the embeddings E (V × D, the hidden
// states), the classifier W (V × D) and the bias B (V).
type Model struct {
	D       int
	E, W, B []float32
}

// Rows returns the hidden states of text (one row per byte but the last,
// E of the byte, len(text)-1 × D) and the targets (the next bytes).
func (m Model) Rows(text []byte) (h []float32, tg []int32) {
	n := len(text) - 1
	h, tg = make([]float32, n*m.D), make([]int32, n)
	for i := range n {
		copy(h[i*m.D:(i+1)*m.D], m.E[int(text[i])*m.D:])
		tg[i] = int32(text[i+1])
	}
	return h, tg
}

// Train runs epochs of SGD with learning rate lr on text with hidden size
// d, from a seeded start, and returns the mean loss of each epoch (before
// its update) and the model trained.
func Train(ctx context.Context, step Step, text []byte, d, epochs int, lr float32) ([]float64, Model, error) {
	n := len(text) - 1
	r := rand.New(rand.NewPCG(5, 6))
	E, W, b := make([]float32, V*d), make([]float32, V*d), make([]float32, V)
	for k := range E {
		E[k] = float32(r.NormFloat64() * 0.1)
		W[k] = float32(r.NormFloat64() * 0.01)
	}
	tg := make([]int32, n)
	for i := range tg {
		tg[i] = int32(text[i+1])
	}
	H, dH := make([]float32, n*d), make([]float32, n*d)
	dW, db := make([]float32, V*d), make([]float32, V)
	var losses []float64
	for range epochs {
		for i := range n {
			copy(H[i*d:(i+1)*d], E[int(text[i])*d:])
		}
		clear(dW) // dW and db are accumulated into
		clear(db)
		loss, err := step(ctx, dH, dW, db, H, W, b, tg)
		if err != nil {
			return nil, Model{}, err
		}
		losses = append(losses, loss)
		for k := range W {
			W[k] -= lr * dW[k]
		}
		for k := range b {
			b[k] -= lr * db[k]
		}
		for i := range n { // E[x_i] -= lr·dH_i
			e := E[int(text[i])*d:][:d]
			for k := range e {
				e[k] -= lr * dH[i*d+k]
			}
		}
	}
	return losses, Model{D: d, E: E, W: W, B: b}, nil
}

// Teacher returns a teacher of the bigram model for text: the smoothed
// counts of the text's byte pairs, P(b | a) = (n(a, b) + α)/(n(a) + 256α),
// as the top-k a teacher's dump gives: for each byte but the last, the k
// most likely next bytes (ties to the smaller byte) and their
// log-probabilities, rows × k.
func Teacher(text []byte, k int, alpha float64) (ids []int32, logprobs []float32) {
	var n [V][V]float64
	for i := 0; i+1 < len(text); i++ {
		n[text[i]][text[i+1]]++
	}
	type top struct {
		ids []int32
		lp  []float32
	}
	var tops [V]*top
	for i := 0; i+1 < len(text); i++ {
		a := text[i]
		if tops[a] == nil {
			row, sum := &n[a], 0.0
			for _, c := range row {
				sum += c
			}
			order := make([]int32, V)
			for b := range order {
				order[b] = int32(b)
			}
			slices.SortStableFunc(order, func(x, y int32) int { return cmp.Compare(row[y], row[x]) })
			t := &top{ids: order[:k], lp: make([]float32, k)}
			for j, b := range t.ids {
				t.lp[j] = float32(math.Log((row[b] + alpha) / (sum + V*alpha)))
			}
			tops[a] = t
		}
		ids = append(ids, tops[a].ids...)
		logprobs = append(logprobs, tops[a].lp...)
	}
	return ids, logprobs
}
