package charts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"
)

// MaxIndexBytes bounds a chart repository's index.yaml. The largest public indexes (repositories
// with thousands of chart versions) are a few tens of MiB; an index is parsed whole in memory.
const MaxIndexBytes = 64 << 20

// fetchRepo fetches a chart from a chart repository: the index names the versions and where each
// archive is, and usually its digest.
func (f *Fetcher) fetchRepo(ctx context.Context, ref Ref, creds *Credentials) (*Chart, error) {
	name := displayRef(ref)
	base, err := parseRepoURL(ref.RepoURL)
	if err != nil {
		return nil, permanentErr(name, "parse repository URL", err)
	}
	if ref.Chart == "" || strings.ContainsAny(ref.Chart, "/ ") {
		return nil, permanentErr(name, "check chart name", fmt.Errorf("%w: %q is not a chart name", ErrBadRef, ref.Chart))
	}
	index, err := f.index(ctx, name, base, creds)
	if err != nil {
		return nil, err
	}
	entries := index.Entries[ref.Chart]
	var available []string
	for _, e := range entries {
		if e != nil && e.Metadata != nil && e.Version != "" {
			available = append(available, e.Version)
		}
	}
	if len(available) == 0 {
		return nil, permanentErr(name, "resolve version", fmt.Errorf("%w: the repository's index has no chart %q", ErrVersionNotFound, ref.Chart))
	}
	version, err := resolveVersion(available, ref.Version)
	if err != nil {
		return nil, permanentErr(name, "resolve version", err)
	}
	var entry *repo.ChartVersion
	for _, e := range entries {
		if e != nil && e.Metadata != nil && e.Version == version {
			entry = e
			break
		}
	}
	name = strings.TrimSuffix(base.String(), "/") + "/ " + ref.Chart + "@" + version
	if len(entry.URLs) == 0 {
		return nil, permanentErr(name, "read index entry", errors.New("the entry has no URL"))
	}
	chartURL, err := base.Parse(entry.URLs[0])
	if err != nil {
		return nil, permanentErr(name, "read index entry", fmt.Errorf("%w: archive URL: %v", ErrBadRef, err))
	}
	if chartURL.Scheme != "http" && chartURL.Scheme != "https" {
		return nil, permanentErr(name, "read index entry", fmt.Errorf("%w: archive URL scheme %q", ErrBadRef, chartURL.Scheme))
	}
	// With the index's digest a cached archive is used as it is; an index without digests (some
	// hand-made repositories) gets its archive downloaded every time, since nothing else says
	// the cached one is still what the repository serves.
	want := ""
	if entry.Digest != "" {
		if want, err = normalizeDigest(entry.Digest); err != nil {
			return nil, permanentErr(name, "read index entry", err)
		}
		if data, err := f.cache.get(want); err != nil {
			return nil, permanentErr(name, "read cache", err)
		} else if data != nil {
			return &Chart{Archive: data, Digest: want, Version: version, Ref: name}, nil
		}
	}
	data, _, err := f.get(ctx, name, "download archive", chartURL, base, creds, f.maxChartBytes, "")
	if err != nil {
		return nil, err
	}
	got := digestOf(data)
	if want != "" && got != want {
		return nil, permanentErr(name, "verify archive", fmt.Errorf("%w: the index says %s, the archive is %s", ErrDigestMismatch, want, got))
	}
	return f.keep(name, data, got, ref.Chart, version)
}

// index returns the repository's parsed index. An index is asked for at every sync (so that a
// range follows new versions), but repositories' indexes run to tens of MiB: the last one parsed
// is kept with its ETag, and a repository that answers 304 Not Modified costs neither the
// download nor the parse.
func (f *Fetcher) index(ctx context.Context, name string, base *url.URL, creds *Credentials) (*repo.IndexFile, error) {
	indexURL := base.JoinPath("index.yaml")
	key := callKey(Ref{RepoURL: indexURL.String()}, creds)
	f.mu.Lock()
	kept := f.indexes[key]
	f.mu.Unlock()
	etag := ""
	if kept != nil {
		etag = kept.etag
	}
	body, newTag, err := f.get(ctx, name, "get index.yaml", indexURL, base, creds, f.maxIndexBytes, etag)
	if err != nil {
		return nil, err
	}
	if body == nil {
		return kept.index, nil // not modified
	}
	var index repo.IndexFile
	if err := yaml.Unmarshal(body, &index); err != nil {
		return nil, permanentErr(name, "parse index.yaml", err)
	}
	f.mu.Lock()
	if newTag != "" {
		f.indexes[key] = &keptIndex{etag: newTag, index: &index}
	} else {
		delete(f.indexes, key)
	}
	f.mu.Unlock()
	return &index, nil
}

// keptIndex is a repository's index as last parsed, and the ETag it was served with.
type keptIndex struct {
	etag  string
	index *repo.IndexFile
}

// keep verifies a downloaded archive (a chart named chartName at version) and caches it.
func (f *Fetcher) keep(name string, data []byte, digest, chartName, version string) (*Chart, error) {
	cf, err := verifyArchive(data, f.maxUnpackedBytes)
	if err != nil {
		return nil, permanentErr(name, "verify archive", err)
	}
	if cf.Name != chartName || cf.Version != version {
		return nil, permanentErr(name, "verify archive", fmt.Errorf("%w: its Chart.yaml is %s %s, not %s %s", ErrNotChart, cf.Name, cf.Version, chartName, version))
	}
	if err := f.cache.put(digest, data); err != nil {
		return nil, permanentErr(name, "cache archive", err)
	}
	return &Chart{Archive: data, Digest: digest, Version: version, Ref: name}, nil
}

// get downloads u, at most limit bytes, and returns it with its ETag. With ifNoneMatch set, a
// 304 Not Modified answer returns no data and no error. Credentials go only to the repository's
// own scheme and host: an index may point archives at another server (a CDN), which must not
// receive them.
func (f *Fetcher) get(ctx context.Context, name, op string, u, base *url.URL, creds *Credentials, limit int64, ifNoneMatch string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", permanentErr(name, op, err)
	}
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	if creds != nil && u.Scheme == base.Scheme && u.Host == base.Host {
		if creds.Username != "" {
			req.SetBasicAuth(creds.Username, creds.Password)
		} else if creds.Password != "" {
			req.Header.Set("Authorization", "Bearer "+creds.Password)
		}
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return nil, "", transportErr(name, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && ifNoneMatch != "" {
		return nil, "", nil
	}
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, "", statusErr(name, op+" "+redactURL(u.String()), resp.StatusCode)
	}
	if resp.ContentLength > limit {
		return nil, "", permanentErr(name, op, fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrTooLarge, redactURL(u.String()), resp.ContentLength, limit))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", transportErr(name, op, err)
	}
	if int64(len(data)) > limit {
		return nil, "", permanentErr(name, op, fmt.Errorf("%w: %s is more than %d bytes", ErrTooLarge, redactURL(u.String()), limit))
	}
	return data, resp.Header.Get("ETag"), nil
}

// parseRepoURL checks a chart repository URL. Credentials inside the URL are refused: they would
// end up in errors and records; they belong in a secret reference.
func parseRepoURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRef, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("%w: a chart repository URL is http(s)://host/path", ErrBadRef)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: credentials in the repository URL; give them by secret reference", ErrBadRef)
	}
	u.RawQuery, u.Fragment = "", ""
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		u.RawPath = ""
	}
	return u, nil
}

// redactURL drops the user information and query of a URL for errors and records.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	u.Fragment = ""
	return u.String()
}

// normalizeDigest turns an index's digest (hex, or "sha256:<hex>") into "sha256:<hex>".
func normalizeDigest(d string) (string, error) {
	hexd := strings.ToLower(strings.TrimPrefix(d, "sha256:"))
	if len(hexd) != 64 || strings.Trim(hexd, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: the index's digest %q is not a sha256", ErrDigestMismatch, d)
	}
	return "sha256:" + hexd, nil
}
