package ghapp

import (
	"io"
	"net/http"
	"time"
)

// maxDrain bounds what is read of a 401's body before its connection is reused.
const maxDrain = 64 << 10

// Transport returns a RoundTripper that authenticates each request to GitHub's REST API with
// the current installation token. A 401 (the token was revoked or expired early) makes it mint
// a new token and send the request once more, when the request's body can be sent again.
func (a *App) Transport() http.RoundTripper { return &transport{app: a} }

// Client returns an *http.Client for GitHub's REST API authenticated as the installation, each
// request bounded by timeout (zero: no bound), for go-github clients: commit statuses, check
// runs.
func (a *App) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: a.Transport(), Timeout: timeout}
}

type transport struct{ app *App }

var _ http.RoundTripper = (*transport)(nil)

// RoundTrip sends req with the installation token, and again with a new one after a 401.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.app.Token(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	resp, err := t.app.opts.Base.RoundTrip(authorized(req, tok))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	// The next request gets a new token whether or not this one can be sent again.
	t.app.Refused(tok)
	if replay := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil; !replay {
		return resp, nil
	}
	fresh, err := t.app.Token(req.Context())
	if err != nil || fresh == tok {
		// No other token to try: GitHub's 401 is the answer.
		return resp, nil //nolint:nilerr // the 401 says more than a failed renewal
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	again := authorized(req, fresh)
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		again.Body = body
	}
	return t.app.opts.Base.RoundTrip(again)
}

// authorized is a copy of req carrying tok, as RoundTrippers must not change their request.
func authorized(req *http.Request, tok string) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

// closeBody closes a request body the transport will not send, as RoundTrip must.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
