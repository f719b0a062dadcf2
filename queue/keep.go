package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bounds on what one sync record may hold. A record is one message in the record bucket, and
// NATS refuses messages over its max_payload (1 MiB by default): a record that does not fit
// would be lost and its sync shown running for good.
const (
	// MaxRecordBytes is the largest encoded record stored. A larger one has its diff cut first
	// (the whole diff goes to the diff store), then its object list.
	MaxRecordBytes = 256 << 10
	// MaxDiffBytes bounds the whole diff kept in the diff store for one preview; past it the
	// diff is kept cut only, and the record says so.
	MaxDiffBytes = 32 << 20
	// DiffStoreBytes bounds the diff store; whole diffs are deleted with their records, when
	// these fall off their app's history.
	DiffStoreBytes = 1 << 30
	// EvictedKeep is how long the short account of a sync outlives its record (which its app's
	// history drops after HistoryLength newer syncs), so that the link of a commit status still
	// says what happened however many syncs came after it.
	EvictedKeep = 30 * 24 * time.Hour
	// EvictedBytes bounds those accounts (a few hundred bytes each); the oldest go first.
	EvictedBytes = 64 << 20
)

const (
	// DiffBucket is the JetStream object store holding the whole diffs of cut records.
	DiffBucket = "ferry_diffs"
	// EvictedBucket is the key-value bucket holding the accounts of evicted records.
	EvictedBucket = "ferry_syncs_evicted"
)

// diffCutNote ends a diff that was cut to fit its record.
const diffCutNote = "\n… diff cut to fit the sync record; the whole diff is on the sync's page\n"

// openKeep creates or opens the diff store and the bucket of evicted records' accounts.
func (s *Records) openKeep(ctx context.Context, js jetstream.JetStream, replicas int) error {
	diffs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      DiffBucket,
		Description: "ferry: whole diffs of previews too large for their sync record",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxBytes:    DiffStoreBytes,
	})
	if err != nil {
		return fmt.Errorf("create object store %s: %w", DiffBucket, err)
	}
	evicted, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      EvictedBucket,
		Description: "ferry: what syncs evicted from their app's history did",
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		History:     1,
		TTL:         EvictedKeep,
		MaxBytes:    EvictedBytes,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", EvictedBucket, err)
	}
	// A full bucket drops its oldest accounts rather than refusing new ones.
	stream, err := js.Stream(ctx, "KV_"+EvictedBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", EvictedBucket, err)
	}
	if cfg := stream.CachedInfo().Config; cfg.Discard != jetstream.DiscardOld {
		cfg.Discard = jetstream.DiscardOld
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: discard old: %w", EvictedBucket, err)
		}
	}
	s.diffs, s.evicted = diffs, evicted
	return nil
}

// encode makes r one message of at most MaxRecordBytes: a diff over the bound is stored whole
// in the diff store and cut in the record, then objects are left out (counted in ObjectsCut).
func (s *Records) encode(ctx context.Context, r Record) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode sync record %s: %w", r.ID, err)
	}
	if len(data) <= MaxRecordBytes {
		return data, nil
	}
	if r.Diff != "" && !r.DiffCut {
		full := r.Diff
		if len(full) > MaxDiffBytes {
			full = full[:MaxDiffBytes]
		}
		if _, err := s.diffs.PutBytes(ctx, r.ID, []byte(full)); err != nil {
			// The record must be stored whatever happens to its diff.
			r.Message += " (the whole diff could not be kept: " + err.Error() + ")"
		}
		keep := max(MaxRecordBytes/2-len(diffCutNote), 0)
		r.Diff, r.DiffCut = cutUTF8(r.Diff, keep)+diffCutNote, true
		if data, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("encode sync record %s: %w", r.ID, err)
		}
	}
	for len(data) > MaxRecordBytes && len(r.Objects) > 0 {
		n := len(r.Objects) / 2
		r.ObjectsCut += len(r.Objects) - n
		r.Objects = r.Objects[:n]
		if data, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("encode sync record %s: %w", r.ID, err)
		}
	}
	if len(data) > MaxRecordBytes {
		// Only a message or error of hundreds of kilobytes is left: cut those too.
		r.Message = cutUTF8(r.Message, 4<<10)
		if r.Error != nil {
			e := *r.Error
			e.Message = cutUTF8(e.Message, 4<<10)
			r.Error = &e
		}
		if data, err = json.Marshal(r); err != nil {
			return nil, fmt.Errorf("encode sync record %s: %w", r.ID, err)
		}
	}
	return data, nil
}

// cutUTF8 returns at most n bytes of s, not splitting a character.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// FullDiff returns the whole diff of a sync whose record has DiffCut set.
func (s *Records) FullDiff(ctx context.Context, id string) ([]byte, error) {
	if !validID(id) {
		return nil, fmt.Errorf("sync %q: %w", id, ErrNotFound)
	}
	data, err := s.diffs.GetBytes(ctx, id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, fmt.Errorf("diff of sync %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read diff of sync %s: %w", id, err)
	}
	return data, nil
}

// evict deletes a record that fell off its app's history, keeping a short account of it (for
// EvictedKeep) and deleting its whole diff. Failures cost only that account.
func (s *Records) evict(ctx context.Context, id string) {
	if e, err := s.kv.Get(ctx, syncKey(id)); err == nil {
		var r Record
		if json.Unmarshal(e.Value(), &r) == nil {
			if r.DiffCut {
				_ = s.diffs.Delete(ctx, id)
			}
			r.Objects, r.Diff, r.DiffCut, r.ObjectsCut, r.Phases, r.Evicted = nil, "", false, 0, nil, true
			if data, err := json.Marshal(r); err == nil && len(data) <= MaxRecordBytes {
				_, _ = s.evicted.Put(ctx, syncKey(id), data)
			}
		}
	}
	_ = s.kv.Delete(ctx, syncKey(id))
}

// evictedRecord returns the account of an evicted sync, or ErrNotFound.
func (s *Records) evictedRecord(ctx context.Context, id string) (Record, error) {
	var r Record
	e, err := s.evicted.Get(ctx, syncKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, fmt.Errorf("sync %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("read sync %s: %w", id, err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, fmt.Errorf("decode sync %s: %w", id, err)
	}
	return r, nil
}
