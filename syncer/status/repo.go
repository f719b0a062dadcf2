package status

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ParseRepoURL finds the owner and name a forge API knows a repository by, from the clone URL in
// ferry's config, so the config needs no separate owner/name fields. It accepts https and http,
// ssh:// and git:// URLs and the scp-like form git@host:owner/name. The owner keeps every path
// segment but the last, which is how GitLab names nested groups (g/sub/proj → owner g/sub, name
// proj). A trailing ".git" or "/" is dropped. Errors never repeat the URL's user info, which may
// hold a token.
func ParseRepoURL(cloneURL string) (owner, name string, err error) {
	raw := strings.TrimSpace(cloneURL)
	if raw == "" {
		return "", "", errors.New("repository url is empty")
	}

	var host, path, shown string
	if strings.Contains(raw, "://") {
		u, perr := url.Parse(raw)
		if perr != nil {
			// url.Error repeats the input, user info included: keep only the reason.
			if ue, ok := errors.AsType[*url.Error](perr); ok {
				perr = ue.Err
			}
			return "", "", fmt.Errorf("parse repository url: %w", perr)
		}
		shown = u.Redacted()
		switch u.Scheme {
		case "https", "http", "ssh", "git", "git+ssh", "ssh+git":
		default:
			return "", "", fmt.Errorf("repository url %s: unsupported scheme %q (want https, http, ssh or git)", shown, u.Scheme)
		}
		host, path = u.Hostname(), u.Path
	} else {
		// scp-like: [user@]host:path. A "/" before the first ":" means a local path, not a host.
		colon := strings.Index(raw, ":")
		if colon < 0 || strings.Contains(raw[:colon], "/") {
			return "", "", errors.New("repository url is neither a URL with a scheme nor scp-like user@host:owner/name")
		}
		host = raw[:colon]
		if i := strings.LastIndex(host, "@"); i >= 0 {
			host = host[i+1:]
		}
		path = raw[colon+1:]
		shown = host + ":" + path
	}
	if host == "" {
		return "", "", fmt.Errorf("repository url %s has no host", shown)
	}

	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	segments := strings.Split(path, "/")
	if len(segments) < 2 {
		return "", "", fmt.Errorf("repository url %s: path %q needs an owner and a name", shown, path)
	}
	for _, s := range segments {
		if s == "" || s == "." || s == ".." {
			return "", "", fmt.Errorf("repository url %s: path %q has an empty or relative segment", shown, path)
		}
	}
	last := len(segments) - 1
	return strings.Join(segments[:last], "/"), segments[last], nil
}
