package sops

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFlatPath(t *testing.T) {
	for key, want := range map[string][]any{
		"mac":                  {"mac"},
		"age__list_0__map_enc": {"age", 0, "enc"},
		"key_groups__list_1__map_age__list_2__map_r": {"key_groups", 1, "age", 2, "r"},
		"unencrypted_suffix":                         {"unencrypted_suffix"},
	} {
		got, err := flatPath(key)
		if err != nil || !cmp.Equal(got, want) {
			t.Errorf("flatPath(%q) = %v, %v; want %v", key, got, err, want)
		}
	}
	for _, bad := range []string{"age__list_x", "age__list_-1__map_enc", "age__list_99999999"} {
		if _, err := flatPath(bad); err == nil {
			t.Errorf("flatPath(%q): no error, want a bad list position", bad)
		}
	}
}

// TestInvalidRegexMatchesNothing: sops matches with regexp.Match and ignores its error, so an
// encrypted_regex that does not compile selects no value; this package reads it the same way.
func TestInvalidRegexMatchesNothing(t *testing.T) {
	md, err := parseMetadata(mapping{
		{key: "lastmodified", value: "2026-01-01T00:00:00Z"},
		{key: "version", value: "3.13.3"},
		{key: "encrypted_regex", value: "(unclosed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWalker(md, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if w.encrypted([]string{"(unclosed"}) || w.encrypted([]string{"data", "x"}) {
		t.Error("an encrypted_regex that does not compile selected a value")
	}
}

// TestCombineShares splits a secret with a polynomial of degree 1 (threshold 2) by hand and
// recovers it from every pair of shares; a duplicate share is refused.
func TestCombineShares(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	slope := bytes.Repeat([]byte{0x5c}, len(secret))
	share := func(x byte) []byte {
		s := make([]byte, len(secret)+1)
		for i := range secret {
			s[i] = secret[i] ^ gfMul(slope[i], x) // secret + slope·x
		}
		s[len(secret)] = x
		return s
	}
	a, b, c := share(1), share(2), share(200)
	for _, pair := range [][][]byte{{a, b}, {b, c}, {c, a}, {a, b, c}} {
		got, err := combineShares(pair)
		if err != nil || !bytes.Equal(got, secret) {
			t.Errorf("combine %d shares = %q, %v; want %q", len(pair), got, err, secret)
		}
	}
	if _, err := combineShares([][]byte{a, a}); err == nil {
		t.Error("two copies of one share combined")
	}
	for x := 1; x < 256; x++ {
		if gfMul(byte(x), gfDiv(1, byte(x))) != 1 {
			t.Fatalf("gfDiv(1, %d) is not %d's inverse", x, x)
		}
	}
}
