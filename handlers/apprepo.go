package handlers

import (
	"fmt"
	"strings"
)

// deliveryRepo is the repository a delivery is about. A GitHub App has one webhook for every
// repository it is installed on, so a delivery that reached one repository's hook may be about
// another: it is routed there when that repository authenticates as the same App (the delivery
// is signed with the App's webhook secret, and the App is installed there), and ignored
// otherwise. Repositories without an App (a token, other forges) take every delivery that
// verifies, as before: their webhook is their own.
func (h *Hooks) deliveryRepo(repo hookRepo, full string) (hookRepo, string) {
	if full == "" || repo.GitHubApp == 0 || repo.FullName == "" || strings.EqualFold(full, repo.FullName) {
		return repo, ""
	}
	for _, other := range h.repos {
		if other.GitHubApp == repo.GitHubApp && other.Provider == repo.Provider && strings.EqualFold(other.FullName, full) {
			return other, ""
		}
	}
	return repo, fmt.Sprintf("the delivery is about %s, which is neither repo %s (%s) nor another repository ferry reaches through the same GitHub App",
		truncateName(full), repo.Name, repo.FullName)
}
