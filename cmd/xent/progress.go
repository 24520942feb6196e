package main

import (
	"io"
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a row-count progress bar on stderr when stderr is a terminal,
// and nothing otherwise.
type progress struct{ bar *progressbar.ProgressBar }

func newProgress(w io.Writer, total int64) progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return progress{}
	}
	return progress{bar: progressbar.NewOptions64(total, progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("rows"), progressbar.OptionShowCount(), progressbar.OptionThrottle(100e6),
		progressbar.OptionClearOnFinish())}
}

func (p progress) add(n int64) {
	if p.bar != nil {
		p.bar.Add64(n)
	}
}

func (p progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
