package status

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Shared by the forge tests: a fake forge API that records what ferry sent and answers as told.

const (
	testToken = "s3cr3t-t0ken-value"
	testSHA   = "0123456789abcdef0123456789abcdef01234567"
)

// seen is one request as the fake forge received it.
type seen struct {
	Method string
	Path   string // escaped, as on the wire
	Auth   string // the forge's auth header value
	Body   map[string]any
}

type fakeForge struct {
	t          *testing.T
	authHeader string
	respond    func(w http.ResponseWriter, r *http.Request, n int)

	mu   sync.Mutex
	reqs []seen
}

// newFakeForge starts an httptest server on 127.0.0.1 whose answer to the n-th request (from 0)
// is written by respond.
func newFakeForge(t *testing.T, authHeader string, respond func(w http.ResponseWriter, r *http.Request, n int)) (*httptest.Server, *fakeForge) {
	t.Helper()
	f := &fakeForge{t: t, authHeader: authHeader, respond: respond}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	return srv, f
}

func (f *fakeForge) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("read request body: %v", err)
	}
	var body map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			f.t.Errorf("request body is not JSON: %v: %s", err, raw)
		}
	}
	if ct := r.Header.Get("Content-Type"); len(raw) > 0 && !strings.HasPrefix(ct, "application/json") {
		f.t.Errorf("Content-Type = %q, want application/json", ct)
	}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, seen{Method: r.Method, Path: r.URL.EscapedPath(), Auth: r.Header.Get(f.authHeader), Body: body})
	f.mu.Unlock()
	f.respond(w, r, n)
}

func (f *fakeForge) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// answer writes a JSON reply with the given status code and headers (pairs of name, value).
func answer(w http.ResponseWriter, code int, body string, headers ...string) {
	for i := 0; i+1 < len(headers); i += 2 {
		w.Header().Set(headers[i], headers[i+1])
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// roundTripFunc lets a test see the URL a client would call without any network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// capturingClient answers every request with code and an empty JSON object, recording the URLs.
func capturingClient(code int, urls *[]string) *http.Client {
	var mu sync.Mutex
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		*urls = append(*urls, r.URL.String())
		mu.Unlock()
		return &http.Response{
			StatusCode: code,
			Header:     http.Header{"Content-Type": {"application/json"}},
			Body:       io.NopCloser(strings.NewReader("{}")),
			Request:    r,
		}, nil
	})}
}

// allStates is every State with a status description, for the mapping tables.
var allStates = []State{Pending, Success, Failure, Canceled, Skipped}
