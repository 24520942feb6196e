package batch_test

import (
	"context"
	"fmt"
	"go/doc"
	"go/parser"
	"go/token"
	"testing"

	"github.com/xentlab/xent/batch"
	"github.com/xentlab/xent/device"
)

// A training step: loss and gradient of a [rows × vocab] logit matrix in
// one fused pass, the gradient written in place over the logits.
func Example() {
	dev, err := device.Open("cpu") // or "auto": a GPU through OpenCL when there is one
	if err != nil {
		panic(err)
	}
	defer dev.Close()
	ce, err := batch.New(dev, batch.LabelSmoothing(0.1)) // mean over counted rows, ignore index -100
	if err != nil {
		panic(err)
	}
	logits := []float32{ // 3 positions, vocabulary 4
		2, 1, 0, -1,
		0, 3, 0, 0,
		1, 1, 1, 1,
	}
	targets := []int32{0, 1, -100} // the last position is padding
	x := batch.NewMatrix(logits, 3, 4)
	r, err := ce.ForwardBackward(context.Background(), batch.InPlace(x), x, targets, batch.One) // the gradient in place over the logits
	if err != nil {
		panic(err)
	}
	fmt.Printf("loss %.4f over %d tokens (%d ignored), accuracy %.2f\n", r.Loss, r.Counted, r.Ignored(), r.Accuracy())
	fmt.Printf("dL/dz row 0: %.4f\n", logits[0:4])
	fmt.Printf("dL/dz row 2: %.4f\n", logits[8:12])
	// PyTorch: F.cross_entropy(z, [0, 1, -100], label_smoothing=0.1) = 0.4772

	// Output:
	// loss 0.4772 over 2 tokens (1 ignored), accuracy 1.00
	// dL/dz row 0: [-0.1405 0.1059 0.0311 0.0035]
	// dL/dz row 2: [0.0000 0.0000 0.0000 0.0000]
}

// A fused linear cross-entropy: the loss and gradients of z = H·Wᵀ + b
// straight from hidden states and the classifier, which at real sizes
// (8192 tokens × 128256 classes) never hold the logits: they are computed
// a tile at a time within batch.Budget.
func ExampleLinear() {
	dev, err := device.Open("cpu")
	if err != nil {
		panic(err)
	}
	ce, err := batch.NewLinear(dev, batch.ZLoss(1e-4))
	if err != nil {
		panic(err)
	}
	h := batch.NewMatrix([]float32{ // 2 tokens, 3 features
		1, 0, -1,
		0.5, 2, 0,
	}, 2, 3)
	w := batch.NewMatrix([]float32{ // 4 classes × 3 features (nn.Linear's weight)
		1, 0, 0,
		0, 1, 0,
		0, 0, 1,
		1, 1, 1,
	}, 4, 3)
	bias := []float32{0, 0.5, 0, -0.5}
	g := batch.LinearGrads{ // dH is written; dW and db are added to
		H:    batch.NewGrad(make([]float32, 6), 2, 3),
		W:    batch.NewGrad(make([]float32, 12), 4, 3),
		Bias: make([]float32, 4),
	}
	r, err := ce.ForwardBackward(context.Background(), g, h, w, bias, []int32{0, 1}, batch.One)
	if err != nil {
		panic(err)
	}
	fmt.Printf("loss %.4f, accuracy %.2f\n", r.Loss, r.Accuracy())
	fmt.Printf("dH row 0: %.4f\n", g.H.Matrix().Data[:3])
	fmt.Printf("db: %.4f\n", g.Bias)
	// PyTorch: F.cross_entropy(F.linear(h, w, b), [0, 1]) + 1e-4·mean(lse²), backward

	// Output:
	// loss 0.6389, accuracy 1.00
	// dH row 0: [-0.1887 0.2112 0.0912]
	// db: [-0.2083 -0.0713 0.0570 0.2232]
}

// A distillation with the classifier's classes split between two holders
// (tensor parallelism): each holder's partials and KL parts come from one
// pass over its classes, and one all-reduce (MergeKL, pairs in any
// order) gives every holder the rows' loss, as one holder of the whole
// classifier would.
func ExampleLinear_PartialsWithKL() {
	dev, err := device.Open("cpu")
	if err != nil {
		panic(err)
	}
	h := batch.NewMatrix([]float32{1, 0, -1, 0.5, 2, 0}, 2, 3) // 2 tokens, 3 features
	w := []float32{                                            // 5 classes × 3 features
		1, 0, 0,
		0, 1, 0,
		0, 0, 1,
		1, 1, 1,
		-1, 0, 1,
	}
	targets := []int32{0, 1}
	teacher := batch.Teacher{K: 2, IDs: []int32{0, 3, 1, 4}, LogProbs: []float32{-0.3, -1.5, -0.2, -2}} // top-2 a row
	holders := [][2]int{{0, 2}, {2, 5}}                                                                 // classes [0, 2) and [2, 5)
	part, kp := batch.NewPartials(2), make([]batch.KLPart, 2)
	for _, c := range holders {
		ce, err := batch.NewLinear(dev, batch.Shard(c[0], 5), batch.Distill(teacher, 0.5))
		if err != nil {
			panic(err)
		}
		ps, ks := batch.NewPartials(2), make([]batch.KLPart, 2)
		if err := ce.PartialsWithKL(context.Background(), ps, ks, h, batch.NewMatrix(w[c[0]*3:c[1]*3], c[1]-c[0], 3), nil, targets); err != nil {
			panic(err)
		}
		for i := range ps { // the all-reduce
			batch.MergeKL(&part[i], &kp[i], ps[i], ks[i])
		}
	}
	ce, err := batch.NewLinear(dev, batch.Shard(0, 5), batch.Distill(teacher, 0.5))
	if err != nil {
		panic(err)
	}
	r, err := ce.FinishKL(part, kp, targets)
	if err != nil {
		panic(err)
	}
	fmt.Printf("shards: loss %.4f, KL %.4f\n", r.Loss, r.MeanKL())
	whole, err := batch.NewLinear(dev, batch.Distill(teacher, 0.5))
	if err != nil {
		panic(err)
	}
	r, err = whole.Forward(context.Background(), h, batch.NewMatrix(w, 5, 3), nil, targets)
	if err != nil {
		panic(err)
	}
	fmt.Printf("whole:  loss %.4f, KL %.4f\n", r.Loss, r.MeanKL())
	// PyTorch, float64: 0.5·F.cross_entropy + 0.5·(Σ p·(log p − log_softmax) + P·log(P/Q)), mean

	// Output:
	// shards: loss 0.7149, KL 0.5394
	// whole:  loss 0.7149, KL 0.5394
}

// TestExamplesChecked: every example of this file has an output comment
// that go test compares, so none is documentation that no test runs. A
// comment line right above "// Output:" joins its group, which then does
// not begin with it, and go test runs nothing: it had hidden all of them.
func TestExamplesChecked(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "example_test.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	ex := doc.Examples(f)
	if len(ex) < 3 {
		t.Fatalf("%d examples found, want at least 3", len(ex))
	}
	for _, e := range ex {
		if e.Output == "" && !e.EmptyOutput {
			t.Errorf("Example%s has no output comment that go test checks", e.Name)
		}
	}
}
