package chartrepo

import (
	"io"
	"net/http"
	"strings"
	"testing"

	repo "helm.sh/helm/v4/pkg/repo/v1"
	"sigs.k8s.io/yaml"
)

func get(t *testing.T, url, user, pass string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func TestServesIndexAndArchives(t *testing.T) {
	s := Start(t, Options{})
	archive := s.AddChart(t, "hello", "1.2.3")
	code, body := get(t, s.URL+"/index.yaml", "", "")
	if code != http.StatusOK {
		t.Fatalf("index.yaml: %d", code)
	}
	var idx repo.IndexFile
	if err := yaml.Unmarshal(body, &idx); err != nil {
		t.Fatal(err)
	}
	cv, err := idx.Get("hello", "1.2.3")
	if err != nil {
		t.Fatalf("index: %v\n%s", err, body)
	}
	if len(cv.URLs) != 1 || cv.URLs[0] != "hello-1.2.3.tgz" || cv.Digest == "" {
		t.Fatalf("index entry URLs %v digest %q, want a relative URL and a digest", cv.URLs, cv.Digest)
	}
	code, got := get(t, s.URL+"/"+cv.URLs[0], "", "")
	if code != http.StatusOK || string(got) != string(archive) {
		t.Fatalf("archive: %d, %d bytes, want the packaged %d bytes", code, len(got), len(archive))
	}
	if n := s.Requests("index.yaml"); n != 1 {
		t.Errorf("Requests(index.yaml) = %d, want 1", n)
	}

	s.FailNext(2, http.StatusServiceUnavailable)
	for range 2 {
		if code, _ := get(t, s.URL+"/index.yaml", "", ""); code != http.StatusServiceUnavailable {
			t.Errorf("injected failure answered %d", code)
		}
	}
	if code, _ := get(t, s.URL+"/index.yaml", "", ""); code != http.StatusOK {
		t.Errorf("after the injected failures: %d", code)
	}
}

func TestAbsoluteURLsAndAuth(t *testing.T) {
	s := Start(t, Options{Username: "u", Password: "p", AbsoluteURLs: true})
	s.AddChart(t, "hello", "0.1.0")
	if code, _ := get(t, s.URL+"/index.yaml", "", ""); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	if code, _ := get(t, s.URL+"/index.yaml", "u", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("with a wrong password: %d, want 401", code)
	}
	code, body := get(t, s.URL+"/index.yaml", "u", "p")
	if code != http.StatusOK || !strings.Contains(string(body), s.URL+"/hello-0.1.0.tgz") {
		t.Fatalf("index: %d\n%s", code, body)
	}
}
