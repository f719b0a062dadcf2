package status

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetricsCountEachAttempt(t *testing.T) {
	srv, _ := newFakeForge(t, "Authorization", func(w http.ResponseWriter, _ *http.Request, n int) {
		switch n {
		case 0:
			answer(w, http.StatusBadGateway, `{"message":"Server Error"}`)
		case 1:
			answer(w, http.StatusCreated, `{"id":1}`)
		default:
			answer(w, http.StatusUnprocessableEntity, `{"message":"Validation Failed"}`)
		}
	})
	reg := prometheus.NewRegistry()
	// Each request takes 125ms on this clock: it moves on at every reading.
	tick := time.Unix(0, 0)
	m := NewMetrics(reg, func() time.Time { tick = tick.Add(125 * time.Millisecond); return tick })
	r := Retry(m.Measure(newTestGitHub(t, srv.URL), "platform"), testRetryOptions(newFakeClock(), &bytes.Buffer{}))
	if err := r.Report(t.Context(), okStatus); err != nil {
		t.Fatalf("Report: %v", err)
	}
	if err := r.Report(t.Context(), okStatus); err == nil {
		t.Fatal("a 422 was taken for a success")
	}
	for result, want := range map[string]float64{ResultSuccess: 1, ResultTransientError: 1, ResultPermanentError: 1} {
		if got := testutil.ToFloat64(m.posts.WithLabelValues("platform", result)); got != want {
			t.Errorf("ferry_status_posts_total{result=%q} = %v, want %v", result, got, want)
		}
	}
	const want = `
# HELP ferry_status_post_duration_seconds Time one request to a forge posting a commit status took, by repository.
# TYPE ferry_status_post_duration_seconds histogram
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.025"} 0
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.05"} 0
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.1"} 0
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.2"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.4"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="0.8"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="1.6"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="3.2"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="6.4"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="12.8"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="25.6"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="51.2"} 3
ferry_status_post_duration_seconds_bucket{repo="platform",le="+Inf"} 3
ferry_status_post_duration_seconds_sum{repo="platform"} 0.375
ferry_status_post_duration_seconds_count{repo="platform"} 3
`
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(want), "ferry_status_post_duration_seconds"); err != nil {
		t.Error(err)
	}
}
