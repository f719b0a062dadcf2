// Package client is a typed Go client of ferry's HTTP API: the apps and their syncs, manual
// syncs, suspend and resume, live updates as server-sent events, and server-side diffs of a
// local directory. The ferry CLI is built on it; scripts in Go may use it too.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ferrygitops/ferry/queue"
)

const (
	// RequestTimeout bounds one ordinary API call (not an event stream), connection included.
	RequestTimeout = 60 * time.Second
	// DiffTimeout bounds a diff call: the server renders the directory and dry-runs every
	// object against the cluster, which takes longer than a read.
	DiffTimeout = 5 * time.Minute
	// DialTimeout bounds opening a connection to ferry.
	DialTimeout = 10 * time.Second
	// ResponseHeaderTimeout bounds the wait for an answer's headers once a request is sent.
	ResponseHeaderTimeout = 30 * time.Second
	// MaxResponseBytes bounds an answer read into memory (a record is at most 256 KiB; an app
	// with its history or a diff can be larger).
	MaxResponseBytes = 64 << 20
	// maxErrorBytes bounds the part of an error answer that is read for its message.
	maxErrorBytes = 64 << 10
	// maxMessage bounds the server's message quoted in an error.
	maxMessage = 512
)

// Client talks to one ferry server. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
	// userAgent names the caller in ferry's logs.
	userAgent string
}

// Options are a client's settings besides the server's address.
type Options struct {
	// Token is an API token (apiTokens in ferry.yaml), required by the calls that change
	// something: sync, suspend, resume, diff. It is sent only as a bearer token, never in a URL
	// or an error.
	Token string
	// HTTPClient replaces the default one; its Timeout must be 0 for event streams to last.
	HTTPClient *http.Client
	// UserAgent is sent with every request; empty sends "ferry-client".
	UserAgent string
}

// New returns a client of the ferry server at baseURL (https://ferry.example.com).
func New(baseURL string, opts Options) (*Client, error) {
	if baseURL == "" {
		return nil, errors.New("no server address given")
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("server address: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("server address %q: want http(s)://host[:port]", u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("server address %q: give the token with the token setting, not in the address", u.Redacted())
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: defaultTransport()}
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "ferry-client"
	}
	return &Client{base: u, token: opts.Token, http: hc, userAgent: ua}, nil
}

// defaultTransport is net/http's default transport with bounds on connecting and on waiting
// for an answer; the body of an event stream is bounded by its own idle timeout instead.
func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = DialTimeout
	t.ResponseHeaderTimeout = ResponseHeaderTimeout
	return t
}

// Error is an answer of ferry other than success: its HTTP status and ferry's message.
type Error struct {
	Method, Path string
	// Status is the HTTP status code.
	Status int
	// Message is ferry's {"error": ...} text, or the start of the body when it is not JSON.
	Message string
	// Detail is the rest of a structured error (a diff's stage, object and file), if any.
	Detail map[string]string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), msg)
}

// StatusOf returns the HTTP status of an *Error in err's chain, or 0.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Temporary reports whether an error may pass by itself: ferry overloaded or unavailable, a
// gateway between, or no answer at all. A refusal (4xx) will not.
func Temporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	return err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// request builds a request of path (under the base URL) with body, JSON unless contentType says.
func (c *Client) request(ctx context.Context, method, path string, query url.Values, body io.Reader, contentType string) (*http.Request, error) {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

// needToken refuses a call that changes something before it is sent without a token.
func (c *Client) needToken(what string) error {
	if c.token == "" {
		return fmt.Errorf("%s needs an API token (FERRY_TOKEN)", what)
	}
	return nil
}

// do sends req and reads a successful answer's body (at most MaxResponseBytes), or returns an
// *Error for any other status.
func (c *Client) do(req *http.Request, want ...int) ([]byte, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, redact(err))
	}
	defer resp.Body.Close()
	if !wanted(resp.StatusCode, want) {
		return nil, apiError(req, resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL.Path, err)
	}
	if len(data) > MaxResponseBytes {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", req.Method, req.URL.Path, MaxResponseBytes)
	}
	return data, nil
}

func wanted(code int, want []int) bool {
	if len(want) == 0 {
		return code == http.StatusOK
	}
	for _, w := range want {
		if code == w {
			return true
		}
	}
	return false
}

// redact words a transport error without the URL net/http repeats (the caller names the
// request), so that nothing of the address beyond the host appears twice.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("no answer from %s: %w", hostOf(ue.URL), ue.Err)
	}
	return err
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "ferry"
	}
	return u.Scheme + "://" + u.Host
}

// apiError reads ferry's {"error": ...} answer into an *Error.
func apiError(req *http.Request, resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	e := &Error{Method: req.Method, Path: req.URL.Path, Status: resp.StatusCode}
	var body map[string]any
	if json.Unmarshal(data, &body) == nil {
		for k, v := range body {
			s, ok := v.(string)
			if !ok {
				continue
			}
			if k == "error" {
				e.Message = s
				continue
			}
			if e.Detail == nil {
				e.Detail = map[string]string{}
			}
			e.Detail[k] = s
		}
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(data))
	}
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "…"
	}
	return e
}

// getJSON reads path into out and returns the answer as it came.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, out any) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := c.request(ctx, http.MethodGet, path, query, nil, "")
	if err != nil {
		return nil, err
	}
	data, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return data, nil
}

// postJSON sends body as JSON (nothing when nil) and reads the answer into out.
func (c *Client) postJSON(ctx context.Context, path string, body, out any, want ...int) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	var r io.Reader
	ct := ""
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r, ct = bytes.NewReader(b), "application/json"
	}
	req, err := c.request(ctx, http.MethodPost, path, nil, r, ct)
	if err != nil {
		return nil, err
	}
	data, err := c.do(req, want...)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return nil, fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	return data, nil
}

// appPath is the API path of app, its name escaped.
func appPath(app string) string { return "/api/v1/apps/" + url.PathEscape(app) }

// syncPath is the API path of a sync.
func syncPath(id string) string { return "/api/v1/syncs/" + url.PathEscape(id) }

// Suspension says whether an app is suspended, by whom, why and since when.
type Suspension struct {
	App       string    `json:"app"`
	Suspended bool      `json:"suspended"`
	By        string    `json:"by,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	At        time.Time `json:"at,omitzero"`
	// Raw is the answer as ferry sent it.
	Raw json.RawMessage `json:"-"`
}

// App is a configured app and where it stands.
type App struct {
	Name      string   `json:"name"`
	Repo      string   `json:"repo"`
	Path      string   `json:"path"`
	Namespace string   `json:"namespace,omitempty"`
	Branch    string   `json:"branch"`
	Prune     bool     `json:"prune"`
	DependsOn []string `json:"dependsOn,omitempty"`
	// Cluster names the cluster the app deploys to, on servers that deploy to several.
	Cluster string `json:"cluster,omitempty"`
	// Suspension is set on servers that tell whether the app is suspended.
	Suspension *Suspension    `json:"suspension,omitempty"`
	LastSync   *queue.Record  `json:"lastSync,omitempty"`
	History    []queue.Record `json:"history,omitempty"`
	// Raw is the app as ferry sent it (GET /api/v1/apps/{app} only).
	Raw json.RawMessage `json:"-"`
}

// Suspended reports whether the app is suspended.
func (a App) Suspended() bool { return a.Suspension != nil && a.Suspension.Suspended }

// AppList is GET /api/v1/apps.
type AppList struct {
	Apps []App `json:"apps"`
	// Raw is the answer as ferry sent it.
	Raw json.RawMessage `json:"-"`
}

// Apps lists the configured apps with their last sync.
func (c *Client) Apps(ctx context.Context) (AppList, error) {
	var l AppList
	raw, err := c.getJSON(ctx, "/api/v1/apps", nil, &l)
	l.Raw = raw
	return l, err
}

// App reads one app with its recent syncs, newest first.
func (c *Client) App(ctx context.Context, name string) (App, error) {
	var a App
	raw, err := c.getJSON(ctx, appPath(name), nil, &a)
	a.Raw = raw
	return a, err
}

// Sync reads the record of one sync.
func (c *Client) Sync(ctx context.Context, id string) (queue.Record, json.RawMessage, error) {
	var r queue.Record
	raw, err := c.getJSON(ctx, syncPath(id), nil, &r)
	return r, raw, err
}

// SyncOptions are a manual sync's settings.
type SyncOptions struct {
	// Revision is a full commit sha, the app's branch or a tag; empty syncs the branch head.
	Revision string `json:"revision,omitempty"`
	// Force syncs a suspended app anyway.
	Force bool `json:"force,omitempty"`
}

// Queued is a sync that ferry stored: its id, app and page.
type Queued struct {
	ID  string `json:"id"`
	App string `json:"app"`
	SHA string `json:"sha,omitempty"`
	URL string `json:"url"`
	// Raw is the answer as ferry sent it.
	Raw json.RawMessage `json:"-"`
}

// TriggerSync queues a manual sync of app (POST /api/v1/apps/{app}/sync). A suspended app
// answers 409 unless opts.Force.
func (c *Client) TriggerSync(ctx context.Context, app string, opts SyncOptions) (Queued, error) {
	if err := c.needToken("sync"); err != nil {
		return Queued{}, err
	}
	var q Queued
	raw, err := c.postJSON(ctx, appPath(app)+"/sync", opts, &q, http.StatusAccepted)
	q.Raw = raw
	return q, err
}

// Suspend suspends app: no push, poll or drift sync applies it until it is resumed.
func (c *Client) Suspend(ctx context.Context, app, reason string) (Suspension, error) {
	if err := c.needToken("suspend"); err != nil {
		return Suspension{}, err
	}
	var body any
	if reason != "" {
		body = map[string]string{"reason": reason}
	}
	var s Suspension
	raw, err := c.postJSON(ctx, appPath(app)+"/suspend", body, &s, http.StatusOK)
	s.Raw = raw
	return s, err
}

// Resume resumes app and queues a sync of its branch head.
func (c *Client) Resume(ctx context.Context, app string) (Queued, error) {
	if err := c.needToken("resume"); err != nil {
		return Queued{}, err
	}
	var q Queued
	raw, err := c.postJSON(ctx, appPath(app)+"/resume", nil, &q, http.StatusAccepted)
	q.Raw = raw
	return q, err
}

// DiffResult is what applying a local directory would do to the app's cluster.
type DiffResult struct {
	// Diff is the change in the preview's format, Secrets' values masked.
	Diff    string               `json:"diff"`
	Summary string               `json:"summary,omitempty"`
	Counts  map[string]int       `json:"counts"`
	Objects []queue.ObjectRecord `json:"objects"`
	// Raw is the answer as ferry sent it.
	Raw json.RawMessage `json:"-"`
}

// Diff sends archive (a gzip-compressed tar of the directory, see Archive) to be rendered as
// app's path and dry-run against its cluster. A render or plan failure is an *Error with
// status 422 whose Detail names the stage, object and file.
func (c *Client) Diff(ctx context.Context, app string, archive []byte) (DiffResult, error) {
	if err := c.needToken("diff"); err != nil {
		return DiffResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, DiffTimeout)
	defer cancel()
	path := appPath(app) + "/diff"
	req, err := c.request(ctx, http.MethodPost, path, nil, bytes.NewReader(archive), "application/gzip")
	if err != nil {
		return DiffResult{}, err
	}
	data, err := c.do(req)
	if err != nil {
		return DiffResult{}, err
	}
	var d DiffResult
	if err := json.Unmarshal(data, &d); err != nil {
		return DiffResult{}, fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	d.Raw = data
	return d, nil
}
