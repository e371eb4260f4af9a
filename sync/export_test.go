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

// SetAfterGroupsRead makes full reads call fn between reading the groups and reading
// the users, for a test that changes the upstream there, and returns a function that
// restores the default.
func SetAfterGroupsRead(fn func()) (restore func()) {
	old := afterGroupsRead
	afterGroupsRead = fn
	return func() { afterGroupsRead = old }
}

// SetRepairByTime turns the re-read of the groups changed during a full read on or off
// (off: as on Active Directory, where a member's rename does not change the group's
// modifyTimestamp), and returns a function that restores the default.
func SetRepairByTime(on bool) (restore func()) {
	old := repairByTime
	repairByTime = on
	return func() { repairByTime = old }
}

// Confidential returns the upstream confidential attributes s has read, lowercased.
func (s *Syncer) Confidential() map[string]bool {
	if m := s.confidential.names.Load(); m != nil {
		return *m
	}
	return nil
}

// SetReleaseGarbage makes full reads of at least n objects call fn when they end instead
// of handing their garbage back, and returns a function that restores the defaults.
func SetReleaseGarbage(n int, fn func()) (restore func()) {
	oldN, oldFn := releaseAfterRead, releaseGarbage
	releaseAfterRead, releaseGarbage = n, fn
	return func() { releaseAfterRead, releaseGarbage = oldN, oldFn }
}
