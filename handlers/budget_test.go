package handlers

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestUnverifiedBudget(t *testing.T) {
	var b unverifiedBudget
	large := int64(MaxBodyBytes)
	first, ok := b.reserve(large)
	if !ok {
		t.Fatal("one maximal body does not fit an empty budget")
	}
	if _, ok := b.reserve(MaxUnverifiedBytes - SmallBodyReserve - large + 1); ok {
		t.Fatal("large bodies took more than MaxUnverifiedBytes-SmallBodyReserve")
	}
	mid, ok := b.reserve(MaxUnverifiedBytes - SmallBodyReserve - large)
	if !ok {
		t.Fatal("large bodies cannot use their whole part")
	}
	// The reserve is left to small bodies, and only to them.
	var small []*reservation
	for range SmallBodyReserve / SmallBodyBytes {
		r, ok := b.reserve(SmallBodyBytes)
		if !ok {
			t.Fatalf("small body refused with %d of SmallBodyReserve used", len(small)*SmallBodyBytes)
		}
		small = append(small, r)
	}
	if _, ok := b.reserve(1); ok {
		t.Fatal("a body was admitted past MaxUnverifiedBytes")
	}
	// A small reservation cannot grow into the large part while it is full.
	small[0].release()
	if small[0].grow(SmallBodyBytes+1) || !small[0].grow(SmallBodyBytes) {
		t.Fatal("a released small reservation grew wrongly")
	}
	first.release()
	first.release() // twice is harmless
	if all, lg := b.held(); all != MaxUnverifiedBytes-large || lg != MaxUnverifiedBytes-SmallBodyReserve-large {
		t.Fatalf("held %d (large %d) after releasing %d", all, lg, large)
	}
	mid.release()
	for _, r := range small {
		r.release()
	}
	if all, lg := b.held(); all != 0 || lg != 0 {
		t.Fatalf("held %d (large %d) after releasing everything", all, lg)
	}
}

// watchedBody is a request body that counts what is read of it.
type watchedBody struct {
	r    io.Reader
	read atomic.Int64
}

func (w *watchedBody) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	w.read.Add(int64(n))
	return n, err
}

func (w *watchedBody) Close() error { return nil }

// TestHooksUnverifiedBodies holds unverified bodies to the headers' verdict and the budget:
// nothing of a body is read when the headers alone refuse it, when it is declared oversize or
// when it does not fit, and a genuine small delivery is still accepted while large bodies hold
// their whole part of the budget.
func TestHooksUnverifiedBodies(t *testing.T) {
	ghPush := readTestdata(t, "github/push.json")
	glPush := readTestdata(t, "gitlab/push.json")
	bogus := "sha256=" + string(bytes.Repeat([]byte("ab"), 32))
	repos := append(testRepos("github", githubSecret),
		Repo{Name: "lab", Provider: "gitlab", Branch: "main", Secret: gitlabToken, Apps: []App{{Name: "lab-app", Path: "apps/database"}}},
		Repo{Name: "signed", Provider: "gitlab", Branch: "main", Secret: gitlabSigning, Apps: []App{{Name: "signed-app", Path: "apps/database"}}})
	hooks, srv := newQueueHooks(t, repos, func() time.Time { return testNow })

	send := func(repo string, h http.Header, body []byte, length int64) (*httptest.ResponseRecorder, int64) {
		t.Helper()
		wb := &watchedBody{r: bytes.NewReader(body)}
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/hooks/"+repo, wb)
		req.Header = h
		req.ContentLength = length
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec, wb.read.Load()
	}
	withSig := func(sig string) http.Header {
		h := githubHeaders("push", "d-"+sig[len(sig)-4:], githubSecret, ghPush)
		h.Set("X-Hub-Signature-256", sig)
		return h
	}
	big := bytes.Repeat([]byte("x"), 4<<20)

	for _, c := range []struct {
		name   string
		repo   string
		header http.Header
		body   []byte
		length int64
		status int
	}{
		{"github without signature", "platform", func() http.Header { h := withSig(bogus); h.Del("X-Hub-Signature-256"); return h }(), big, int64(len(big)), http.StatusUnauthorized},
		{"github malformed signature", "platform", withSig("sha256=zz"), big, int64(len(big)), http.StatusUnauthorized},
		{"gitlab wrong token", "lab", gitlabTokenHeaders("Push Hook", "u1", []byte("glpat-guess")), big, int64(len(big)), http.StatusUnauthorized},
		{"gitlab stale signing timestamp", "signed", gitlabSigningHeaders(t, "Push Hook", "m1", testNow.Add(-time.Hour), gitlabSigning, glPush), big, int64(len(big)), http.StatusUnauthorized},
		{"declared oversize", "platform", withSig(bogus), big, MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec, read := send(c.repo, c.header, c.body, c.length)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.status, rec.Body)
			}
			if read != 0 {
				t.Fatalf("%d bytes of the body were read", read)
			}
		})
	}

	t.Run("bogus signature is read, refused and its bytes given back", func(t *testing.T) {
		rec, read := send("platform", withSig(bogus), big, int64(len(big)))
		if rec.Code != http.StatusUnauthorized || read != int64(len(big)) {
			t.Fatalf("status %d after reading %d bytes, want 401 after %d", rec.Code, read, len(big))
		}
		if all, large := hooks.budget.held(); all != 0 || large != 0 {
			t.Fatalf("budget still holds %d bytes (%d large)", all, large)
		}
	})

	// Large bodies in flight hold their whole part of the budget.
	held, ok := hooks.budget.reserve(MaxUnverifiedBytes - SmallBodyReserve)
	if !ok {
		t.Fatal("cannot fill the large bodies' part")
	}
	t.Run("over budget: 503 unread", func(t *testing.T) {
		rec, read := send("platform", withSig(bogus), big, int64(len(big)))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != strconv.Itoa(BusyRetryAfter) {
			t.Fatalf("status %d, Retry-After %q; want 503, %d", rec.Code, rec.Header().Get("Retry-After"), BusyRetryAfter)
		}
		if read != 0 {
			t.Fatalf("%d bytes of the body were read", read)
		}
	})
	t.Run("over budget, no Content-Length: 503 once it outgrows the budget", func(t *testing.T) {
		rec, read := send("platform", withSig(bogus), big, -1)
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d, want 503: %s", rec.Code, rec.Body)
		}
		if read > SmallBodyBytes+1 {
			t.Fatalf("%d bytes were read, more than a small body", read)
		}
	})
	t.Run("genuine small delivery still accepted", func(t *testing.T) {
		for _, length := range []int64{int64(len(ghPush)), -1} {
			h := githubHeaders("push", "genuine-"+strconv.FormatInt(length, 10), githubSecret, ghPush)
			if rec, _ := send("platform", h, ghPush, length); rec.Code != http.StatusAccepted {
				t.Fatalf("length %d: status %d, want 202: %s", length, rec.Code, rec.Body)
			}
		}
	})
	held.release()
	t.Run("budget free again: a large genuine body is accepted", func(t *testing.T) {
		body := patchJSON(t, ghPush, func(m map[string]any) { m["padding"] = string(big) })
		h := githubHeaders("push", "genuine-large", githubSecret, body)
		if rec, _ := send("platform", h, body, -1); rec.Code != http.StatusAccepted {
			t.Fatalf("status %d, want 202: %s", rec.Code, rec.Body)
		}
		if all, large := hooks.budget.held(); all != 0 || large != 0 {
			t.Fatalf("budget still holds %d bytes (%d large)", all, large)
		}
	})
}
