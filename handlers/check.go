package handlers

import (
	"maps"
	"slices"
	"strings"
)

// Providers are the values Repo.Provider may take, sorted: the forge dialects hooks read. The
// config loader checks against this list, so that it is written once.
func Providers() []string {
	return slices.Sorted(maps.Keys(providers))
}

// CheckSecret reports a webhook secret that provider could never verify a delivery with: a
// GitLab signing token (whsec_…) that is not base64. The config loader calls it once at start,
// since NewHooks trusts its input. The error never holds the secret.
func CheckSecret(provider string, secret []byte) error {
	if provider == "gitlab" && strings.HasPrefix(string(secret), signingSecretPrefix) {
		_, err := signingKey(secret)
		return err
	}
	return nil
}
