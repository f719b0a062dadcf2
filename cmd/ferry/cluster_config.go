package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/syncer/target"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// ClusterConf is a cluster ferry deploys to besides its own (the one of --kubeconfig, or the
// cluster it runs in, called target.DefaultCluster): apps name it with cluster, or list it in
// their targets.
type ClusterConf struct {
	Name string `json:"name"`
	// Kubeconfig is a kubeconfig file, or an environment variable holding one (by reference,
	// like every secret).
	Kubeconfig *SecretRef `json:"kubeconfig"`
	// Context picks one of the kubeconfig's contexts; its current-context when unset.
	Context string `json:"context,omitempty"`
	// MaxConcurrentSyncs bounds how many of a replica's workers the deploys of this cluster's
	// apps may hold at once, so that a slow cluster cannot take them all; 0 is
	// queue.DefaultLaneLimit (all workers but one). See syncLanes.
	MaxConcurrentSyncs int `json:"maxConcurrentSyncs,omitempty"`
}

// DefaultClusterConf holds the settings of ferry's own cluster (target.DefaultCluster), which
// is not listed in clusters.
type DefaultClusterConf struct {
	// MaxConcurrentSyncs is ClusterConf.MaxConcurrentSyncs for ferry's own cluster.
	MaxConcurrentSyncs int `json:"maxConcurrentSyncs,omitempty"`
}

// TargetConf is one cluster a matrix app (an app with targets) deploys to: it makes an app of
// its own, named <app>-<cluster> unless Name says otherwise, with the matrix app's settings and
// these on top.
type TargetConf struct {
	Cluster string `json:"cluster"`
	// Name is the app this target makes; <app>-<cluster> when unset.
	Name string `json:"name,omitempty"`
	// Namespace replaces the app's namespace on this cluster.
	Namespace string `json:"namespace,omitempty"`
	// Substitute is laid over the app's substitute on this cluster.
	Substitute map[string]string `json:"substitute,omitempty"`
}

// expandTargets replaces each matrix app by one app per target, in place, and resolves the
// dependsOn of the apps they make: a matrix app that depends on another matrix app depends, on
// each cluster, on that app's instance on the same cluster. It runs before the apps are checked,
// which then check the apps made like any other.
func (c *Config) expandTargets(bad func(string, ...any)) {
	taken := map[string]bool{}
	for _, a := range c.Apps {
		if len(a.Targets) == 0 {
			taken[a.Name] = true
		}
	}
	// instances maps each matrix app to its apps by cluster; made lists them in order.
	instances := map[string]map[string]string{}
	type madeApp struct {
		t    TargetConf
		name string
	}
	made := map[string][]madeApp{}
	for _, a := range c.Apps {
		if len(a.Targets) == 0 || a.Name == "" {
			continue
		}
		where := "app " + a.Name
		if taken[a.Name] || instances[a.Name] != nil {
			bad("%s: duplicate app name", where)
			continue
		}
		if a.Cluster != "" {
			bad("%s: cluster and targets exclude each other: list every cluster in targets", where)
		}
		byCluster := map[string]string{}
		for i, t := range a.Targets {
			switch {
			case t.Cluster == "":
				bad("%s: targets[%d]: cluster is required", where, i)
				continue
			case byCluster[t.Cluster] != "":
				bad("%s: targets: cluster %s is listed twice", where, t.Cluster)
				continue
			}
			name := t.Name
			if name == "" {
				name = a.Name + "-" + t.Cluster
			}
			switch {
			case !queue.ValidName(name):
				bad("%s: targets: cluster %s makes app %q, not a DNS label (at most 63 of a-z, 0-9, -); set the target's name", where, t.Cluster, name)
				continue
			case taken[name]:
				bad("%s: targets: cluster %s makes app %s, which is already an app's name; set the target's name", where, t.Cluster, name)
				continue
			}
			taken[name] = true
			byCluster[t.Cluster] = name
			made[a.Name] = append(made[a.Name], madeApp{t, name})
		}
		instances[a.Name] = byCluster
	}
	if len(instances) == 0 {
		return
	}
	for n := range instances {
		if taken[n] {
			bad("app %s: the name of a matrix app is also an app made by targets", n)
		}
	}
	var out []AppConf
	emitted := map[string]bool{}
	for _, a := range c.Apps {
		if a.Name == "" {
			out = append(out, a) // its missing name is reported with the apps'
			continue
		}
		if len(a.Targets) == 0 {
			for _, d := range a.DependsOn {
				if m := instances[d]; m != nil && d != a.Name {
					bad("app %s: dependsOn %s names a matrix app; name one of its apps (%s)", a.Name, d, strings.Join(slices.Sorted(maps.Values(m)), ", "))
				}
			}
			out = append(out, a)
			continue
		}
		if emitted[a.Name] {
			continue
		}
		emitted[a.Name] = true
		for _, m := range made[a.Name] {
			out = append(out, a.instance(m.t, m.name, instances, bad))
		}
	}
	c.Apps = out
}

// instance is matrix app a's app on t.Cluster, called name.
func (a AppConf) instance(t TargetConf, name string, instances map[string]map[string]string, bad func(string, ...any)) AppConf {
	in := a
	in.Name, in.Cluster, in.Targets = name, t.Cluster, nil
	if t.Namespace != "" {
		in.Namespace = t.Namespace
	}
	if a.Substitute != nil || t.Substitute != nil {
		in.Substitute = maps.Clone(a.Substitute)
		if in.Substitute == nil {
			in.Substitute = map[string]string{}
		}
		maps.Copy(in.Substitute, t.Substitute)
	}
	in.DependsOn = nil
	for _, d := range a.DependsOn {
		m := instances[d]
		switch {
		case m == nil:
			in.DependsOn = append(in.DependsOn, d)
		case m[t.Cluster] != "":
			in.DependsOn = append(in.DependsOn, m[t.Cluster])
		default:
			bad("app %s: dependsOn %s: %s has no target on cluster %s; name one of its apps (%s)", a.Name, d, d, t.Cluster,
				strings.Join(slices.Sorted(maps.Values(m)), ", "))
		}
	}
	return in
}

// validateClusters checks the clusters' names and references, and every app's cluster.
func (c *Config) validateClusters(bad func(string, ...any)) {
	names := map[string]bool{target.DefaultCluster: true}
	for i, cl := range c.Clusters {
		where := fmt.Sprintf("clusters[%d]", i)
		if cl.Name != "" {
			where = "cluster " + cl.Name
		}
		switch {
		case cl.Name == "":
			bad("%s: name is required", where)
		case cl.Name == target.DefaultCluster:
			bad("%s: the name %s is ferry's own cluster (--kubeconfig, or the cluster it runs in); choose another", where, target.DefaultCluster)
		case !queue.ValidName(cl.Name):
			bad("%s: name must be a DNS label: lowercase letters, digits and -, at most 63", where)
		case names[cl.Name]:
			bad("%s: duplicate cluster name", where)
		}
		names[cl.Name] = true
		switch k := cl.Kubeconfig; {
		case k == nil || k.Env == "" && k.File == "":
			bad("%s: kubeconfig is required: {file: /path} or {env: VARIABLE}", where)
		case k.Env != "" && k.File != "":
			bad("%s: kubeconfig names both env and file; give one", where)
		}
		if cl.MaxConcurrentSyncs < 0 {
			bad("%s: maxConcurrentSyncs must not be negative (0: all workers but one)", where)
		}
	}
	if dc := c.DefaultCluster; dc != nil && dc.MaxConcurrentSyncs < 0 {
		bad("defaultCluster: maxConcurrentSyncs must not be negative (0: all workers but one)")
	}
	for _, a := range c.Apps {
		if a.Cluster != "" && !names[a.Cluster] {
			bad("app %s: cluster %q is not configured (clusters: %s)", a.Name, a.Cluster, strings.Join(slices.Sorted(maps.Keys(names)), ", "))
		}
	}
}

// resolveClusters reads each cluster's kubeconfig into the config of its clients. Errors name
// the cluster and the file or variable, never what the kubeconfig holds.
func resolveClusters(c *Config, getenv func(string) string) (map[string]*rest.Config, error) {
	out := map[string]*rest.Config{}
	var errs []error
	for _, cl := range c.Clusters {
		rc, err := cl.restConfig(getenv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[cl.Name] = rc
	}
	return out, errors.Join(errs...)
}

// yamlLine finds where a kubeconfig's parse error is, which is all of the parser's words that
// is shown: its other words may quote the file's content, credentials included.
var yamlLine = regexp.MustCompile(`line \d+`)

func (cl ClusterConf) restConfig(getenv func(string) string) (*rest.Config, error) {
	k := cl.Kubeconfig
	from := "kubeconfig file " + k.File
	var kc *clientcmdapi.Config
	var err error
	if k.Env != "" {
		from = "kubeconfig (environment variable " + k.Env + ")"
		data := getenv(k.Env)
		if data == "" {
			return nil, fmt.Errorf("cluster %s: %s is not set or empty", cl.Name, from)
		}
		kc, err = clientcmd.Load([]byte(data))
	} else {
		if _, serr := os.Stat(k.File); serr != nil {
			return nil, fmt.Errorf("cluster %s: cannot read %s: %w", cl.Name, from, errors.Unwrap(serr))
		}
		kc, err = clientcmd.LoadFromFile(k.File)
	}
	if err != nil {
		msg := "not a kubeconfig (YAML or JSON)"
		if l := yamlLine.FindString(err.Error()); l != "" {
			msg += " at " + l
		}
		return nil, fmt.Errorf("cluster %s: %s: %s", cl.Name, from, msg)
	}
	name := cl.Context
	if name == "" {
		name = kc.CurrentContext
	}
	kctx := kc.Contexts[name]
	switch {
	case name == "":
		return nil, fmt.Errorf("cluster %s: %s has no current-context; set the cluster's context", cl.Name, from)
	case kctx == nil:
		return nil, fmt.Errorf("cluster %s: %s has no context %q (contexts: %s)", cl.Name, from, name, strings.Join(slices.Sorted(maps.Keys(kc.Contexts)), ", "))
	}
	if ai := kc.AuthInfos[kctx.AuthInfo]; ai != nil {
		if ai.AuthProvider != nil {
			return nil, fmt.Errorf("cluster %s: %s: user %q uses the auth-provider plugin %q, which ferry does not carry; use an exec credential plugin or a token",
				cl.Name, from, kctx.AuthInfo, ai.AuthProvider.Name)
		}
		if ex := ai.Exec; ex != nil {
			if _, lerr := exec.LookPath(ex.Command); lerr != nil {
				return nil, fmt.Errorf("cluster %s: %s: user %q gets credentials from the exec plugin %q, which is not installed where ferry runs (not found in PATH): add it to ferry's image, or use a token",
					cl.Name, from, kctx.AuthInfo, ex.Command)
			}
		}
	}
	rc, err := clientcmd.NewNonInteractiveClientConfig(*kc, name, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %s, context %s: %w", cl.Name, from, name, err)
	}
	rc.UserAgent = "ferry/" + buildVersion()
	return rc, nil
}

// clusterOf is the cluster app a deploys to, as pages and the syncer name it.
func clusterOf(a AppConf) string {
	if a.Cluster == "" {
		return target.DefaultCluster
	}
	return a.Cluster
}

// syncLanes puts each app's deploys in the lane of its cluster, each lane bounded by its
// cluster's maxConcurrentSyncs (defaultCluster's for ferry's own), so that syncs stuck on one
// slow cluster cannot hold every worker of a replica while other clusters' jobs wait. With no
// cluster besides ferry's own there is nothing to keep apart: every app may use every worker,
// unless defaultCluster sets a bound.
// A job of an app no longer configured is in no lane; it only ends with a final status.
func syncLanes(cfg *Config) (lane func(app string) string, limit func(lane string) int) {
	if len(cfg.Clusters) == 0 && (cfg.DefaultCluster == nil || cfg.DefaultCluster.MaxConcurrentSyncs == 0) {
		return nil, nil
	}
	limits := map[string]int{}
	if cfg.DefaultCluster != nil {
		limits[target.DefaultCluster] = cfg.DefaultCluster.MaxConcurrentSyncs
	}
	for _, cl := range cfg.Clusters {
		limits[cl.Name] = cl.MaxConcurrentSyncs
	}
	// A missing or zero limit is the queue's default.
	return appClusters(cfg), func(lane string) int { return limits[lane] }
}

// targetConfigs are the clusters of the target set: ferry's own first, then the configured ones.
func targetConfigs(def *rest.Config, cfg *Config, sec *Secrets) []target.Config {
	out := []target.Config{{Name: target.DefaultCluster, Rest: def}}
	for _, cl := range cfg.Clusters {
		out = append(out, target.Config{Name: cl.Name, Rest: sec.Clusters[cl.Name]})
	}
	return out
}
