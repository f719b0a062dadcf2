package target

import "github.com/prometheus/client_golang/prometheus"

// Metrics export each cluster's health as its probe sees it.
type Metrics struct {
	up       *prometheus.GaugeVec
	failures *prometheus.CounterVec
}

// NewMetrics registers the cluster metrics on reg:
//   - ferry_cluster_up{cluster}: 1 when the last probe got an answer, 0 when not;
//   - ferry_cluster_probe_failures_total{cluster}: probes that got no answer.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ferry_cluster_up",
			Help: "Whether the cluster's apiserver answered ferry's last probe (1) or not (0)."}, []string{"cluster"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ferry_cluster_probe_failures_total",
			Help: "Probes of the cluster's apiserver that got no answer."}, []string{"cluster"}),
	}
	reg.MustRegister(m.up, m.failures)
	return m
}

func (m *Metrics) observe(cluster string, up bool) {
	if up {
		m.up.WithLabelValues(cluster).Set(1)
		return
	}
	m.up.WithLabelValues(cluster).Set(0)
	m.failures.WithLabelValues(cluster).Inc()
}
