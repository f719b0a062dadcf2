package source

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage"
)

// MaxFetchBytes bounds the pack data one fetch receives. The cache holds what it receives on
// disk, but indexing a pack reads each object whole into memory, so a commit carrying large
// files (inside an app or not) costs memory in proportion; past this the fetch is refused. A
// fetch is incremental, so this bounds what one push or pull request adds, and the first fetch of
// a repository's branches.
const MaxFetchBytes = 256 << 20

// tmpPackPattern matches the pack a fetch was writing when it stopped; go-git leaves it behind.
const tmpPackPattern = "tmp_pack_*"

// boundedStorer is the cache's storage as a fetch sees it: the pack it writes may not exceed
// limit bytes.
type boundedStorer struct {
	storage.Storer
	limit int64
}

// PackfileWriter hands out the storage's pack writer, counting what goes through it.
func (s boundedStorer) PackfileWriter() (io.WriteCloser, error) {
	pw, ok := s.Storer.(storer.PackfileWriter)
	if !ok {
		return nil, fmt.Errorf("git cache: the storage cannot write packs")
	}
	w, err := pw.PackfileWriter()
	if err != nil {
		return nil, err
	}
	return &limitedWriter{WriteCloser: w, limit: s.limit, left: s.limit}, nil
}

var _ storer.PackfileWriter = boundedStorer{}

// limitedWriter fails the write that would go past its limit, before writing any of it.
type limitedWriter struct {
	io.WriteCloser
	limit, left int64
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > w.left {
		return 0, fmt.Errorf("the remote sends more than MaxFetchBytes (%d KiB): %w", w.limit>>10, ErrFetchTooLarge)
	}
	w.left -= int64(len(p))
	return w.WriteCloser.Write(p)
}

// removePartialPacks deletes what a stopped fetch left in the repository's pack directory, so a
// refused fetch costs no disk. The caller holds the repository's lock.
func removePartialPacks(dir string) error {
	parts, err := filepath.Glob(filepath.Join(dir, "objects", "pack", tmpPackPattern))
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}
