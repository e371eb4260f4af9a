package sync

// SetProgressEntries makes long reads log their progress every n entries, for a test,
// and returns a function that restores the default.
func SetProgressEntries(n int) (restore func()) {
	old := progressEntries
	progressEntries = n
	return func() { progressEntries = old }
}

// Thousands is thousands, for the tests.
var Thousands = thousands
