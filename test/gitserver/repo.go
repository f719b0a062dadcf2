package gitserver

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// commitEpoch is the date of a repository's first commit; each later commit is one minute
// after the one before, so the same sequence of commits always yields the same shas.
var commitEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Repo is one served bare repository plus a private work tree that the test commits from.
// Pushes go from the work tree to the bare repository on disk, not over HTTP, so they never
// show in Server.Requests. Its methods are safe for concurrent use.
type Repo struct {
	s    *Server
	name string
	bare string
	work string

	mu      sync.Mutex
	commits int
}

// CloneURL is where clients fetch the repository: http://127.0.0.1:port/<name>.git.
func (r *Repo) CloneURL() string { return r.s.url + "/" + r.name + ".git" }

// Commit writes files (slash-separated path → content) on branch, commits, pushes and returns
// the new commit's sha. A branch that does not exist yet starts at main's head.
func (r *Repo) Commit(t TB, branch, message string, files map[string]string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	sha := r.commitLocked(t, branch, message, func() { r.writeFiles(t, files) })
	r.pushLocked(t, branch)
	return sha
}

// CommitLocal is Commit without the push: the commit exists only in the work tree until Push,
// which is how a test plays a webhook that arrives before its commit can be fetched.
func (r *Repo) CommitLocal(t TB, branch, message string, files map[string]string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitLocked(t, branch, message, func() { r.writeFiles(t, files) })
}

// Remove deletes paths (files or directories) on branch, commits, pushes and returns the sha.
func (r *Repo) Remove(t TB, branch, message string, paths ...string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	sha := r.commitLocked(t, branch, message, func() {
		r.git(t, r.work, append([]string{"rm", "-r", "-q", "--"}, paths...)...)
	})
	r.pushLocked(t, branch)
	return sha
}

// Symlink adds a symbolic link at path pointing to target (stored verbatim, as git does) on
// branch, commits, pushes and returns the sha: the way to test links that stay in the
// repository and links that leave it.
func (r *Repo) Symlink(t TB, branch, path, target string) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	sha := r.commitLocked(t, branch, "link "+path, func() {
		p := r.workPath(t, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
	})
	r.pushLocked(t, branch)
	return sha
}

// Push publishes branch's local commits, making a CommitLocal visible to clients.
func (r *Repo) Push(t TB, branch string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pushLocked(t, branch)
}

// PushRef points ref (refs/pull/7/head, refs/merge-requests/7/head) at sha on the server, the
// way a forge publishes a pull request's head outside refs/heads.
func (r *Repo) PushRef(t TB, ref, sha string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.git(t, r.work, "push", "-q", "-f", "origin", sha+":"+ref)
}

// Tag creates the annotated tag name on sha and pushes it: releases are followed by tag, and
// an annotated tag is an object of its own that clients must peel to reach the commit.
func (r *Repo) Tag(t TB, name, sha string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commits++
	r.gitEnv(t, r.work, []string{"GIT_COMMITTER_DATE=" + r.dateLocked()}, "tag", "-a", "-m", "release "+name, name, sha)
	r.git(t, r.work, "push", "-q", "origin", "refs/tags/"+name)
}

// DeleteRef removes ref from the server, as a forge does when a branch or pull request goes.
func (r *Repo) DeleteRef(t TB, ref string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.git(t, r.work, "push", "-q", "origin", ":"+ref)
}

// Head is the sha branch (or a full ref name) points at on the server: what clients see,
// not the work tree's unpushed commits.
func (r *Repo) Head(t TB, branch string) string {
	t.Helper()
	ref := branch
	if !strings.HasPrefix(ref, "refs/") {
		ref = "refs/heads/" + branch
	}
	return r.git(t, r.bare, "rev-parse", "--verify", "-q", ref+"^{commit}")
}

// commitLocked switches to branch, lets change edit the work tree, and commits everything
// with the next deterministic date.
func (r *Repo) commitLocked(t TB, branch, message string, change func()) string {
	t.Helper()
	r.checkout(t, branch)
	change()
	r.git(t, r.work, "add", "-A")
	r.commits++
	date := r.dateLocked()
	r.gitEnv(t, r.work, []string{"GIT_AUTHOR_DATE=" + date, "GIT_COMMITTER_DATE=" + date},
		"commit", "-q", "--allow-empty", "--no-verify", "-m", message)
	return r.git(t, r.work, "rev-parse", "HEAD")
}

// dateLocked is the deterministic date of the latest commit or tag, in git's format.
func (r *Repo) dateLocked() string {
	return fmt.Sprintf("@%d +0000", commitEpoch.Add(time.Duration(r.commits)*time.Minute).Unix())
}

func (r *Repo) pushLocked(t TB, branch string) {
	t.Helper()
	r.git(t, r.work, "push", "-q", "origin", "refs/heads/"+branch+":refs/heads/"+branch)
}

// writeFiles writes files in a stable order, creating their directories.
func (r *Repo) writeFiles(t TB, files map[string]string) {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := r.workPath(t, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatalf("gitserver: %v", err)
		}
	}
}

// workPath maps a repository path into the work tree, refusing paths that would land outside.
func (r *Repo) workPath(t TB, name string) string {
	t.Helper()
	clean := filepath.Clean(filepath.FromSlash(name))
	if name == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) || clean == ".git" ||
		strings.HasPrefix(clean, ".git"+string(filepath.Separator)) {
		t.Fatalf("gitserver: path %q is not inside the repository", name)
	}
	return filepath.Join(r.work, clean)
}

// checkout switches the work tree to branch. A new branch starts at main's head, or unborn
// when main has no commits yet.
func (r *Repo) checkout(t TB, branch string) {
	t.Helper()
	if cur, _ := r.run(r.work, nil, "symbolic-ref", "--short", "HEAD"); cur == branch {
		return
	}
	if _, err := r.run(r.work, nil, "rev-parse", "--verify", "-q", "refs/heads/"+branch); err == nil {
		r.git(t, r.work, "checkout", "-q", branch)
		return
	}
	if _, err := r.run(r.work, nil, "rev-parse", "--verify", "-q", "refs/heads/main"); err == nil {
		r.git(t, r.work, "checkout", "-q", "-b", branch, "main")
		return
	}
	r.git(t, r.work, "symbolic-ref", "HEAD", "refs/heads/"+branch)
}

func (r *Repo) git(t TB, dir string, args ...string) string {
	t.Helper()
	return r.gitEnv(t, dir, nil, args...)
}

func (r *Repo) gitEnv(t TB, dir string, env []string, args ...string) string {
	t.Helper()
	out, err := r.run(dir, env, args...)
	if err != nil {
		t.Fatalf("gitserver: git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// run runs git with a fixed identity and no system or user configuration, so nothing on the
// machine changes what a commit holds, and with a time limit.
func (r *Repo) run(dir string, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.s.gitPath, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{
		"HOME=" + r.s.home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C",
		"GIT_AUTHOR_NAME=ferry test", "GIT_AUTHOR_EMAIL=test@ferry.invalid",
		"GIT_COMMITTER_NAME=ferry test", "GIT_COMMITTER_EMAIL=test@ferry.invalid",
	}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
