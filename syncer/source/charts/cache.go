package charts

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// cache keeps chart archives on disk, one file per content digest, and a small record per exact
// version fetched (which digest it resolved to), so that an exact version already fetched can be
// served while its source is unreachable. Files are written to a temporary name and renamed, so a
// reader never sees half an archive; an archive whose content no longer matches its name is
// discarded and fetched again.
type cache struct {
	dir string
}

// archivePath is where the archive with digest ("sha256:<hex>") lives.
func (c cache) archivePath(digest string) (string, bool) {
	hexd, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexd) != sha256.Size*2 {
		return "", false
	}
	if _, err := hex.DecodeString(hexd); err != nil {
		return "", false
	}
	return filepath.Join(c.dir, "sha256-"+strings.ToLower(hexd)+".tgz"), true
}

// get returns the cached archive with digest, or nil when there is none (or it is damaged, in
// which case it is removed).
func (c cache) get(digest string) ([]byte, error) {
	p, ok := c.archivePath(digest)
	if !ok {
		return nil, nil
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cached chart %s: %w", p, err)
	}
	if digestOf(data) != strings.ToLower(digest) {
		_ = os.Remove(p)
		return nil, nil
	}
	return data, nil
}

// put stores archive under its digest.
func (c cache) put(digest string, archive []byte) error {
	p, ok := c.archivePath(digest)
	if !ok {
		return fmt.Errorf("cache chart: malformed digest %q", digest)
	}
	return writeAtomic(p, archive)
}

// record is what an exact version resolved to the last time it was fetched.
type record struct {
	Ref     string `json:"ref"`
	Version string `json:"version"`
	Digest  string `json:"digest"`
}

func (c cache) recordPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(c.dir, "refs", hex.EncodeToString(sum[:])+".json")
}

// lookup returns the record stored under key, if any.
func (c cache) lookup(key string) (record, bool) {
	data, err := os.ReadFile(c.recordPath(key))
	if err != nil {
		return record{}, false
	}
	var r record
	if json.Unmarshal(data, &r) != nil || r.Digest == "" {
		return record{}, false
	}
	return r, true
}

// remember stores r under key.
func (c cache) remember(key string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeAtomic(c.recordPath(key), data)
}

func writeAtomic(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("chart cache: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-*")
	if err != nil {
		return fmt.Errorf("chart cache: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("chart cache: write %s: %w", p, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("chart cache: %w", err)
	}
	return nil
}

// digestOf returns "sha256:<hex>" of data.
func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
