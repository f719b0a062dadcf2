package queue

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// scrapeTimeout bounds the JetStream requests of one scrape (a stream info and one message
// lookup per kind): a NATS that does not answer makes ferry_queue_up 0, not a hanging /metrics.
const scrapeTimeout = 2 * time.Second

// kinds are the job kinds the queue metrics report, each always present (0 when idle), so that
// alerts and graphs have a series to read.
var kinds = []Kind{KindDeploy, KindPreview}

// Collector reports the queue's backlog when scraped, from JetStream's own bookkeeping: the
// jobs stored and not yet done per kind, and the age of the oldest. It costs one stream info
// request plus one message lookup per kind with jobs, whatever the backlog.
type Collector struct {
	q   *Queue
	now func() time.Time
	log *slog.Logger

	jobs, oldest, up *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector reports q's backlog; now is the clock ages are measured on. Register it on the
// registry /metrics serves.
func NewCollector(q *Queue, now func() time.Time, log *slog.Logger) *Collector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{q: q, now: now, log: log,
		jobs: prometheus.NewDesc("ferry_queue_jobs",
			"Jobs stored and not yet done (waiting, delayed for a retry or running), by kind.", []string{"kind"}, nil),
		oldest: prometheus.NewDesc("ferry_queue_oldest_job_age_seconds",
			"Age of the oldest job stored and not yet done, by kind; 0 when there is none.", []string{"kind"}, nil),
		up: prometheus.NewDesc("ferry_queue_up",
			"1 when the last scrape could read the job stream, 0 when JetStream did not answer.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.jobs
	ch <- c.oldest
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	// A scrape has no context of its own; its requests are bounded by scrapeTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	jobs, oldest, err := c.backlog(ctx)
	if err != nil {
		c.log.Warn("queue metrics: job stream not readable", "err", err)
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, k := range kinds {
		ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(jobs[k]), string(k))
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest[k], string(k))
	}
}

// backlog counts the stored jobs per kind and the age in seconds of each kind's oldest. The
// stream is a work queue, so a stored message is a job not yet acknowledged as done.
func (c *Collector) backlog(ctx context.Context) (map[Kind]uint64, map[Kind]float64, error) {
	s, err := c.q.js.Stream(ctx, StreamName)
	if err != nil {
		return nil, nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subjectPrefix+".>"))
	if err != nil {
		return nil, nil, err
	}
	jobs, oldest := map[Kind]uint64{}, map[Kind]float64{}
	for subj, n := range info.State.Subjects {
		kind, _, _ := strings.Cut(strings.TrimPrefix(subj, subjectPrefix+"."), ".")
		jobs[Kind(kind)] += n
	}
	for _, k := range kinds {
		if jobs[k] == 0 {
			continue
		}
		m, err := s.GetMsg(ctx, info.State.FirstSeq, jetstream.WithGetMsgSubject(subjectPrefix+"."+string(k)+".>"))
		if err != nil {
			return nil, nil, err
		}
		oldest[k] = max(0, c.now().Sub(m.Time).Seconds())
	}
	return jobs, oldest, nil
}
