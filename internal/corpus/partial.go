package corpus

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/xentlab/xent/batch"
)

// Format names the partial statistics' file format and version.
const Format = "xent-stats/1"

// A Partial is the exact statistics of one shard of a manifest: what it
// evaluated (the manifest's SHA-256 and line count, the shard) and how
// (the flags that change the result), the sums and counts, and the
// device. Partials of every shard of one evaluation merge into the
// single run's statistics (Merge).
type Partial struct {
	Format   string            `json:"format"`
	Manifest string            `json:"manifest_sha256"`
	Lines    int               `json:"lines"` // lines (entries) in the manifest
	Shard    int               `json:"shard"`
	Shards   int               `json:"shards"`
	Files    int               `json:"files"` // lines this shard evaluated
	Flags    map[string]string `json:"flags"`
	Stats    Stats             `json:"stats"`
	// Text is the text's size, with the lines' "bytes" and "words".
	Text
	// Positions is the loss by position, with --seq-len or --by-position.
	Positions *Positions `json:"by_position,omitempty"`
	// Spread, AccSpread, TopKSpread, MRRSpread, EntSpread and KLSpread
	// are the standard errors' sums, of the mean loss, of the accuracy,
	// of each top-k accuracy, the MRR and the mean entropy (with --topk)
	// and of the teacher's mean KL (with a teacher), with --stderr.
	Spread     *Spread  `json:"spread,omitempty"`
	AccSpread  *Spread  `json:"accuracy_spread,omitempty"`
	TopKSpread []Spread `json:"topk_spread,omitempty"`
	MRRSpread  *Spread  `json:"mrr_spread,omitempty"`
	EntSpread  *Spread  `json:"entropy_spread,omitempty"`
	KLSpread   *Spread  `json:"kl_spread,omitempty"`
	// Calibration is the calibration bins' sums, with --calibration.
	Calibration *batch.Calibration `json:"calibration,omitempty"`
	// Ranks is the rank statistics' sums, with --topk.
	Ranks *Ranks `json:"ranks,omitempty"`
	// Pair is a comparison's (xent compare --stats-out): the Partial's own
	// statistics are then model A's, these model B's and the difference's.
	Pair   *PairStats `json:"pair,omitempty"`
	Device string     `json:"device"`
}

// PairStats is a comparison's share of a Partial: model B's statistics
// (its own manifest's, the same shard, flags and device) and the Diffs
// of B − A over the clusters (the loss's, the accuracies', the MRR's, a
// teacher's KL's, by position; Pair).
type PairStats struct {
	B Partial `json:"b"`
	Diffs
}

// PartialOfPair returns the statistics of p, lines of manifests of lines
// lines whose SHA-256 are shaA (model A's) and shaB, as shard of shards,
// with flags, on device.
func PartialOfPair(p Pair, shaA, shaB string, lines, shard, shards int, flags map[string]string, device string) Partial {
	a := PartialOf(p.A, shaA, lines, shard, shards, flags, device)
	a.Pair = &PairStats{B: PartialOf(p.B, shaB, lines, shard, shards, flags, device), Diffs: p.Diffs}
	return a
}

// PairOf returns the comparison of a Partial that holds one (Pair).
func (p Partial) PairOf() (Pair, error) {
	if p.Pair == nil {
		return Pair{}, fmt.Errorf("statistics of one evaluation, not of a comparison (xent compare --stats-out)")
	}
	q := p.Pair
	if q.AccDiff.Clusters != q.Diff.Clusters {
		return Pair{}, fmt.Errorf("the differences' sums of the loss (%d clusters) and the accuracy (%d) are not of the same clusters (statistics of an older xent have the loss's alone): compare the shard again", q.Diff.Clusters, q.AccDiff.Clusters)
	}
	k := 0
	if p.Ranks != nil {
		k = len(p.Ranks.K)
	}
	if len(q.TopKDiff) != k {
		return Pair{}, fmt.Errorf("the differences' sums of %d top-k accuracies for %d k (statistics of an older xent have none): compare the shard again", len(q.TopKDiff), k)
	}
	for _, t := range q.TopKDiff {
		if t.Clusters != q.Diff.Clusters {
			return Pair{}, fmt.Errorf("the differences' sums of the loss (%d clusters) and a top-k accuracy (%d) are not of the same clusters", q.Diff.Clusters, t.Clusters)
		}
	}
	if (q.MRRDiff != nil) != (p.Ranks != nil) || q.MRRDiff != nil && q.MRRDiff.Clusters != q.Diff.Clusters {
		return Pair{}, fmt.Errorf("the MRR's differences' sums missing, or not of the loss's clusters (statistics of an older xent have none): compare the shard again")
	}
	if (q.KLDiff != nil) != (p.Stats.KL != nil) || q.KLDiff != nil && q.KLDiff.Clusters != q.Diff.Clusters {
		return Pair{}, fmt.Errorf("the KL's differences' sums missing, or not of the loss's clusters (statistics of an older xent have none): compare the shard again")
	}
	a, err := p.Total()
	if err != nil {
		return Pair{}, err
	}
	b, err := p.Pair.B.Total()
	if (q.DiffPositions != nil) != (p.Positions != nil) || q.DiffPositions != nil && len(q.DiffPositions.Spread) != len(q.DiffPositions.Sum) {
		return Pair{}, fmt.Errorf("the difference by position's sums are missing or short (statistics of an older xent have none): compare the shard again")
	}
	return Pair{A: a, B: b, Diffs: q.Diffs}, err
}

// Ranks is batch.RankStats as JSON (its sums exactly, a NaN entropy as a
// string).
type Ranks struct {
	K       []int   `json:"k"`
	TopK    []int64 `json:"topk"`
	RR      Float   `json:"rr"`
	Entropy Float   `json:"entropy"`
	Counted int64   `json:"counted"`
}

// ranksOf returns r as JSON sums (nil for nil).
func ranksOf(r *batch.RankStats) *Ranks {
	if r == nil {
		return nil
	}
	return &Ranks{K: r.K, TopK: r.TopK, RR: Float(r.RR), Entropy: Float(r.Entropy), Counted: r.Counted}
}

// batch returns r as batch.RankStats (nil for nil), checking its k.
func (r *Ranks) batch() (*batch.RankStats, error) {
	if r == nil {
		return nil, nil
	}
	s, err := batch.NewRankStats(r.K)
	if err != nil {
		return nil, err
	}
	if len(r.TopK) != len(r.K) {
		return nil, fmt.Errorf("rank statistics of %d top-k counts for %d k", len(r.TopK), len(r.K))
	}
	copy(s.TopK, r.TopK)
	s.RR, s.Entropy, s.Counted = float64(r.RR), float64(r.Entropy), r.Counted
	return &s, nil
}

// PartialOf returns the statistics of t, lines of a manifest of lines
// lines whose SHA-256 is sha, as shard of shards, with flags, on device.
func PartialOf(t Total, sha string, lines, shard, shards int, flags map[string]string, device string) Partial {
	st := StatsOf(t.Stats)
	if t.Distill {
		kl := Float(t.Stats.KL)
		st.KL = &kl
	}
	return Partial{Format: Format, Manifest: sha, Lines: lines, Shard: shard, Shards: shards, Files: t.Files, Flags: flags,
		Stats: st, Text: t.Text, Positions: t.Positions, Spread: t.Spread, AccSpread: t.AccSpread, TopKSpread: t.TopKSpread, MRRSpread: t.MRRSpread, EntSpread: t.EntSpread, KLSpread: t.KLSpread, Calibration: t.Calibration, Ranks: ranksOf(t.Ranks), Device: device}
}

// Total returns p's statistics as a Total.
func (p Partial) Total() (Total, error) {
	if err := p.sameClusters(); err != nil {
		return Total{}, err
	}
	rs, err := p.Ranks.batch()
	return Total{Stats: p.Stats.Batch(), Text: p.Text, Positions: p.Positions, Spread: p.Spread, AccSpread: p.AccSpread, TopKSpread: p.TopKSpread, MRRSpread: p.MRRSpread, EntSpread: p.EntSpread, KLSpread: p.KLSpread,
		Calibration: p.Calibration, Ranks: rs, Distill: p.Stats.KL != nil, Files: p.Files}, err
}

// sameClusters checks that p's standard errors' sums are all there or
// none, and of the same clusters: the accuracy's beside the loss's, and
// one a top-k with the rank statistics.
func (p Partial) sameClusters() error {
	const older = "(statistics of an older xent have the loss's alone): evaluate the shard again"
	if p.Spread == nil {
		if p.AccSpread != nil || p.TopKSpread != nil || p.MRRSpread != nil || p.EntSpread != nil || p.KLSpread != nil {
			return fmt.Errorf("the standard errors' sums of the accuracy without the loss's")
		}
		return nil
	}
	if p.AccSpread == nil || p.AccSpread.Clusters != p.Spread.Clusters {
		return fmt.Errorf("the standard errors' sums of the loss and the accuracy are not of the same clusters %s", older)
	}
	k := 0
	if p.Ranks != nil {
		k = len(p.Ranks.K)
	}
	if len(p.TopKSpread) != k {
		return fmt.Errorf("the standard errors' sums of %d top-k accuracies for %d k %s", len(p.TopKSpread), k, older)
	}
	for _, sp := range []*Spread{p.MRRSpread, p.EntSpread} {
		if (sp != nil) != (p.Ranks != nil) || sp != nil && sp.Clusters != p.Spread.Clusters {
			return fmt.Errorf("the standard errors' sums of the MRR or the entropy missing, or not of the loss's clusters %s", older)
		}
	}
	if (p.KLSpread != nil) != (p.Stats.KL != nil) || p.KLSpread != nil && p.KLSpread.Clusters != p.Spread.Clusters {
		return fmt.Errorf("the standard errors' sums of the KL missing, or not of the loss's clusters %s", older)
	}
	if q := p.Positions; q != nil && len(q.Spread) != len(q.Sum) {
		return fmt.Errorf("the loss by position's standard errors' sums of %d positions for %d %s", len(q.Spread), len(q.Sum), older)
	}
	for _, t := range p.TopKSpread {
		if t.Clusters != p.Spread.Clusters {
			return fmt.Errorf("the standard errors' sums of the loss and a top-k accuracy are not of the same clusters (%d, %d)", p.Spread.Clusters, t.Clusters)
		}
	}
	return nil
}

// Positions is the loss by position t = row mod T of an evaluation with a
// sequence length T: at each t the sum of the counted rows' losses and of
// their shares of the mean's denominator, and with --stderr their Spread
// (each sequence's row at t its own cluster). A comparison's (Pair) holds
// B's rows less A's.
type Positions struct {
	Sum    []Float  `json:"sum"`
	Denom  []Float  `json:"denom"`
	Spread []Spread `json:"spread,omitempty"`
}

// NewPositions returns the empty sums of n positions.
func NewPositions(n int) *Positions {
	return &Positions{Sum: make([]Float, n), Denom: make([]Float, n)}
}

// add adds a row of position t, of loss s and denominator w (its
// sequence's at t: a cluster of its own).
func (p *Positions) add(t int, s, w float64) {
	p.Sum[t] += Float(s)
	p.Denom[t] += Float(w)
	if p.Spread != nil {
		p.Spread[t].Add(s, w)
	}
}

// Merge adds o's sums to p's. Position t is a sequence's row t in every
// file, so sequences of other lengths merge: p grows to o's length, and
// the shorter has nothing at the later positions.
func (p *Positions) Merge(o *Positions) error {
	if len(o.Sum) != len(o.Denom) || len(p.Sum) != len(p.Denom) {
		return fmt.Errorf("the loss by position of %d sums and %d denominators with one of %d and %d", len(p.Sum), len(p.Denom), len(o.Sum), len(o.Denom))
	}
	if o.Spread != nil && len(o.Spread) != len(o.Sum) || p.Spread != nil && len(p.Spread) != len(p.Sum) {
		return fmt.Errorf("the loss by position's standard errors of %d and %d positions for %d and %d", len(p.Spread), len(o.Spread), len(p.Sum), len(o.Sum))
	}
	if n := len(o.Sum); n > len(p.Sum) {
		p.Sum = append(p.Sum, make([]Float, n-len(p.Sum))...)
		p.Denom = append(p.Denom, make([]Float, n-len(p.Denom))...)
		if p.Spread != nil {
			p.Spread = append(p.Spread, make([]Spread, n-len(p.Spread))...)
		}
	}
	if o.Spread != nil && p.Spread == nil {
		p.Spread = make([]Spread, len(p.Sum))
	}
	for t := range o.Sum {
		p.Sum[t] += o.Sum[t]
		p.Denom[t] += o.Denom[t]
		if o.Spread != nil {
			p.Spread[t].Merge(o.Spread[t])
		}
	}
	return nil
}

// StdErrs returns the standard error of the mean at each position (NaN
// where fewer than two sequences count), nil without the spreads.
func (p *Positions) StdErrs() []float64 {
	if p.Spread == nil {
		return nil
	}
	se := make([]float64, len(p.Spread))
	for t, sp := range p.Spread {
		se[t] = sp.StdErr()
	}
	return se
}

// Spread is what the standard error of a mean S / W takes, over
// clusters of rows taken as independent of one another: each line's
// sequences (its rows' or targets' last dimension, or --seq-len), else
// each row alone. Of each cluster c with a counted row, its share S_c of
// the sum and W_c of the denominator: how many they are, and Σ S_c,
// Σ W_c, Σ S_c², Σ S_c·W_c, Σ W_c². For the mean loss S_c is the
// cluster's loss sum and W_c its share of the mean's denominator
// (Positions'); for the accuracy, its correct rows and its counted rows.
// Spreads of disjoint clusters merge by adding (Merge), in any order.
type Spread struct {
	Clusters int64 `json:"clusters"`
	S        Float `json:"s"`
	W        Float `json:"w"`
	SS       Float `json:"ss"`
	SW       Float `json:"sw"`
	WW       Float `json:"ww"`
}

// Add adds a cluster of loss sum s and denominator w.
func (p *Spread) Add(s, w float64) {
	p.Clusters++
	p.S += Float(s)
	p.W += Float(w)
	p.SS += Float(s * s)
	p.SW += Float(s * w)
	p.WW += Float(w * w)
}

// Merge adds o's clusters to p's.
func (p *Spread) Merge(o Spread) {
	p.Clusters += o.Clusters
	p.S += o.S
	p.W += o.W
	p.SS += o.SS
	p.SW += o.SW
	p.WW += o.WW
}

// StdErr returns the standard error of the mean m = S / W over the
// clusters, the ratio estimator's (the delta method, as a cluster-robust
// standard error of a weighted mean is taken), with n clusters:
//
//	se = √(n/(n−1) · Σ_c (S_c − m·W_c)²) / W,
//	Σ_c (S_c − m·W_c)² = Σ S_c² − 2m·Σ S_c·W_c + m²·Σ W_c²,
//
// NaN with fewer than two clusters or W = 0; a sum below 0 by rounding
// (clusters of one mean) is 0.
func (p Spread) StdErr() float64 {
	n, w := float64(p.Clusters), float64(p.W)
	if n < 2 || !(w > 0) {
		return math.NaN()
	}
	m := float64(p.S) / w
	v := float64(p.SS) - 2*m*float64(p.SW) + m*m*float64(p.WW)
	return math.Sqrt(max(v, 0)*n/(n-1)) / w
}

// Means returns the mean loss at each position, NaN where nothing counts.
func (p *Positions) Means() []float64 {
	m := make([]float64, len(p.Sum))
	for t := range m {
		m[t] = math.NaN()
		if p.Denom[t] != 0 {
			m[t] = float64(p.Sum[t] / p.Denom[t])
		}
	}
	return m
}

// Stats is batch.Stats as JSON: floats written in full (Go's shortest
// representation that reads back to the same float64), and NaN or ±Inf as
// strings (JSON has no such numbers).
type Stats struct {
	Rows    int64  `json:"rows"`
	Counted int64  `json:"counted"`
	Sum     Float  `json:"sum"`
	Denom   Float  `json:"denom"`
	ZLoss   Float  `json:"z_loss"`
	Correct int64  `json:"correct"`
	KL      *Float `json:"kl,omitempty"` // Σ KL with a teacher (absent without)
}

// StatsOf returns s as JSON statistics.
func StatsOf(s batch.Stats) Stats {
	return Stats{Rows: s.Rows, Counted: s.Counted, Sum: Float(s.Sum), Denom: Float(s.Denom), ZLoss: Float(s.ZLoss), Correct: s.Correct}
}

// Batch returns s as batch.Stats.
func (s Stats) Batch() batch.Stats {
	b := batch.Stats{Rows: s.Rows, Counted: s.Counted, Sum: float64(s.Sum), Denom: float64(s.Denom), ZLoss: float64(s.ZLoss), Correct: s.Correct}
	if s.KL != nil {
		b.KL = float64(*s.KL)
	}
	return b
}

// Float is a float64 that JSON carries exactly, NaN and ±Inf included.
type Float float64

// MarshalJSON writes f as a number, or "NaN", "+Inf", "-Inf".
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return json.Marshal(strconv.FormatFloat(v, 'g', -1, 64))
	}
	return []byte(strconv.FormatFloat(v, 'g', -1, 64)), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (f *Float) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !math.IsNaN(v) && !math.IsInf(v, 0) {
			return fmt.Errorf("%s is not a number (only NaN, +Inf and -Inf are written as strings)", b)
		}
		*f = Float(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// ReadPartial reads a partial statistics file and checks its format.
func ReadPartial(path string) (Partial, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Partial{}, err
	}
	var p Partial
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Partial{}, fmt.Errorf("%s: not partial statistics of xent eval --stats-out: %w", path, err)
	}
	if p.Format != Format {
		return Partial{}, fmt.Errorf("%s: format %q, expected %q", path, p.Format, Format)
	}
	if p.Shards < 1 || p.Shard < 0 || p.Shard >= p.Shards || p.Lines < 0 || p.Files < 0 {
		return Partial{}, fmt.Errorf("%s: shard %d of %d over %d lines (%d evaluated) is not a shard", path, p.Shard, p.Shards, p.Lines, p.Files)
	}
	if q := p.Pair; q != nil && (q.B.Format != Format || q.B.Shard != p.Shard || q.B.Shards != p.Shards || q.B.Lines != p.Lines || q.B.Files != p.Files) {
		return Partial{}, fmt.Errorf("%s: model B's statistics are of shard %d of %d over %d lines (%d evaluated), model A's of shard %d of %d over %d lines (%d evaluated)",
			path, q.B.Shard, q.B.Shards, q.B.Lines, q.B.Files, p.Shard, p.Shards, p.Lines, p.Files)
	}
	return p, nil
}

// Merge merges the partials of every shard of one evaluation, named by
// names (their files, for errors), into its statistics: the same counts
// as the single run, and sums within rounding (they are added in another
// order). It refuses partials of other manifests or flags, and a missing
// or repeated shard. The result's Device lists the devices that ran.
func Merge(ps []Partial, names []string) (Partial, error) {
	if len(ps) == 0 {
		return Partial{}, fmt.Errorf("no partial statistics to merge")
	}
	first := ps[0]
	seen := map[int]string{} // (a hostile file's count of shards is not allocated)
	var devices []string
	for k, p := range ps {
		switch {
		case (p.Pair == nil) != (first.Pair == nil):
			kind := map[bool]string{true: "a comparison's", false: "an evaluation's"}
			return Partial{}, fmt.Errorf("%s: %s statistics, %s %s: they do not merge", names[k], kind[p.Pair != nil], names[0], kind[first.Pair != nil])
		case p.Manifest != first.Manifest || p.Lines != first.Lines:
			return Partial{}, fmt.Errorf("%s: of another manifest (sha256 %.12s…, %d lines) than %s (sha256 %.12s…, %d lines)", names[k], p.Manifest, p.Lines, names[0], first.Manifest, first.Lines)
		case p.Shards != first.Shards:
			return Partial{}, fmt.Errorf("%s: shard %d/%d, %s is of %d shards", names[k], p.Shard, p.Shards, names[0], first.Shards)
		case !sameFlags(p.Flags, first.Flags):
			return Partial{}, fmt.Errorf("%s: flags %s differ from %s's %s", names[k], flagString(p.Flags), names[0], flagString(first.Flags))
		case p.Shard < 0 || p.Shard >= p.Shards:
			return Partial{}, fmt.Errorf("%s: shard %d/%d is not a shard", names[k], p.Shard, p.Shards)
		case seen[p.Shard] != "":
			return Partial{}, fmt.Errorf("%s: shard %d/%d again (it is also %s)", names[k], p.Shard, p.Shards, seen[p.Shard])
		}
		seen[p.Shard] = names[k]
	}
	for i := 0; i < min(first.Shards, len(ps)+1); i++ { // the first missing, if any, is at most len(ps)
		if seen[i] == "" {
			return Partial{}, fmt.Errorf("shard %d/%d is missing (%d of %d given)", i, first.Shards, len(ps), first.Shards)
		}
	}
	// In shard order, whatever the order given: the same bits each time.
	order := make([]int, len(ps))
	for k, p := range ps {
		order[p.Shard] = k
	}
	var total Total
	for _, k := range order {
		t, err := ps[k].Total()
		if err == nil {
			err = total.Merge(t)
		}
		if err != nil {
			return Partial{}, fmt.Errorf("%s: %w (merging with %s)", names[k], err, names[0])
		}
		if !slices.Contains(devices, ps[k].Device) {
			devices = append(devices, ps[k].Device)
		}
	}
	if total.Files != first.Lines {
		return Partial{}, fmt.Errorf("the shards evaluated %d files of the manifest's %d lines", total.Files, first.Lines)
	}
	merged := PartialOf(total, first.Manifest, first.Lines, 0, 1, first.Flags, strings.Join(devices, "; "))
	if first.Pair == nil {
		return merged, nil
	}
	// A comparison's: model B's partials merged alike, the differences
	// added in shard order.
	bs, bnames := make([]Partial, len(ps)), make([]string, len(ps))
	merged.Pair = &PairStats{}
	for i, k := range order {
		bs[i], bnames[i] = ps[k].Pair.B, names[k]+" (model B)"
		if bs[i].Pair != nil {
			return Partial{}, fmt.Errorf("%s: model B's statistics hold a comparison of their own", names[k])
		}
		if err := merged.Pair.Diffs.Merge(ps[k].Pair.Diffs); err != nil {
			return Partial{}, fmt.Errorf("%s: %w", names[k], err)
		}
	}
	b, err := Merge(bs, bnames)
	if err != nil {
		return Partial{}, err
	}
	merged.Pair.B = b
	return merged, nil
}

func sameFlags(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// flagString writes flags in key order.
func flagString(f map[string]string) string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, f[k])
	}
	return b.String()
}

// Flags returns what of c (and of the default classifier weight, the
// --weight flag as given) changes a result, for partials to be merged only
// with partials of the same: the class weights by the SHA-256 of their
// values (not their path, which may differ between machines).
func (c Config) Flags(weight string) map[string]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	cw := "none"
	if c.ClassWeights != nil {
		h := sha256.New()
		for _, v := range c.ClassWeights {
			binary.Write(h, binary.LittleEndian, math.Float32bits(v))
		}
		cw = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	m := map[string]string{"ignore_index": strconv.Itoa(c.IgnoreIndex), "label_smoothing": f(c.Smoothing),
		"z_loss": f(c.ZLoss), "softcap": f(c.Softcap), "class_weights": cw, "weight": weight, "seq_len": strconv.Itoa(c.SeqLen)}
	if c.Temperature != 0 && c.Temperature != 1 { // absent without one: the partials written before it merge with today's
		m["temperature"] = f(c.Temperature)
	}
	if c.TopK != nil { // likewise
		m["topk"] = fmt.Sprint(c.TopK)
	}
	if c.Distill { // likewise
		m["teacher"] = "top-k"
	}
	if c.Shift { // likewise
		m["shift"] = "1"
	}
	if c.ByPosition { // likewise
		m["by_position"] = "1"
	}
	if c.StdErr { // likewise
		m["stderr"] = "1"
	}
	return m
}
