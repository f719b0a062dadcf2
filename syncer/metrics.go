package syncer

import (
	"github.com/ferrygitops/ferry/queue"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the syncer's Prometheus series, registered on the registry main gives it. Apps and
// kinds come from the configuration, so label values are bounded; commits and ids never label.
type Metrics struct {
	syncs        *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	statusErrors prometheus.Counter
	suspended    *prometheus.GaugeVec
	objects      *prometheus.CounterVec
	lastSuccess  *prometheus.GaugeVec
	failing      *prometheus.GaugeVec
}

// objectActions are the actions ferry_objects_applied_total counts (a record's Counts keys).
var objectActions = []string{"created", "configured", "unchanged", "pruned"}

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
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_objects_applied_total",
			Help: "Objects handled by finished deploys, by app and action (created, configured, unchanged, pruned).",
		}, []string{"app", "action"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_app_last_success_timestamp_seconds",
			Help: "Unix time at which the app's last successful deploy finished (absent until one does, in this process).",
		}, []string{"app"}),
		failing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "ferry_app_failing",
			Help: "1 when the app's last finished deploy failed, 0 when it succeeded (absent until one finishes, in this process).",
		}, []string{"app"}),
	}
	reg.MustRegister(m.syncs, m.duration, m.statusErrors, m.objects, m.lastSuccess, m.failing, m.suspended)
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

// recorded counts what a deploy's terminal record says it did to the cluster, whether the app is
// failing, and when it last deployed successfully. Previews change nothing and are not counted.
func (m *Metrics) recorded(job queue.Job, rec queue.Record) {
	if m == nil || job.Kind != queue.KindDeploy {
		return
	}
	for _, a := range objectActions {
		if n := rec.Counts[a]; n > 0 {
			m.objects.WithLabelValues(job.App, a).Add(float64(n))
		}
	}
	switch rec.State {
	case queue.StateSucceeded:
		m.failing.WithLabelValues(job.App).Set(0)
		if rec.FinishedAt != nil {
			m.lastSuccess.WithLabelValues(job.App).Set(float64(rec.FinishedAt.UnixMilli()) / 1e3)
		}
	case queue.StateFailed:
		m.failing.WithLabelValues(job.App).Set(1)
	}
}
