package cpu

// from returns s[n:], nil for a nil s: the view of a matrix's storage
// that starts n elements on, whichever of its two slices it uses.
func from[T any](s []T, n int) []T {
	if s == nil {
		return nil
	}
	return s[n:]
}
