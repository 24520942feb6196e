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
	// ErrTeacher is matched by every error about a teacher's data
	// (TeacherError, see Distill).
	ErrTeacher = errors.New("batch: bad teacher data")
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

// TeacherError is the error for a teacher's entry (Distill) that is not a
// distribution's: errors.As gives the row, the position in it and what
// is wrong; it matches ErrTeacher with errors.Is.
type TeacherError struct {
	Row, Pos int    // the row and the position of the entry among its K (-1: the row's)
	Msg      string // what is wrong
}

func (e *TeacherError) Error() string {
	if e.Pos < 0 {
		return fmt.Sprintf("batch: teacher row %d: %s", e.Row, e.Msg)
	}
	return fmt.Sprintf("batch: teacher row %d, entry %d: %s", e.Row, e.Pos, e.Msg)
}

// Unwrap returns ErrTeacher.
func (e *TeacherError) Unwrap() error { return ErrTeacher }
