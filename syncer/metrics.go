package syncer

import (
	"github.com/ferrygitops/ferry/queue"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the syncer's Prometheus series, registered on the registry main gives it.
type Metrics struct {
	syncs        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	statusErrors prometheus.Counter
	suspended    *prometheus.GaugeVec
}

// NewMetrics registers the syncer's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_syncs_total", Help: "Finished syncs by app, kind and result.",
		}, []string{"app", "kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "ferry_sync_duration_seconds", Help: "Time from a sync's start to its end.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}, []string{"app", "kind"}),
		statusErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_status_post_errors_total", Help: "Commit statuses that could not be posted after retries.",
		}),
		suspended: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_app_suspended", Help: "1 while the app is suspended (pushes, polls, self-heal and start-up do not sync it), 0 otherwise.",
		}, []string{"app"}),
	}
	reg.MustRegister(m.syncs, m.duration, m.statusErrors, m.suspended)
	return m
}

func (m *Metrics) finished(job queue.Job, state queue.State, seconds float64) {
	m.syncs.WithLabelValues(job.App, string(job.Kind), string(state)).Inc()
	if seconds > 0 {
		m.duration.WithLabelValues(job.App, string(job.Kind)).Observe(seconds)
	}
}

func (m *Metrics) setSuspended(app string, on bool) {
	v := 0.0
	if on {
		v = 1
	}
	m.suspended.WithLabelValues(app).Set(v)
}
