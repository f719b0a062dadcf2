package handlers

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// hmacSHA256 is the MAC every forge signs with; only the encoding of the result differs.
func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// verifyHexMAC checks a hex HMAC-SHA256 of body in constant time. The received value never
// reaches the error: it is attacker-chosen and, for a near miss, worth nothing to a reader.
func verifyHexMAC(header, received string, body, secret []byte) error {
	got, err := hexMAC(header, received, secret)
	if err != nil {
		return err
	}
	if !hmac.Equal(got, hmacSHA256(secret, body)) {
		return fmt.Errorf("%s header does not match the body: %w", header, ErrSignature)
	}
	return nil
}

// hexMAC decodes a received hex HMAC-SHA256, refusing what cannot be one, and any MAC when no
// secret is configured. It needs no body, so a delivery it refuses is refused unread.
func hexMAC(header, received string, secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, fmt.Errorf("no webhook secret is configured: %w", ErrSignature)
	}
	if received == "" {
		return nil, fmt.Errorf("missing %s header: %w", header, ErrSignature)
	}
	got, err := hex.DecodeString(received)
	if err != nil || len(got) != sha256.Size {
		return nil, fmt.Errorf("%s header is not a hex sha256 mac: %w", header, ErrSignature)
	}
	return got, nil
}

// equalToken compares a shared token in constant time, length included: both sides are hashed
// first so that ConstantTimeCompare's early return on a length mismatch says nothing.
func equalToken(got string, want []byte) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256(want)
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// firstHeader returns the first non-empty value among names, so one provider can read both the
// Gitea and the Forgejo spelling of a header.
func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// deliveryID reads a forge's delivery id, refusing absurd lengths because the id ends up in
// every job's de-duplication id and in log lines.
func deliveryID(h http.Header, names ...string) (string, error) {
	id := strings.TrimSpace(firstHeader(h, names...))
	if len(id) > maxDeliveryIDBytes {
		return "", fmt.Errorf("delivery id is longer than %d bytes: %w", maxDeliveryIDBytes, ErrPayload)
	}
	return id, nil
}

// isZeroSHA reports whether sha is the all-zero object id forges send for "no commit":
// the before of a new branch or the after of a deleted one. Empty counts as zero.
func isZeroSHA(sha string) bool {
	return strings.Trim(sha, "0") == ""
}

// pathSet collects changed paths without duplicates and returns them sorted, so events are
// deterministic whatever order the forge listed commits in.
type pathSet map[string]struct{}

func (s pathSet) add(lists ...[]string) {
	for _, l := range lists {
		for _, p := range l {
			if p != "" {
				s[p] = struct{}{}
			}
		}
	}
}

func (s pathSet) sorted() []string {
	if len(s) == 0 {
		return nil
	}
	out := make([]string, 0, len(s))
	for p := range s {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}
