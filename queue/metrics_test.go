package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollectorReportsBacklog(t *testing.T) {
	_, _, q := startQueue(t, t.TempDir())
	later := time.Now().Add(time.Hour)
	c := NewCollector(q, func() time.Time { return later }, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)

	const idle = `
# HELP ferry_queue_jobs Jobs stored and not yet done (waiting, delayed for a retry or running), by kind.
# TYPE ferry_queue_jobs gauge
ferry_queue_jobs{kind="deploy"} 0
ferry_queue_jobs{kind="preview"} 0
# HELP ferry_queue_oldest_job_age_seconds Age of the oldest job stored and not yet done, by kind; 0 when there is none.
# TYPE ferry_queue_oldest_job_age_seconds gauge
ferry_queue_oldest_job_age_seconds{kind="deploy"} 0
ferry_queue_oldest_job_age_seconds{kind="preview"} 0
# HELP ferry_queue_up 1 when the last scrape could read the job stream, 0 when JetStream did not answer.
# TYPE ferry_queue_up gauge
ferry_queue_up 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(idle)); err != nil {
		t.Fatal(err)
	}
	jobs := []Job{testJob("api", "aaa", "d1"), testJob("web", "aaa", "d1"), testJob("api", "bbb", "d2")}
	pr := testJob("api", "ccc", "d3")
	pr.Kind, pr.PR, pr.BaseSHA, pr.Ref = KindPreview, 7, "aaa", "refs/pull/7/head"
	if _, err := q.Enqueue(t.Context(), append(jobs, pr)); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range got {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "/" + l.GetValue()
			}
			values[key] = m.GetGauge().GetValue()
		}
	}
	if values["ferry_queue_jobs/deploy"] != 3 || values["ferry_queue_jobs/preview"] != 1 || values["ferry_queue_up"] != 1 {
		t.Errorf("backlog %v", values)
	}
	// The jobs were stored moments ago; the clock says an hour later.
	for _, k := range []string{"deploy", "preview"} {
		if age := values["ferry_queue_oldest_job_age_seconds/"+k]; age < 3500 || age > 3700 {
			t.Errorf("oldest %s job is %vs old, want about an hour", k, age)
		}
	}
}

func TestCollectorWithoutJetStream(t *testing.T) {
	e, nc, q := startQueue(t, t.TempDir())
	nc.Close()
	e.Shutdown()
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(q, time.Now, nil))
	const down = `
# HELP ferry_queue_up 1 when the last scrape could read the job stream, 0 when JetStream did not answer.
# TYPE ferry_queue_up gauge
ferry_queue_up 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(down)); err != nil {
		t.Fatal(err)
	}
}
