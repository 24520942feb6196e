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
