package status

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of one request to a forge, as ferry_status_posts_total labels them.
const (
	ResultSuccess        = "success"
	ResultTransientError = "transient_error"
	ResultPermanentError = "permanent_error"
)

// Metrics count and time the requests ferry makes to forges for commit statuses (and checks),
// per repository: each attempt, so retries show up as the errors they answer.
type Metrics struct {
	posts    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	now      func() time.Time
}

// NewMetrics registers ferry_status_posts_total and ferry_status_post_duration_seconds on reg;
// now is the clock durations are measured on (time.Now when nil).
func NewMetrics(reg prometheus.Registerer, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	m := &Metrics{
		posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_status_posts_total",
			Help: "Requests to a forge posting a commit status, by repository and result (success, transient_error, permanent_error).",
		}, []string{"repo", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ferry_status_post_duration_seconds",
			Help:    "Time one request to a forge posting a commit status took, by repository.",
			Buckets: prometheus.ExponentialBuckets(0.025, 2, 12),
		}, []string{"repo"}),
		now: now,
	}
	reg.MustRegister(m.posts, m.duration)
	return m
}

// Measure returns r counted and timed under repo, a configured repository's name; without
// metrics (nil), r itself.
func (m *Metrics) Measure(r Reporter, repo string) Reporter {
	if m == nil {
		return r
	}
	return &measured{next: r, m: m, repo: repo}
}

type measured struct {
	next Reporter
	m    *Metrics
	repo string
}

var _ Reporter = (*measured)(nil)

func (r *measured) Report(ctx context.Context, s Status) error {
	start := r.m.now()
	err := r.next.Report(ctx, s)
	r.m.duration.WithLabelValues(r.repo).Observe(r.m.now().Sub(start).Seconds())
	result := ResultSuccess
	switch {
	case err == nil:
	case IsPermanent(err):
		result = ResultPermanentError
	default:
		result = ResultTransientError
	}
	r.m.posts.WithLabelValues(r.repo, result).Inc()
	return err
}
