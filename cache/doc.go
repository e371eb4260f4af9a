// Package cache is the store of synced users and groups: a Badger database
// on disk, and its last committed state held in memory as an immutable
// Snapshot that the proxy answers searches from.
//
// The syncer writes one run at a time:
//
//	w, err := store.BeginSync(cache.KindUsers, cache.KindGroups)
//	defer w.Abort() // does nothing after Commit
//	for ... { err = w.PutUser(u) }
//	for ... { err = w.PutGroup(g) }
//	w.SetStatus(st)
//	err = w.Commit()
//
// and readers take store.Snapshot(), which never shows part of a run.
//
// # Atomicity without one big transaction
//
// A first sync of 100,000 users is far more than a Badger transaction may
// hold (ErrTxnTooBig), so a run is written in many batches and made to count
// by one small transaction at the end. Object records are versioned by the
// generation of the run that wrote them, in the key:
//
//	u/<id> 0x00 <generation, 8 bytes big-endian>  → encoded user (empty: deleted)
//	g/<id> 0x00 <generation>                      → encoded group
//	m/generation                                  → the last committed generation
//	s/<kind>                                      → last status of the kind (JSON)
//
// A run with generation N+1 streams the objects that changed, and deletion
// markers (empty values) for objects that disappeared, under generation N+1
// with a WriteBatch, while m/generation still says N: anything that reads the
// records counts only the highest version not above m/generation, so the new
// records do not count yet. Commit flushes the batch, syncs it to disk, and
// then sets m/generation to N+1 (with the statuses) in one transaction —
// that write is the commit point. Afterwards it swaps the in-memory snapshot
// and deletes what no longer counts: the versions replaced and the deletion
// markers with the versions they hide.
//
// An interrupted run, whether aborted, failed or killed, leaves records above
// m/generation: Abort deletes them at once, and Open deletes whatever it finds
// (along with superseded versions a crash after the commit point left). So
// after a kill -9 at any moment the store reopens as either the previous or
// the new state, never a mixture; the crash test in this package checks it.
// Each changed object is written once — there is no journal to replay.
//
// # Incremental
//
// Each Put is encoded (deterministically: attributes in name order, id lists
// sorted) and compared with the encoding of the stored version; an equal
// object costs no write, so a run in which nothing changed writes only
// m/generation and the statuses.
//
// # Reading
//
// The Snapshot holds every object in its encoded form (a third of the memory
// of decoded Go maps; each lookup decodes a fresh copy in about a
// microsecond), with maps by ID, normalised DN (NormalizeDN), served path and
// lower-case user name, and the reverse membership. Open builds it from
// Badger, so a restarted proxy answers at once, before any upstream is
// reached. Commit builds the next one from the previous snapshot and the
// run's objects, without reading Badger, and swaps it in with an atomic
// pointer; a kind the run did not change keeps the previous indexes.
//
// # The credential cache
//
// Keys under "c/" belong to the credential cache (bind.cache_passwords,
// credentials.go): c/<user ID> for a synced user's hash, which it checks
// against User.PasswordMarker, User.Account and the deletions and
// deactivations a commit applies; c/ 0x00 <normalised DN> for an identity
// that is no synced user.
package cache
