package batch

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error returned for bad input wraps one of them.
var (
	ErrTarget = errors.New("batch: target out of bounds")
	ErrShape  = errors.New("batch: shape mismatch")
	ErrOption = errors.New("batch: invalid option")
	ErrBuffer = errors.New("batch: bad buffer")
)

// TargetError is the error for a target that is neither in [0, Cols) nor
// the ignore index: errors.As gives the row and the value, and it matches
// ErrTarget with errors.Is.
type TargetError struct {
	Row    int   // the row whose target it is
	Target int32 // the target
	Cols   int   // the number of classes
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("batch: target %d out of bounds [0, %d) at row %d", e.Target, e.Cols, e.Row)
}

// Unwrap returns ErrTarget.
func (e *TargetError) Unwrap() error { return ErrTarget }

// inputError is an error whose message is the full sentence and which
// matches its sentinel with errors.Is.
type inputError struct {
	kind error
	msg  string
}

func (e *inputError) Error() string { return e.msg }
func (e *inputError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &inputError{kind: kind, msg: "batch: " + fmt.Sprintf(format, args...)}
}
