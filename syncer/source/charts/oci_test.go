package charts

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	orasreg "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"

	"github.com/ferrygitops/ferry/test/chartrepo"
	"github.com/ferrygitops/ferry/test/registry"
)

func TestOCIResolvesVersions(t *testing.T) {
	host := registry.Start(t)
	archives := map[string][]byte{}
	for _, v := range []string{"1.0.0", "1.2.0", "1.3.0+build.1", "2.0.0-rc.1"} {
		archives[v] = chartrepo.Package(t, "hello", v)
		registry.PushChart(t, host, "charts/hello", v, archives[v], "", "")
	}
	f := newFetcher(t)
	chart := "oci://" + host + "/charts/hello"
	for _, tc := range []struct{ ask, want string }{
		{"1.0.0", "1.0.0"},
		{"1.2.x", "1.2.0"},
		{">=1.0 <1.3", "1.2.0"},
		{"", "1.3.0+build.1"},
		{"1.3.0+build.1", "1.3.0+build.1"},
		{"2.0.0-rc.1", "2.0.0-rc.1"},
		{">=2.0.0-0", "2.0.0-rc.1"},
	} {
		ch, err := f.Fetch(t.Context(), Ref{Chart: chart, Version: tc.ask, PlainHTTP: true}, nil)
		if err != nil {
			t.Fatalf("Fetch(%q): %v", tc.ask, err)
		}
		if ch.Version != tc.want {
			t.Errorf("Fetch(%q) resolved %s, want %s", tc.ask, ch.Version, tc.want)
		}
		if !bytes.Equal(ch.Archive, archives[tc.want]) || ch.Digest != digestOf(archives[tc.want]) {
			t.Errorf("Fetch(%q) returned %s, not the archive pushed as %s (%s)", tc.ask, ch.Digest, tc.want, digestOf(archives[tc.want]))
		}
		if want := chart + ":" + tc.want; ch.Ref != want {
			t.Errorf("Fetch(%q).Ref = %q, want %q", tc.ask, ch.Ref, want)
		}
	}
}

func TestOCICacheAndOffline(t *testing.T) {
	reg := registry.Run(t, registry.Options{})
	archive := chartrepo.Package(t, "hello", "1.0.0")
	registry.PushChart(t, reg.Host, "charts/hello", "1.0.0", archive, "", "")
	f := newFetcher(t)
	chart := "oci://" + reg.Host + "/charts/hello"
	ref := Ref{Chart: chart, Version: "1.0.0", PlainHTTP: true}
	if _, err := f.Fetch(t.Context(), ref, nil); err != nil {
		t.Fatal(err)
	}
	if data, err := f.cache.get(digestOf(archive)); err != nil || !bytes.Equal(data, archive) {
		t.Fatalf("the cache does not hold the archive by its digest (%v)", err)
	}

	reg.Stop()
	ch, err := f.Fetch(t.Context(), ref, nil)
	if err != nil {
		t.Fatalf("exact version fetched before, registry down: %v", err)
	}
	if !ch.Offline || ch.Digest != digestOf(archive) || ch.Ref != chart+":1.0.0" || !bytes.Equal(ch.Archive, archive) {
		t.Errorf("offline fetch = {Offline:%t Digest:%s Ref:%s}, want the cached 1.0.0", ch.Offline, ch.Digest, ch.Ref)
	}
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: "1.x", PlainHTTP: true}, nil)
	wantErr(t, err, true, nil, chart)
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: "1.1.0", PlainHTTP: true}, nil)
	wantErr(t, err, true, nil, chart+":1.1.0")
}

func TestOCIPermanentErrors(t *testing.T) {
	host := registry.Start(t)
	for _, v := range []string{"1.0.0", "1.1.0", "1.2.0"} {
		registry.PushChart(t, host, "charts/hello", v, chartrepo.Package(t, "hello", v), "", "")
	}
	f := newFetcher(t)
	chart := "oci://" + host + "/charts/hello"

	_, err := f.Fetch(t.Context(), Ref{Chart: chart, Version: "9.9.9", PlainHTTP: true}, nil)
	wantErr(t, err, false, ErrVersionNotFound, chart+":9.9.9")
	if !strings.Contains(err.Error(), "available: 1.2.0, 1.1.0, 1.0.0") {
		t.Errorf("error %q does not list the versions", err)
	}
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: "^2", PlainHTTP: true}, nil)
	wantErr(t, err, false, ErrVersionNotFound, chart+` (version "^2")`)
	_, err = f.Fetch(t.Context(), Ref{Chart: "oci://" + host + "/charts/nope", Version: "1.0.0", PlainHTTP: true}, nil)
	wantErr(t, err, false, nil, "oci://"+host+"/charts/nope:1.0.0")
	_, err = f.Fetch(t.Context(), Ref{Chart: chart + ":1.0.0", Version: "1.0.0", PlainHTTP: true}, nil)
	wantErr(t, err, false, ErrBadRef, chart)

	// The chart layer is larger than the limit: refused from the manifest, before download.
	f.maxChartBytes = 64
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: "1.0.0", PlainHTTP: true}, nil)
	wantErr(t, err, false, ErrTooLarge, chart+":1.0.0")
}

func TestOCIUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	host := l.Addr().String()
	l.Close()
	f := newFetcher(t)
	chart := "oci://" + host + "/charts/hello"
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: "1.0.0", PlainHTTP: true}, nil)
	wantErr(t, err, true, nil, chart+":1.0.0")
	_, err = f.Fetch(t.Context(), Ref{Chart: chart, Version: ">=1", PlainHTTP: true}, nil)
	wantErr(t, err, true, nil, chart)
}

func TestOCIAuth(t *testing.T) {
	reg := registry.Run(t, registry.Options{Username: "ferry", Password: "open-sesame"})
	archive := chartrepo.Package(t, "hello", "1.0.0")
	registry.PushChart(t, reg.Host, "charts/hello", "1.0.0", archive, "ferry", "open-sesame")
	f := newFetcher(t)
	chart := "oci://" + reg.Host + "/charts/hello"
	for _, version := range []string{"1.0.0", "1.x"} {
		ref := Ref{Chart: chart, Version: version, PlainHTTP: true}
		_, err := f.Fetch(t.Context(), ref, nil)
		wantErr(t, err, false, nil, chart)
		if !strings.Contains(err.Error(), "401") {
			t.Errorf("error %q does not say 401", err)
		}
		_, err = f.Fetch(t.Context(), ref, &Credentials{Username: "ferry", Password: "wrong-guess"})
		wantErr(t, err, false, nil, chart)
		if strings.Contains(err.Error(), "wrong-guess") {
			t.Errorf("error %q shows the password", err)
		}
		ch, err := f.Fetch(t.Context(), ref, &Credentials{Username: "ferry", Password: "open-sesame"})
		if err != nil {
			t.Fatalf("with credentials: %v", err)
		}
		if ch.Digest != digestOf(archive) {
			t.Errorf("digest %s, want %s", ch.Digest, digestOf(archive))
		}
	}
}

func TestOCINotAChart(t *testing.T) {
	host := registry.Start(t)
	ctx := t.Context()
	rref, err := orasreg.ParseReference(host + "/charts/image")
	if err != nil {
		t.Fatal(err)
	}
	repo := &remote.Repository{Client: &auth.Client{Client: http.DefaultClient}, Reference: rref, PlainHTTP: true}
	layerData := chartrepo.Package(t, "hello", "1.0.0")
	layer := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, layerData)
	if err := repo.Push(ctx, layer, bytes.NewReader(layerData)); err != nil {
		t.Fatal(err)
	}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, "application/vnd.example.thing",
		oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag(ctx, desc, "1.0.0"); err != nil {
		t.Fatal(err)
	}
	f := newFetcher(t)
	chart := "oci://" + host + "/charts/image"
	_, err = f.Fetch(ctx, Ref{Chart: chart, Version: "1.0.0", PlainHTTP: true}, nil)
	wantErr(t, err, false, ErrNotChart, chart+":1.0.0")
}

// faultProxy forwards to a registry, counting requests by path and answering the first failures
// requests with 503.
type faultProxy struct {
	mu       sync.Mutex
	failures int
	requests map[string]int
	proxy    *httputil.ReverseProxy
	// hold, when set, is called before a request is forwarded (and may block it).
	hold func(*http.Request)
}

func startFaultProxy(t *testing.T, host string) (string, *faultProxy) {
	t.Helper()
	target, err := url.Parse("http://" + host)
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{requests: map[string]int{}, proxy: httputil.NewSingleHostReverseProxy(target)}
	p.proxy.ErrorLog = log.New(io.Discard, "", 0) // a cancelled request is part of some tests
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), p
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests[r.Method+" "+r.URL.Path]++
	fail := p.failures > 0
	if fail {
		p.failures--
	}
	hold := p.hold
	p.mu.Unlock()
	if fail {
		http.Error(w, "injected failure", http.StatusServiceUnavailable)
		return
	}
	if hold != nil {
		hold(r)
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *faultProxy) failNext(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = n
}

func (p *faultProxy) count(methodPath string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests[methodPath]
}

func TestOCITransientThenSuccessAndDownloadOnce(t *testing.T) {
	host := registry.Start(t)
	archive := chartrepo.Package(t, "hello", "1.0.0")
	registry.PushChart(t, host, "charts/hello", "1.0.0", archive, "", "")
	proxied, proxy := startFaultProxy(t, host)
	f := newFetcher(t)
	chart := "oci://" + proxied + "/charts/hello"
	ref := Ref{Chart: chart, Version: "1.0.0", PlainHTTP: true}

	proxy.failNext(1)
	_, err := f.Fetch(t.Context(), ref, nil)
	wantErr(t, err, true, nil, chart+":1.0.0")
	if !strings.Contains(err.Error(), "503") {
		t.Errorf("error %q does not say 503", err)
	}

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			ch, err := f.Fetch(t.Context(), ref, nil)
			if err == nil && ch.Digest != digestOf(archive) {
				err = fmt.Errorf("digest %s, want %s", ch.Digest, digestOf(archive))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("after the 503: %v", err)
		}
	}
	if _, err := f.Fetch(t.Context(), ref, nil); err != nil {
		t.Fatal(err)
	}
	blob := "GET /v2/charts/hello/blobs/" + digestOf(archive)
	if n := proxy.count(blob); n != 1 {
		t.Errorf("chart layer downloaded %d times by 9 fetches, want 1", n)
	}
}
