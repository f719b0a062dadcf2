package client

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// ArchiveLimits bound the archive of a directory sent for a diff; the server refuses more.
type ArchiveLimits struct {
	// MaxCompressed bounds the archive as sent (gzip-compressed tar).
	MaxCompressed int64
	// MaxBytes bounds the files' content, uncompressed.
	MaxBytes int64
	// MaxFiles bounds the number of files.
	MaxFiles int
}

// ErrArchiveTooLarge is an archive past one of its limits.
var ErrArchiveTooLarge = errors.New("directory too large to send")

// Archive makes a gzip-compressed tar of the regular files under dir, named relative to it, for
// Diff. It leaves out .git directories; a symbolic link to a file inside dir is sent as that
// file, and a link that leaves dir, dangles or names a directory is refused, naming it. Past
// lim it stops and returns an error wrapping ErrArchiveTooLarge. Times and owners are not
// sent, so that the same tree gives the same archive.
func Archive(dir string, lim ArchiveLimits) ([]byte, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err = filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("directory %s: %w", dir, err)
	}
	if st, err := os.Stat(root); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	type file struct{ name, path string }
	var files []file
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		name := filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		target := p
		if d.Type()&fs.ModeSymlink != 0 {
			t, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("link %s: %w", name, err)
			}
			if r, err := filepath.Rel(root, t); err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
				return fmt.Errorf("link %s leaves %s", name, dir)
			}
			target = t
		}
		st, err := os.Stat(target)
		if err != nil {
			return err
		}
		switch {
		case st.IsDir():
			return fmt.Errorf("link %s names a directory: only links to files are sent", name)
		case !st.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", name)
		}
		if len(files) >= lim.MaxFiles {
			return fmt.Errorf("more than %d files under %s: %w", lim.MaxFiles, dir, ErrArchiveTooLarge)
		}
		if total += st.Size(); total > lim.MaxBytes {
			return fmt.Errorf("files under %s hold more than %d bytes: %w", dir, lim.MaxBytes, ErrArchiveTooLarge)
		}
		files = append(files, file{name, target})
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("archive %s: %w", f.name, err)
		}
		if _, err := tw.Write(data); err != nil {
			return nil, fmt.Errorf("archive %s: %w", f.name, err)
		}
		if int64(buf.Len()) > lim.MaxCompressed {
			return nil, fmt.Errorf("the archive of %s is larger than %d bytes: %w", dir, lim.MaxCompressed, ErrArchiveTooLarge)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > lim.MaxCompressed {
		return nil, fmt.Errorf("the archive of %s is larger than %d bytes: %w", dir, lim.MaxCompressed, ErrArchiveTooLarge)
	}
	return buf.Bytes(), nil
}
