package source

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics time the cache's fetches from remotes, per repository. Fetches the cache answers
// itself (the commit is already there) ask no remote and are not counted.
type Metrics struct {
	fetch *prometheus.HistogramVec
}

// NewMetrics registers ferry_git_fetch_duration_seconds on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{fetch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_git_fetch_duration_seconds",
		Help:    "Time a Git fetch from a remote took, by repository and result (success, error).",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 13),
	}, []string{"repo", "result"})}
	reg.MustRegister(m.fetch)
	return m
}

// observeFetch records one fetch of repo; a nil Metrics records nothing.
func (m *Metrics) observeFetch(repo string, took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "success"
	if err != nil {
		result = "error"
	}
	m.fetch.WithLabelValues(repo, result).Observe(took.Seconds())
}
