// Package audit keeps snapforge's audit trail: an append-only, hash-chained
// log of who did what to the repository, with what outcome.
//
// It owns two files in one directory and nothing else:
//
//	audit.jsonl  one JSON event per line, oldest first
//	HEAD         {"seq":n,"hash":"blake3:…"}: the newest line, replaced atomically
//
// It must never import snapforge/snapshot (or any other snapforge package):
// the engine writes manifests that carry this package's Head, not the reverse.
//
// # Line format and hashing
//
// Each line is a JSON object with the fields of Event in this order: seq, time,
// actor, op, params (omitted when empty), outcome, prev, hash. The hash is
// BLAKE3-256 over the exact bytes of the line before its final field, that is
// everything up to (not including) `,"hash":"`. Prev is the hash of the line
// before it ("" for seq 1). Append therefore:
//
//	prefix := json(event without hash) minus its closing "}"
//	line   := prefix + `,"hash":"blake3:` + hex(BLAKE3(prefix)) + `"}` + "\n"
//	write(line) in one call; fsync the file; write HEAD (temp, fsync, rename, fsync dir)
//
// Verify recomputes each hash from the raw bytes of the line and never
// re-marshals, so a line stays verifiable whatever the JSON library does later.
//
// Lines are encoded with HTML escaping off and control characters escaped, so
// a value containing "\n{\"seq\":99,…}" stays inside its string and cannot
// start a line of its own. encoding/json silently replaces invalid UTF-8 with
// U+FFFD, which would merge distinct file names: callers must pass every file
// name through Escape before putting it into Params.
//
// # Crashes
//
// A crash can leave exactly two benign states, which are told apart from
// tampering:
//
//   - a torn tail: bytes after the last newline (the write of the newest line
//     did not finish). Verify reports Report.TornTail, "incomplete trailing
//     record at seq n", not a problem. Open truncates those bytes and appends a
//     recovered_torn_tail event recording their length, BLAKE3 and first bytes.
//   - a stale HEAD: the newest line is durable but HEAD still names the line
//     before it (the crash hit between the line's fsync and HEAD's rename).
//     Verify reports Report.StaleHead, not a problem; Open rewrites HEAD.
//
// Because HEAD is only written after the line is durable, a HEAD that is ahead
// of the file can never come from a crash: it means the tail was cut.
//
// # Damage and Open
//
// Open refuses a trail that has any other problem (a hash mismatch, a chain
// break, a gap, a duplicate, a reordered or unparsable line, a HEAD that does
// not match): it returns a *DamageError holding the Report, and writes
// nothing. Appending would either overwrite evidence (HEAD) or bury the damage
// under new lines, and the operator must learn of it. Acknowledge is the way
// out: it appends an acknowledged_damage event that lists the problems,
// continues the chain from the last parsable line and rewrites HEAD; Open then
// accepts problems on lines up to that event. Verify keeps reporting them
// (with Report.AckLine set): acknowledging records that damage was seen, it
// never hides it.
//
// # What the chain proves, and what it does not
//
// The chain is unkeyed. It detects an edited, deleted, duplicated, reordered
// or inserted line, and a torn or cut tail when HEAD was left alone. It does
// NOT detect an attacker who can write the directory and rewrites the trail
// consistently: truncating the last lines and rewriting HEAD to match, or
// editing a line and recomputing every later hash and HEAD. Anyone can compute
// BLAKE3; there is no secret. Such rewrites are caught only by comparing the
// trail with heads recorded elsewhere: every snapshot manifest carries the
// audit head current when it was written (audit_head), exports carry one too,
// and the user can keep a copy of HEAD off the machine. Pass them to Verify as
// Anchors. A rewrite that reaches back before the oldest anchor, in a trail
// whose anchors were all rewritten too, remains undetectable; a keyed (HMAC)
// chain with the key kept off the machine would be needed for that.
//
// # Concurrency
//
// A Log is safe for concurrent use. Open takes an exclusive flock on
// audit.jsonl for the Log's lifetime, so a second Open of the same directory,
// in this process or another, fails with ErrLocked. Verify, ReadAll and
// ReadHead take no lock and may run while a Log appends; an append in flight
// then shows up as a torn tail or a stale HEAD, never as a problem.
package audit
