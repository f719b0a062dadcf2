package charts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
)

// listedVersions is how many of the available versions an ErrVersionNotFound lists, newest
// first: enough to spot a typo without pasting a whole index into a commit status.
const listedVersions = 5

// isExact reports whether want names one version ("1.2.3", "v1.2.3-rc.1") rather than a
// constraint ("1.2.x", ">=1.2 <2", "^1") or the newest stable (empty).
func isExact(want string) bool {
	_, err := semver.StrictNewVersion(strings.TrimPrefix(want, "v"))
	return err == nil
}

// resolveVersion picks, among the versions a source offers, the one want asks for: the same
// string, or the same semantic version when want is exact, the highest match of a constraint,
// or the highest version without a pre-release when want is empty. Versions that are not
// semantic versions can only be asked for exactly.
func resolveVersion(available []string, want string) (string, error) {
	if want != "" && slices.Contains(available, want) {
		return want, nil
	}
	if isExact(want) {
		w := semver.MustParse(want)
		for _, v := range available {
			if sv, err := semver.NewVersion(v); err == nil && sv.Equal(w) {
				return v, nil
			}
		}
		return "", notFound(available, want)
	}
	var c *semver.Constraints
	if want != "" {
		var err error
		if c, err = semver.NewConstraint(want); err != nil {
			return "", fmt.Errorf("%w: version %q is neither a version nor a constraint: %v", ErrBadRef, want, err)
		}
	}
	var best *semver.Version
	bestRaw := ""
	for _, v := range available {
		sv, err := semver.NewVersion(v)
		if err != nil {
			continue
		}
		if c == nil && sv.Prerelease() != "" || c != nil && !c.Check(sv) {
			continue
		}
		if best == nil || sv.GreaterThan(best) {
			best, bestRaw = sv, v
		}
	}
	if best == nil {
		return "", notFound(available, want)
	}
	return bestRaw, nil
}

// notFound says that want is not among available, listing the newest few.
func notFound(available []string, want string) error {
	what := fmt.Sprintf("no version matches %q", want)
	if want == "" {
		what = "no stable version"
	}
	if len(available) == 0 {
		return fmt.Errorf("%w: %s; the source offers no versions", ErrVersionNotFound, what)
	}
	sorted := slices.Clone(available)
	slices.SortFunc(sorted, func(a, b string) int {
		va, erra := semver.NewVersion(a)
		vb, errb := semver.NewVersion(b)
		switch {
		case erra != nil && errb != nil:
			return strings.Compare(a, b)
		case erra != nil:
			return 1
		case errb != nil:
			return -1
		}
		return vb.Compare(va)
	})
	more := ""
	if len(sorted) > listedVersions {
		more = fmt.Sprintf(" and %d more", len(sorted)-listedVersions)
		sorted = sorted[:listedVersions]
	}
	return fmt.Errorf("%w: %s; available: %s%s", ErrVersionNotFound, what, strings.Join(sorted, ", "), more)
}
