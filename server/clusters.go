package server

import (
	"net/http"
	"time"
)

// ClusterHealth is one target cluster as ferry last saw it, for GET /api/v1/clusters and the
// app list page.
type ClusterHealth struct {
	Name string `json:"name"`
	// Server is the apiserver's host:port.
	Server string `json:"server"`
	// Default is ferry's own cluster (--kubeconfig or in-cluster), the one /readyz checks.
	Default bool `json:"default"`
	// Reachable says the apiserver answered ferry's last probe; false with no CheckedAt: not
	// probed yet.
	Reachable bool      `json:"reachable"`
	Version   string    `json:"version,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Since is when Reachable last changed.
	Since time.Time `json:"since,omitzero"`
	// Apps is how many configured apps deploy to the cluster.
	Apps int `json:"apps"`
}

// clusters is every target cluster's health with its app count; nil when the server was given
// no clusters.
func (s *Server) clusters() []ClusterHealth {
	if s.cfg.Clusters == nil {
		return nil
	}
	count := map[string]int{}
	for _, a := range s.cfg.Apps {
		count[a.Cluster]++
	}
	out := s.cfg.Clusters()
	for i := range out {
		out[i].Apps = count[out[i].Name]
		if out[i].Default {
			// Apps that name no cluster deploy to the default one.
			out[i].Apps += count[""]
		}
	}
	return out
}

// listClusters is GET /api/v1/clusters.
func (s *Server) listClusters(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"clusters": s.clusters()})
}

// SinceRef is Since as the page's time functions take it.
func (c ClusterHealth) SinceRef() *time.Time { return &c.Since }
