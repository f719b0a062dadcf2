package notify

import "github.com/prometheus/client_golang/prometheus"

// The results of one attempt at sending an event to a target.
const (
	resultSent     = "sent"
	resultRetried  = "retried"
	resultRejected = "rejected"
)

// Metrics are the notification series, registered on the registry main gives it. A failing
// target shows here and in the logs, never in a sync's result.
type Metrics struct {
	attempts      *prometheus.CounterVec
	publishErrors prometheus.Counter
}

// NewMetrics registers the notification series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ferry_notifications_total",
			Help: "Attempts at sending a notification, by target and result: sent, retried (the target failed or asked to wait), rejected (the target refused it for good).",
		}, []string{"target", "result"}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ferry_notification_publish_errors_total",
			Help: "Events of finished syncs that could not be stored for notification (JetStream unreachable, or the buffer full).",
		}),
	}
	reg.MustRegister(m.attempts, m.publishErrors)
	return m
}

func (m *Metrics) count(target, result string) {
	if m != nil {
		m.attempts.WithLabelValues(target, result).Inc()
	}
}

func (m *Metrics) publishError() {
	if m != nil {
		m.publishErrors.Inc()
	}
}
