// Package sops decrypts SOPS-encrypted files of a commit in memory, while it is rendered.
//
// NewFS wraps the commit's fs.FS: a file that SOPS encrypted reads as its plaintext, every
// other file reads as it is. Renderers read through the wrapper without knowing about SOPS, so
// plain manifests, kustomize inputs (resources, secretGenerator files and envs) and Helm values
// files are all decrypted the same way. Keys come only from Keys (the app's age identities):
// nothing is read from the environment or the user's configuration, and nothing decrypted is
// written anywhere but the memory of the FS that decrypted it.
//
// The SOPS file format is read by this package itself, for decrypting only: the stores (YAML,
// JSON, dotenv, INI, binary), the values (AES-256-GCM, bound to their path), the MAC over the
// plaintext and the data key (opened with filippo.io/age; Shamir key groups combined). Linking
// sops' library would link every key service it supports; ferry only needs age.
package sops

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"
)

// MaxEncryptedFileSize bounds a file this package examines for SOPS encryption and decrypts.
// Decrypting holds the file, its parsed tree and its plaintext in memory at once; a SOPS file is
// a few KiB of Secrets or values. A larger file that looks encrypted fails; a larger plain
// file is handed through unexamined, for the reader's own limit to judge.
const MaxEncryptedFileSize = 16 << 20

// decryptFS is one render's view of a commit with SOPS files decrypted.
type decryptFS struct {
	base fs.FS
	keys *Keys

	mu sync.Mutex
	// results holds the outcome for every file that looked encrypted, by path, so a file read
	// twice (a kustomize retry, a base of two overlays) is decrypted once.
	results map[string]*result
	// decrypts counts decryptions, for tests.
	decrypts int
}

// result is the outcome of decrypting one file.
type result struct {
	once      sync.Once
	data      []byte
	encrypted bool
	err       error
}

var (
	_ fs.FS         = (*decryptFS)(nil)
	_ fs.StatFS     = (*decryptFS)(nil)
	_ fs.ReadDirFS  = (*decryptFS)(nil)
	_ fs.ReadFileFS = (*decryptFS)(nil)
)

// NewFS returns fsys with every SOPS-encrypted file reading as its plaintext, decrypted with
// keys. keys may be nil: then reading an encrypted file fails with a *DecryptError saying no
// keys are configured, and every other file reads as it is. Decryption errors are returned by
// Open, Stat, ReadFile and a directory entry's Info as a *fs.PathError wrapping *DecryptError.
// The FS keeps what it decrypted for its lifetime: make one per render.
func NewFS(fsys fs.FS, keys *Keys) fs.FS {
	return &decryptFS{base: fsys, keys: keys, results: map[string]*result{}}
}

// process decrypts data read from name, once per name.
func (d *decryptFS) process(name string, data []byte) ([]byte, bool, error) {
	if !isEncrypted(data) {
		return data, false, nil
	}
	d.mu.Lock()
	r, ok := d.results[name]
	if !ok {
		r = &result{}
		d.results[name] = r
	}
	d.mu.Unlock()
	r.once.Do(func() {
		d.mu.Lock()
		d.decrypts++
		d.mu.Unlock()
		r.data, r.encrypted, r.err = decrypt(name, data, d.keys)
	})
	return r.data, r.encrypted, r.err
}

// Open opens name; a regular file is read whole (up to MaxEncryptedFileSize) and served from
// memory, decrypted if it was encrypted.
func (d *decryptFS) Open(name string) (fs.File, error) {
	f, err := d.base.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		return &dirFile{File: f, fsys: d, name: name}, nil
	}
	if !st.Mode().IsRegular() {
		return f, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxEncryptedFileSize+1))
	if err != nil {
		f.Close()
		return nil, err
	}
	if len(data) > MaxEncryptedFileSize {
		if bytes.Contains(data, encMarker) {
			f.Close()
			return nil, tooLarge(name)
		}
		// Plain and large: hand it through, what was read first.
		return &streamFile{File: f, r: io.MultiReader(bytes.NewReader(data), f)}, nil
	}
	f.Close()
	out, encrypted, err := d.process(name, data)
	if err != nil {
		return nil, err
	}
	if encrypted {
		st = sizedInfo{FileInfo: st, size: int64(len(out))}
	}
	return &memFile{info: st, Reader: bytes.NewReader(out)}, nil
}

// tooLarge is the error of an encrypted file over MaxEncryptedFileSize.
func tooLarge(name string) error {
	return &DecryptError{File: name, Reason: fmt.Sprintf("%s (%d bytes)", reasonTooLarge, MaxEncryptedFileSize)}
}

// ReadFile reads name, decrypted if it was encrypted, through the base's ReadFile when it has one.
func (d *decryptFS) ReadFile(name string) ([]byte, error) {
	rf, ok := d.base.(fs.ReadFileFS)
	if !ok {
		return readAll(d, name)
	}
	data, err := rf.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if len(data) > MaxEncryptedFileSize {
		if bytes.Contains(data, encMarker) {
			return nil, tooLarge(name)
		}
		return data, nil
	}
	out, encrypted, err := d.process(name, data)
	if err != nil {
		return nil, err
	}
	if encrypted {
		return bytes.Clone(out), nil // the caller may change it; the cached copy must not
	}
	return data, nil
}

// readAll reads a whole file through Open.
func readAll(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// Stat describes name; a decrypted file's size is its plaintext's. A file that fails to
// decrypt still exists: Stat describes it as stored and leaves the error to whoever reads it
// (renderers test existence with Stat and must not take it for a missing file).
func (d *decryptFS) Stat(name string) (fs.FileInfo, error) {
	st, err := fs.Stat(d.base, name)
	if err != nil || !st.Mode().IsRegular() {
		return st, err
	}
	f, err := d.Open(name)
	if errors.Is(err, ErrDecrypt) {
		return st, nil
	} else if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// ReadDir lists name; its entries' Info reports decrypted sizes.
func (d *decryptFS) ReadDir(name string) ([]fs.DirEntry, error) {
	entries, err := fs.ReadDir(d.base, name)
	return d.wrapEntries(name, entries), err
}

func (d *decryptFS) wrapEntries(dir string, entries []fs.DirEntry) []fs.DirEntry {
	for i, e := range entries {
		if e.Type().IsRegular() {
			entries[i] = dirEntry{DirEntry: e, fsys: d, name: joinPath(dir, e.Name())}
		}
	}
	return entries
}

// joinPath joins an fs.FS directory and a name.
func joinPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

// memFile is a regular file served from memory.
type memFile struct {
	info fs.FileInfo
	*bytes.Reader
}

func (f *memFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *memFile) Close() error               { return nil }

// streamFile is a large plain file handed through: what was read to examine it, then the rest.
type streamFile struct {
	fs.File
	r io.Reader
}

func (f *streamFile) Read(p []byte) (int, error) { return f.r.Read(p) }

// dirFile is an open directory whose entries report decrypted sizes.
type dirFile struct {
	fs.File
	fsys *decryptFS
	name string
}

// ReadDir lists the directory, as fs.ReadDirFile asks.
func (f *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rd, ok := f.File.(fs.ReadDirFile)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: fs.ErrInvalid}
	}
	entries, err := rd.ReadDir(n)
	return f.fsys.wrapEntries(f.name, entries), err
}

// dirEntry is a regular file's entry; Info stats it through the decrypting FS.
type dirEntry struct {
	fs.DirEntry
	fsys *decryptFS
	name string
}

func (e dirEntry) Info() (fs.FileInfo, error) { return e.fsys.Stat(e.name) }

// sizedInfo is a file's info with the size of its plaintext.
type sizedInfo struct {
	fs.FileInfo
	size int64
}

func (i sizedInfo) Size() int64        { return i.size }
func (i sizedInfo) ModTime() time.Time { return i.FileInfo.ModTime() }
