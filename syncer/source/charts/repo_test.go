package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/test/chartrepo"
	repo "helm.sh/helm/v4/pkg/repo/v1"
)

func newFetcher(t *testing.T) *Fetcher {
	t.Helper()
	return NewFetcher(t.TempDir(), &http.Client{Timeout: 10 * time.Second})
}

// wantErr checks that err is an *Error of the given kind whose message names ref.
func wantErr(t *testing.T, err error, transient bool, cause error, ref string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Fetch succeeded, want an error naming %s", ref)
	}
	t.Logf("error: %v", err)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *charts.Error", err, err)
	}
	if IsTransient(err) != transient {
		t.Errorf("IsTransient(%v) = %t, want %t", err, IsTransient(err), transient)
	}
	if cause != nil && !errors.Is(err, cause) {
		t.Errorf("error %v is not %v", err, cause)
	}
	if !strings.Contains(err.Error(), ref) {
		t.Errorf("error %q does not name %q", err, ref)
	}
}

func TestRepoResolvesVersions(t *testing.T) {
	for _, absolute := range []bool{false, true} {
		t.Run(fmt.Sprintf("absoluteURLs=%t", absolute), func(t *testing.T) {
			srv := chartrepo.Start(t, chartrepo.Options{AbsoluteURLs: absolute})
			archives := map[string][]byte{}
			for _, v := range []string{"1.0.0", "1.2.0", "1.3.0-rc.1", "2.0.0"} {
				archives[v] = srv.AddChart(t, "hello", v)
			}
			f := newFetcher(t)
			for _, tc := range []struct{ ask, want string }{
				{"1.0.0", "1.0.0"},
				{"v1.2.0", "1.2.0"},
				{">=1.1 <2", "1.2.0"},
				{"1.x", "1.2.0"},
				{">=1.3.0-0 <2", "1.3.0-rc.1"},
				{"", "2.0.0"},
			} {
				ch, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: tc.ask}, nil)
				if err != nil {
					t.Fatalf("Fetch(%q): %v", tc.ask, err)
				}
				if ch.Version != tc.want {
					t.Errorf("Fetch(%q) resolved %s, want %s", tc.ask, ch.Version, tc.want)
				}
				if !bytes.Equal(ch.Archive, archives[tc.want]) {
					t.Errorf("Fetch(%q) returned another archive than the one served for %s", tc.ask, tc.want)
				}
				if ch.Digest != digestOf(archives[tc.want]) {
					t.Errorf("Fetch(%q).Digest = %s, want %s", tc.ask, ch.Digest, digestOf(archives[tc.want]))
				}
				if want := srv.URL + "/ hello@" + tc.want; ch.Ref != want {
					t.Errorf("Fetch(%q).Ref = %q, want %q", tc.ask, ch.Ref, want)
				}
				if ch.Offline {
					t.Errorf("Fetch(%q) is Offline with the repository up", tc.ask)
				}
			}
		})
	}
}

func TestRepoCacheAndOffline(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	archive := srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	ref := Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}
	for range 3 {
		ch, err := f.Fetch(t.Context(), ref, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ch.Archive, archive) {
			t.Fatal("cached archive differs from the one served")
		}
	}
	if n := srv.Requests("hello-1.0.0.tgz"); n != 1 {
		t.Errorf("archive downloaded %d times, want 1 (then from the cache)", n)
	}
	if n := srv.Requests("index.yaml"); n != 3 {
		t.Errorf("index fetched %d times, want 3 (every fetch resolves)", n)
	}

	// A second Fetcher on the same directory finds the archive on disk.
	g := NewFetcher(f.cache.dir, &http.Client{Timeout: 10 * time.Second})
	if _, err := g.Fetch(t.Context(), ref, nil); err != nil {
		t.Fatal(err)
	}
	if n := srv.Requests("hello-1.0.0.tgz"); n != 1 {
		t.Errorf("archive downloaded %d times after a restart, want 1", n)
	}

	srv.Close()
	ch, err := f.Fetch(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("exact version fetched before, repository down: %v", err)
	}
	if !ch.Offline || ch.Digest != digestOf(archive) || ch.Version != "1.0.0" || !bytes.Equal(ch.Archive, archive) {
		t.Errorf("offline fetch = {Offline:%t Digest:%s Version:%s}, want the cached 1.0.0", ch.Offline, ch.Digest, ch.Version)
	}
	// A constraint cannot be resolved without the index, and other credentials do not see the record.
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.x"}, nil)
	wantErr(t, err, true, nil, srv.URL+"/ hello")
	_, err = f.Fetch(t.Context(), ref, &Credentials{Username: "other", Password: "pw"})
	wantErr(t, err, true, nil, srv.URL+"/ hello@1.0.0")
}

func TestRepoConcurrentFetchesDownloadOnce(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	archive := srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			ch, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
			if err == nil && ch.Digest != digestOf(archive) {
				err = fmt.Errorf("digest %s", ch.Digest)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Requests("hello-1.0.0.tgz"); n != 1 {
		t.Errorf("archive downloaded %d times by 8 concurrent fetches, want 1", n)
	}
}

func TestRepoTransientThenSuccess(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	ref := Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}
	srv.FailNext(1, http.StatusServiceUnavailable)
	_, err := f.Fetch(t.Context(), ref, nil)
	wantErr(t, err, true, nil, srv.URL+"/ hello@1.0.0")
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not say 503", err)
	}
	ch, err := f.Fetch(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("retry after 503: %v", err)
	}
	if ch.Version != "1.0.0" {
		t.Errorf("version %s", ch.Version)
	}
	srv.FailNext(1, http.StatusTooManyRequests)
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello"}, nil)
	wantErr(t, err, true, nil, srv.URL+"/ hello")
}

func TestRepoPermanentErrors(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0", "1.5.0", "2.0.0-rc.1"} {
		srv.AddChart(t, "hello", v)
	}
	f := newFetcher(t)

	_, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "9.9.9"}, nil)
	wantErr(t, err, false, ErrVersionNotFound, srv.URL+"/ hello@9.9.9")
	if !strings.Contains(err.Error(), "available: 2.0.0-rc.1, 1.5.0, 1.4.0, 1.3.0, 1.2.0 and 2 more") {
		t.Errorf("error %q does not list the newest versions", err)
	}
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: ">=3"}, nil)
	wantErr(t, err, false, ErrVersionNotFound, `hello (version ">=3")`)
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "nope", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrVersionNotFound, srv.URL+"/ nope@1.0.0")
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: ">=1 <<2"}, nil)
	wantErr(t, err, false, ErrBadRef, srv.URL+"/ hello")
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL + "/missing", Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, false, nil, "/missing/ hello@1.0.0")
	if !strings.Contains(err.Error(), "404") {
		t.Errorf("error %q does not say 404", err)
	}

	// Credentials in the URL are refused without being repeated.
	_, err = f.Fetch(t.Context(), Ref{RepoURL: strings.Replace(srv.URL, "http://", "http://bob:s3cret@", 1), Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrBadRef, "hello@1.0.0")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error %q shows the password", err)
	}
}

func TestRepoDigestMismatch(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	srv.AddChart(t, "hello", "1.0.0")
	other := srv.AddChart(t, "hello", "1.1.0")
	srv.EditIndex(t, func(idx *repo.IndexFile) {
		for _, e := range idx.Entries["hello"] {
			if e.Version == "1.0.0" {
				e.Digest = strings.TrimPrefix(digestOf(other), "sha256:")
			}
		}
	})
	f := newFetcher(t)
	_, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrDigestMismatch, srv.URL+"/ hello@1.0.0")
}

func TestRepoTooLarge(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	f.maxChartBytes = 64
	_, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrTooLarge, srv.URL+"/ hello@1.0.0")

	f = newFetcher(t)
	f.maxIndexBytes = 64
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrTooLarge, srv.URL+"/ hello@1.0.0")
}

func TestRepoNotAChart(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	hello := srv.AddChart(t, "hello", "1.0.0")
	srv.AddFile(t, "junk-1.0.0.tgz", []byte("this is not gzip"))
	srv.EditIndex(t, func(idx *repo.IndexFile) {
		entry := *idx.Entries["hello"][0]
		md := *entry.Metadata
		entry.Metadata = &md
		// An entry whose archive is not gzip, and one whose archive is another version.
		junk := entry
		junkMD := md
		junkMD.Name, junkMD.Version = "junk", "1.0.0"
		junk.Metadata, junk.URLs, junk.Digest = &junkMD, []string{"junk-1.0.0.tgz"}, ""
		idx.Entries["junk"] = repo.ChartVersions{&junk}
		md.Version = "3.0.0"
		entry.Digest = ""
		idx.Entries["hello"] = append(idx.Entries["hello"], &entry)
	})
	f := newFetcher(t)
	_, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "junk", Version: "1.0.0"}, nil)
	wantErr(t, err, false, ErrNotChart, srv.URL+"/ junk@1.0.0")
	_, err = f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "3.0.0"}, nil)
	wantErr(t, err, false, ErrNotChart, srv.URL+"/ hello@3.0.0")
	if data, err := f.cache.get(digestOf(hello)); err != nil || data != nil {
		t.Errorf("cache holds %d bytes (%v) for an archive refused as the wrong version, want none", len(data), err)
	}
}

func TestRepoAuth(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{Username: "ferry", Password: "open-sesame"})
	srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	ref := Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}
	_, err := f.Fetch(t.Context(), ref, nil)
	wantErr(t, err, false, nil, srv.URL+"/ hello@1.0.0")
	if !strings.Contains(err.Error(), "401") {
		t.Errorf("error %q does not say 401", err)
	}
	_, err = f.Fetch(t.Context(), ref, &Credentials{Username: "ferry", Password: "wrong-guess"})
	wantErr(t, err, false, nil, srv.URL+"/ hello@1.0.0")
	if strings.Contains(err.Error(), "wrong-guess") {
		t.Errorf("error %q shows the password", err)
	}
	ch, err := f.Fetch(t.Context(), ref, &Credentials{Username: "ferry", Password: "open-sesame"})
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	if ch.Version != "1.0.0" {
		t.Errorf("version %s", ch.Version)
	}
}

func TestRepoUnreachable(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	srv.Close()
	f := newFetcher(t)
	_, err := f.Fetch(t.Context(), Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, true, nil, srv.URL+"/ hello@1.0.0")

	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	_, err = f.Fetch(ctx, Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.0.0"}, nil)
	wantErr(t, err, true, nil, srv.URL+"/ hello@1.0.0")
}

// A caller that waits for another's fetch of the same chart is not failed by that caller's
// cancellation: it fetches the chart itself.
func TestWaiterSurvivesCancelledFetch(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	archive := srv.AddChart(t, "hello", "1.0.0")
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxied, proxy := startFaultProxy(t, u.Host)
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	proxy.hold = func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".tgz") {
			once.Do(func() {
				arrived <- struct{}{}
				<-release
			})
		}
	}
	repoURL := "http://" + proxied + "/charts"
	ref := Ref{RepoURL: repoURL, Chart: "hello", Version: "1.0.0"}
	f := newFetcher(t)

	leaderCtx, cancelLeader := context.WithCancel(t.Context())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := f.Fetch(leaderCtx, ref, nil)
		leaderErr <- err
	}()
	select { // the first fetch is downloading the archive
	case <-arrived:
	case err := <-leaderErr:
		t.Fatalf("the first fetch ended before downloading: %v", err)
	}
	type result struct {
		ch  *Chart
		err error
	}
	waiter := make(chan result, 1)
	go func() {
		ch, err := f.Fetch(t.Context(), ref, nil)
		waiter <- result{ch, err}
	}()
	// Let the second caller find the fetch in flight and wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for !waiting(f) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	cancelLeader()
	err = <-leaderErr
	close(release)
	wantErr(t, err, true, context.Canceled, repoURL+"/ hello@1.0.0")
	res := <-waiter
	if res.err != nil {
		t.Fatalf("the waiting caller failed with the cancelled caller's error: %v", res.err)
	}
	if res.ch.Digest != digestOf(archive) {
		t.Errorf("digest %s, want %s", res.ch.Digest, digestOf(archive))
	}
}

// waiting reports whether a fetch is in flight.
func waiting(f *Fetcher) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls) > 0
}

// The index is asked for at every fetch, but a repository answering 304 Not Modified is not
// downloaded or parsed again; once the index changes, the new one is read.
func TestRepoIndexNotModified(t *testing.T) {
	srv := chartrepo.Start(t, chartrepo.Options{})
	srv.AddChart(t, "hello", "1.0.0")
	f := newFetcher(t)
	ref := Ref{RepoURL: srv.URL, Chart: "hello", Version: "1.x"}
	for range 3 {
		ch, err := f.Fetch(t.Context(), ref, nil)
		if err != nil || ch.Version != "1.0.0" {
			t.Fatalf("fetch = %v, %v", ch, err)
		}
	}
	if n, nm := srv.Requests("index.yaml"), srv.NotModified(); n != 3 || nm != 2 {
		t.Errorf("index asked %d times, %d answered 304; want 3 and 2", n, nm)
	}
	srv.AddChart(t, "hello", "1.1.0")
	ch, err := f.Fetch(t.Context(), ref, nil)
	if err != nil || ch.Version != "1.1.0" {
		t.Fatalf("after a new version: %v, %v; want 1.1.0", ch, err)
	}
	if nm := srv.NotModified(); nm != 2 {
		t.Errorf("a changed index was answered 304 (%d)", nm)
	}
	// Other credentials do not share the index kept for none.
	if _, err := f.Fetch(t.Context(), ref, &Credentials{Username: "u", Password: "p"}); err != nil {
		t.Fatal(err)
	}
	if nm := srv.NotModified(); nm != 2 {
		t.Errorf("an index kept for one set of credentials was reused for another (%d)", nm)
	}
}
