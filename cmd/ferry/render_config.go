package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops"
	"github.com/ferrygitops/ferry/syncer/source/charts"
)

// HelmConf renders an app as a Helm chart: the chart in the app's directory (it holds a
// Chart.yaml), or a remote one named by Chart.
type HelmConf struct {
	// ReleaseName is .Release.Name; the app's name when unset.
	ReleaseName string `json:"releaseName,omitempty"`
	// ValuesFiles are read from the commit, relative to the app's path ("/" starts at the
	// repository root), and merged in order over the chart's values; Values are merged last.
	ValuesFiles []string       `json:"valuesFiles,omitempty"`
	Values      map[string]any `json:"values,omitempty"`
	// IncludeCRDs applies the CRDs of the chart's crds/ directory (the default, as helm install).
	IncludeCRDs *bool `json:"includeCRDs,omitempty"`
	// Chart names a remote chart: oci://registry/path/name, or a name in the chart repository
	// at RepoURL. Version is an exact version or a semver range; empty is the newest.
	Chart   string `json:"chart,omitempty"`
	RepoURL string `json:"repoURL,omitempty"`
	Version string `json:"version,omitempty"`
	// PlainHTTP reaches an OCI registry over http (a registry on a private network).
	PlainHTTP bool `json:"plainHTTP,omitempty"`
	// Username and Password log in to the chart repository or registry.
	Username string     `json:"username,omitempty"`
	Password *SecretRef `json:"password,omitempty"`
}

// Decryption holds the keys an app's SOPS-encrypted files are decrypted with.
type Decryption struct {
	// Age are age identity files (each may hold several identities).
	Age SecretRefs `json:"age"`
}

// SecretRefs is one SecretRef or a list of them.
type SecretRefs []SecretRef

// UnmarshalJSON takes `{file: …}` as well as `[{file: …}, {env: …}]`.
func (s *SecretRefs) UnmarshalJSON(b []byte) error {
	if t := strings.TrimSpace(string(b)); strings.HasPrefix(t, "{") {
		var one SecretRef
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = SecretRefs{one}
		return nil
	}
	var many []SecretRef
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// VarSource is a ConfigMap or Secret in the app's cluster whose data an app's variables are
// read from at sync time.
type VarSource struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Namespace defaults to the inventory namespace (ferry-system).
	Namespace string `json:"namespace,omitempty"`
	// Optional skips a source that does not exist instead of failing the sync.
	Optional bool `json:"optional,omitempty"`
}

// validateRendering checks what an app asks of its render: chart, variables and keys.
func (a *AppConf) validateRendering(bad func(string, ...any), where string) {
	if h := a.Helm; h != nil {
		if h.ReleaseName != "" {
			if errs := validation.IsDNS1123Label(h.ReleaseName); len(errs) > 0 || len(h.ReleaseName) > maxReleaseName {
				bad("%s: helm.releaseName %q must be a DNS label of at most %d characters", where, h.ReleaseName, maxReleaseName)
			}
		}
		for _, f := range h.ValuesFiles {
			if f == "" || path.Clean(f) == "." || strings.HasSuffix(f, "/") {
				bad("%s: helm.valuesFiles: %q is not a file path", where, f)
			}
		}
		switch {
		case strings.HasPrefix(h.Chart, "oci://"):
			if h.RepoURL != "" {
				bad("%s: helm: an oci:// chart takes no repoURL", where)
			}
			if u, err := url.Parse(h.Chart); err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
				bad("%s: helm.chart %q must be oci://registry/path/name", where, h.Chart)
			}
		case h.Chart != "":
			if h.RepoURL == "" {
				bad("%s: helm.chart %q needs repoURL (a chart repository) or an oci:// reference", where, h.Chart)
			} else if u, err := url.Parse(h.RepoURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
				bad("%s: helm.repoURL %q must be an http(s) URL without credentials", where, h.RepoURL)
			}
			if strings.Contains(h.Chart, "/") {
				bad("%s: helm.chart %q must be a chart name in repoURL", where, h.Chart)
			}
		default:
			if h.RepoURL != "" || h.Version != "" || h.PlainHTTP || h.Username != "" || h.Password != nil {
				bad("%s: helm: repoURL, version, plainHTTP and credentials need chart (a remote chart)", where)
			}
		}
		if (h.Username == "") != (h.Password == nil) && h.Chart != "" {
			bad("%s: helm: username and password go together", where)
		}
	}
	for k := range a.Substitute {
		if !render.ValidVariableName(k) {
			bad("%s: substitute: %q is not a variable name (letters, digits and _, not starting with a digit)", where, k)
		}
	}
	for i, s := range a.SubstituteFrom {
		if s.Kind != "ConfigMap" && s.Kind != "Secret" {
			bad("%s: substituteFrom[%d]: kind must be ConfigMap or Secret", where, i)
		}
		if errs := validation.IsDNS1123Subdomain(s.Name); len(errs) > 0 {
			bad("%s: substituteFrom[%d]: name %q is not a valid object name", where, i, s.Name)
		}
		if s.Namespace != "" && len(validation.IsDNS1123Label(s.Namespace)) > 0 {
			bad("%s: substituteFrom[%d]: namespace %q is not a valid namespace", where, i, s.Namespace)
		}
	}
	if a.StrictSubstitute && len(a.Substitute) == 0 && len(a.SubstituteFrom) == 0 {
		bad("%s: strictSubstitute needs substitute or substituteFrom", where)
	}
}

// maxReleaseName is Helm's own bound on release names.
const maxReleaseName = 53

// resolveKeys parses the age identities of each repository and app; an app without its own
// takes its repository's. Errors name the field, never key material.
func resolveKeys(c *Config, getenv func(string) string) (map[string]*sops.Keys, error) {
	var errs []error
	parse := func(where string, d *Decryption) *sops.Keys {
		if d == nil {
			return nil
		}
		if len(d.Age) == 0 {
			errs = append(errs, fmt.Errorf("%s: decryption.age: at least one identity file is required", where))
			return nil
		}
		var files [][]byte
		for i := range d.Age {
			v, err := d.Age[i].resolve(getenv)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: decryption.age[%d]: %w", where, i, err))
				return nil
			}
			files = append(files, v)
		}
		k, err := sops.ParseAgeIdentities(files...)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: decryption.age: %w", where, err))
			return nil
		}
		return k
	}
	repoKeys := map[string]*sops.Keys{}
	for _, r := range c.Repos {
		repoKeys[r.Name] = parse("repo "+r.Name, r.Decryption)
	}
	out := map[string]*sops.Keys{}
	for _, a := range c.Apps {
		if a.Decryption != nil {
			out[a.Name] = parse("app "+a.Name, a.Decryption)
		} else {
			out[a.Name] = repoKeys[a.Repo]
		}
	}
	return out, errors.Join(errs...)
}

// resolveChartAuth reads the password of each remote chart that has credentials.
func resolveChartAuth(c *Config, getenv func(string) string) (map[string]*charts.Credentials, error) {
	var errs []error
	out := map[string]*charts.Credentials{}
	for _, a := range c.Apps {
		if a.Helm == nil || a.Helm.Password == nil {
			continue
		}
		v, err := a.Helm.Password.resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("app %s: helm.password: %w", a.Name, err))
			continue
		}
		out[a.Name] = &charts.Credentials{Username: a.Helm.Username, Password: strings.TrimSpace(string(v))}
	}
	return out, errors.Join(errs...)
}
