package apply

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"

	"github.com/ferrygitops/ferry/syncer/render"
)

// Capabilities are what a chart may ask of the cluster: the apiserver's version and every
// served group version and kind, read through the engine's discovery cache (refreshed when a
// sync meets a kind it does not know, as after new CRDs). Groups whose discovery fails (an
// aggregated API that is down) are left out rather than failing every chart.
func (e *Engine) Capabilities(ctx context.Context) (render.Capabilities, error) {
	v, err := e.disc.ServerVersion()
	if err != nil {
		return render.Capabilities{}, fmt.Errorf("read the cluster's version: %w", err)
	}
	_, lists, err := e.disc.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return render.Capabilities{}, fmt.Errorf("discover the cluster's APIs: %w", err)
	}
	caps := render.Capabilities{KubeVersion: v.GitVersion}
	for _, l := range lists {
		caps.APIVersions = append(caps.APIVersions, l.GroupVersion)
		for _, r := range l.APIResources {
			if !strings.Contains(r.Name, "/") {
				caps.APIVersions = append(caps.APIVersions, l.GroupVersion+"/"+r.Kind)
			}
		}
	}
	return caps, nil
}

// ErrNotFound marks a ConfigMap or Secret that Data did not find, so that optional variable
// sources can be skipped.
var ErrNotFound = errors.New("not found")

// Data reads the data of a ConfigMap or Secret (kind "ConfigMap" or "Secret"), for variables
// an app takes from the cluster. Errors classify with IsTransient like the engine's own.
func (e *Engine) Data(ctx context.Context, kind, namespace, name string) (map[string]string, error) {
	out := map[string]string{}
	var err error
	switch kind {
	case "ConfigMap":
		var cm *corev1.ConfigMap
		if cm, err = e.core.ConfigMaps(namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
			maps.Copy(out, cm.Data)
			for k, v := range cm.BinaryData {
				out[k] = string(v)
			}
		}
	case "Secret":
		var s *corev1.Secret
		if s, err = e.core.Secrets(namespace).Get(ctx, name, metav1.GetOptions{}); err == nil {
			for k, v := range s.Data {
				out[k] = string(v)
			}
		}
	default:
		return nil, fmt.Errorf("read %s %s/%s: only ConfigMaps and Secrets hold variables", kind, namespace, name)
	}
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("read %s %s/%s: %w", kind, namespace, name, err)
	}
	return out, nil
}
