// Package charts fetches Helm charts that live outside Git: from a chart repository (an HTTP
// server with an index.yaml) or from an OCI registry. It runs in the fetch stage of a sync, never
// during render: the renderer receives the archive bytes. Archives are verified (digest, size, a
// gzip tar holding a Chart.yaml) and kept on disk by content digest, so a chart already fetched is
// not downloaded again and the sync record can name exactly what was applied.
//
// Everything is configured by the caller: the HTTP client, the cache directory, the credentials.
// Nothing is read from Helm's or Docker's configuration files or from the environment.
package charts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Ref names a chart outside Git.
type Ref struct {
	RepoURL   string // chart repository base URL (https://… serving index.yaml); empty for OCI
	Chart     string // chart name in the repository, or oci://host[:port]/path/name
	Version   string // exact version, or a semver constraint (">=1.2 <2", "1.2.x"); empty = newest stable
	PlainHTTP bool   // OCI over http (a registry on loopback); chart repositories take http:// URLs as given
}

// Credentials authenticate to a chart repository (HTTP basic auth) or an OCI registry (registry
// login). With an empty Username, Password is sent as a bearer token (chart repository) or used
// as the registry's access token (OCI).
type Credentials struct{ Username, Password string }

// Chart is a fetched, verified chart archive.
type Chart struct {
	Archive []byte // the chart .tgz; shared between concurrent callers, never modify it
	Digest  string // "sha256:<hex>" of the archive
	Version string // the resolved version
	Ref     string // canonical name for records/errors: oci://host/path/name:1.2.3 or https://repo/ name@1.2.3
	// Offline is set when the source could not be reached (a transient failure) and the chart is
	// an exact version fetched before, served from the cache by the digest it had then. Chart
	// versions are meant to be immutable, and the sync record names the digest either way.
	Offline bool
}

// Fetcher fetches charts and keeps their archives in an on-disk cache keyed by digest. It is safe
// for concurrent use; concurrent fetches of the same reference share one download.
type Fetcher struct {
	hc    *http.Client
	cache cache
	// Limits, the named constants unless a test lowers them.
	maxIndexBytes    int64
	maxChartBytes    int64
	maxUnpackedBytes int64

	mu    sync.Mutex
	calls map[string]*call // fetches in flight by reference and credentials
	// indexes are chart repositories' indexes as last parsed, by URL and credentials.
	indexes map[string]*keptIndex
}

// call is one fetch in flight that later callers of the same reference wait for.
type call struct {
	done  chan struct{}
	chart *Chart
	err   error
}

// NewFetcher returns a Fetcher that keeps archives under dir (created when needed) and makes its
// requests with hc (required), whose timeouts, proxy and TLS settings the caller chooses. The
// cache is not pruned here: archives are small and named by content, and whoever owns dir may
// delete any file in it at any time (a missing archive is fetched again).
func NewFetcher(dir string, hc *http.Client) *Fetcher {
	return &Fetcher{
		hc:               hc,
		cache:            cache{dir: dir},
		maxIndexBytes:    MaxIndexBytes,
		maxChartBytes:    MaxChartBytes,
		maxUnpackedBytes: MaxChartUnpackedBytes,
		calls:            map[string]*call{},
		indexes:          map[string]*keptIndex{},
	}
}

// Fetch resolves ref to one version, and returns its archive: from the cache when the digest is
// already known and held, else downloaded and verified. A chart repository's index and an OCI
// registry's tags are always asked, so a constraint follows new versions; when that fails
// transiently for an exact version fetched before with the same credentials, the cached archive
// is returned with Offline set. Errors are *Error, naming the reference.
func (f *Fetcher) Fetch(ctx context.Context, ref Ref, creds *Credentials) (*Chart, error) {
	key := callKey(ref, creds)
	for {
		f.mu.Lock()
		if c, ok := f.calls[key]; ok {
			f.mu.Unlock()
			select {
			case <-c.done:
			case <-ctx.Done():
				return nil, transportErr(displayRef(ref), "wait for the same chart's fetch", ctx.Err())
			}
			if c.err != nil && isContextErr(c.err) && ctx.Err() == nil {
				continue // the fetch we waited for was cancelled by its own caller: do it ourselves
			}
			return copyChart(c.chart), c.err
		}
		c := &call{done: make(chan struct{})}
		f.calls[key] = c
		f.mu.Unlock()

		c.chart, c.err = f.fetch(ctx, ref, creds, key)
		f.mu.Lock()
		delete(f.calls, key)
		f.mu.Unlock()
		close(c.done)
		return copyChart(c.chart), c.err
	}
}

func (f *Fetcher) fetch(ctx context.Context, ref Ref, creds *Credentials, key string) (*Chart, error) {
	var (
		ch  *Chart
		err error
	)
	if ref.RepoURL == "" {
		ch, err = f.fetchOCI(ctx, ref, creds)
	} else {
		ch, err = f.fetchRepo(ctx, ref, creds)
	}
	if err == nil {
		if isExact(ref.Version) {
			rec := record{Ref: ch.Ref, Version: ch.Version, Digest: ch.Digest}
			if old, ok := f.cache.lookup(key); !ok || old != rec {
				// Best effort: without the record an offline fetch fails as it would anyway.
				_ = f.cache.remember(key, rec)
			}
		}
		return ch, nil
	}
	if !IsTransient(err) || !isExact(ref.Version) || ctx.Err() != nil {
		return nil, err
	}
	rec, ok := f.cache.lookup(key)
	if !ok {
		return nil, err
	}
	data, cerr := f.cache.get(rec.Digest)
	if cerr != nil || data == nil {
		return nil, err
	}
	return &Chart{Archive: data, Digest: rec.Digest, Version: rec.Version, Ref: rec.Ref, Offline: true}, nil
}

// callKey identifies a fetch by what it asks and who asks: callers with other credentials do not
// share a fetch or an offline record. The credentials enter only as a hash.
func callKey(ref Ref, creds *Credentials) string {
	h := sha256.New()
	fmt.Fprintf(h, "%q\x00%q\x00%q\x00%t\x00", ref.RepoURL, ref.Chart, ref.Version, ref.PlainHTTP)
	if creds != nil {
		fmt.Fprintf(h, "%q\x00%q", creds.Username, creds.Password)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func copyChart(c *Chart) *Chart {
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// displayRef names ref as asked, before resolution, for errors.
func displayRef(ref Ref) string {
	if ref.RepoURL == "" {
		name := ref.Chart
		if !strings.HasPrefix(name, "oci://") {
			name = "oci://" + name
		}
		if isExact(ref.Version) {
			return name + ":" + ref.Version
		}
		return withConstraint(name, ref.Version)
	}
	base := redactURL(ref.RepoURL)
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	name := base + " " + ref.Chart
	if isExact(ref.Version) {
		return name + "@" + ref.Version
	}
	return withConstraint(name, ref.Version)
}

func withConstraint(name, version string) string {
	if version == "" {
		return name + " (newest stable version)"
	}
	return fmt.Sprintf("%s (version %q)", name, version)
}
