package syncer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"

	"github.com/ferrygitops/ferry/syncer/apply"
	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops"
	"github.com/ferrygitops/ferry/syncer/source/charts"
)

// StageCluster is what a render reads of the app's cluster before it starts: the capabilities a
// chart sees, the variables of substituteFrom.
const StageCluster Stage = "cluster"

// Charts fetches remote charts (chart repositories, OCI registries), in the fetch stage.
type Charts interface {
	Fetch(ctx context.Context, ref charts.Ref, creds *charts.Credentials) (*charts.Chart, error)
}

// Cluster is what a render reads of the app's cluster.
type Cluster interface {
	Capabilities(ctx context.Context) (render.Capabilities, error)
	Data(ctx context.Context, kind, namespace, name string) (map[string]string, error)
}

// VarSource is a ConfigMap or Secret whose data give an app's variables.
type VarSource struct {
	Kind, Namespace, Name string
	// Optional skips a source that does not exist.
	Optional bool
}

// Rendering is how an app renders beyond its path: its chart, keys and variables. The zero
// value renders the path as it is, a chart there with Helm's defaults.
type Rendering struct {
	// Helm is the chart's settings (release name, values); Capabilities, Archive and Ref are
	// filled at each sync.
	Helm render.Helm
	// Chart names a remote chart and ChartAuth its credentials; nil: the chart, if any, is in
	// the app's path.
	Chart     *charts.Ref
	ChartAuth *charts.Credentials
	// Keys decrypt the app's SOPS-encrypted files; nil: an encrypted file fails the render.
	Keys *sops.Keys
	// Vars and VarsFrom (later sources win, Vars over all) are substituted in the manifests.
	Vars       map[string]string
	VarsFrom   []VarSource
	StrictVars bool
}

// prepared is what a render of one app at one commit needs: its files (decrypted as read)
// and options, and the remote chart it renders, if any ("ref@digest").
type prepared struct {
	files fs.FS
	opts  render.Options
	chart string
}

// prepare fetches what the render of app needs besides the commit: the remote chart (fetch
// stage), the cluster's capabilities when the app is a chart and its variables (cluster stage).
func (s *Syncer) prepare(ctx context.Context, app App, files fs.FS) (prepared, error) {
	p := prepared{files: sops.NewFS(files, app.Render.Keys), opts: s.renderOptions(app)}
	helm := p.opts.Helm
	if app.Render.Chart != nil {
		c, err := s.charts.Fetch(ctx, *app.Render.Chart, app.Render.ChartAuth)
		if err != nil {
			return p, at(StageFetch, err)
		}
		helm.Archive, helm.Ref = c.Archive, c.Ref
		p.chart = c.Ref + "@" + c.Digest
	}
	if render.IsChart(files, app.Path, p.opts) {
		cl, err := s.target(app)
		if err != nil {
			return p, at(StageCluster, err)
		}
		caps, err := cl.Capabilities(ctx)
		if err != nil {
			return p, at(StageCluster, err)
		}
		helm.Capabilities = caps
	}
	vars, err := s.variables(ctx, app)
	if err != nil {
		return p, at(StageCluster, err)
	}
	if vars != nil {
		p.opts.Variables = &render.Variables{Values: vars, Strict: app.Render.StrictVars}
	}
	return p, nil
}

// renderOptions are app's render options before anything is fetched or read from the
// cluster: its chart settings, a remote chart named but not fetched yet.
func (s *Syncer) renderOptions(app App) render.Options {
	opts := s.opts.Render
	helm := app.Render.Helm
	helm.ReleaseName = cmp.Or(helm.ReleaseName, app.Name)
	// Like helm install and kubectl, a release with no namespace given is in "default".
	helm.Namespace = cmp.Or(helm.Namespace, app.Namespace, "default")
	if c := app.Render.Chart; c != nil {
		helm.Ref = c.Chart
	}
	opts.Helm = &helm
	return opts
}

// variables reads the app's variable sources in order and lays its own values over them; nil
// when the app substitutes nothing.
func (s *Syncer) variables(ctx context.Context, app App) (map[string]string, error) {
	r := app.Render
	if r.Vars == nil && len(r.VarsFrom) == 0 {
		return nil, nil
	}
	vars := map[string]string{}
	var cl Cluster
	if len(r.VarsFrom) > 0 {
		t, err := s.target(app)
		if err != nil {
			return nil, err
		}
		cl = t
	}
	for _, src := range r.VarsFrom {
		data, err := cl.Data(ctx, src.Kind, src.Namespace, src.Name)
		if errors.Is(err, apply.ErrNotFound) && src.Optional {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("substituteFrom: %w", err)
		}
		for k, v := range data {
			if render.ValidVariableName(k) {
				vars[k] = v
			}
		}
	}
	maps.Copy(vars, r.Vars)
	return vars, nil
}
