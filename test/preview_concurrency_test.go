package test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
)

// manyConfigMaps is app web with n ConfigMaps holding value: a preview of a change to all of them
// dry-runs n objects, long enough for previews queued together to overlap.
func manyConfigMaps(ns string, n int, value string) map[string]string {
	files := map[string]string{"apps/web/ns.yaml": fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", ns)}
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%03d\ndata:\n  value: %q\n", i, value)
	}
	files["apps/web/cms.yaml"] = b.String()
	return files
}

// TestPreviewsRunTogether: pull requests opened together are previewed at the same time on one
// ferry (up to four, as documented), not one after another, and a push that arrives meanwhile is
// deployed without waiting for them.
func TestPreviewsRunTogether(t *testing.T) {
	ns := "e2e-previews-together"
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	base := repo.Commit(t, "main", "web: base", manyConfigMaps(ns, 300, "base"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if last := finalStatus(t, forge, base, "ferry/web"); last.State != "success" {
		t.Fatalf("base sync: %+v", last)
	}
	var heads []string
	for pr := 1; pr <= 4; pr++ {
		head := repo.Commit(t, fmt.Sprintf("feature-%d", pr), "web: change", manyConfigMaps(ns, 300, fmt.Sprintf("pr-%d", pr)))
		repo.PushRef(t, fmt.Sprintf("refs/pull/%d/head", pr), head)
		heads = append(heads, head)
	}
	for i, head := range heads {
		if code, body := f.send(t, "platform", githubPR(t, fmt.Sprintf("d-together-%d", i), i+1, head, base)); code != http.StatusAccepted {
			t.Fatalf("pull_request hook %d: %d %s", i+1, code, body)
		}
	}
	second := repo.Commit(t, "main", "web: a deploy meanwhile", manyConfigMaps(ns, 300, "second"))
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-together-push", base, second, "apps/web/cms.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	for _, head := range heads {
		if last := finalStatus(t, forge, head, "ferry/web/preview"); last.State != "success" || !strings.HasPrefix(last.Description, "300 changed") {
			t.Fatalf("preview of %s: %+v", short7(head), last)
		}
	}
	if last := finalStatus(t, forge, second, "ferry/web"); last.State != "success" {
		t.Fatalf("deploy: %+v", last)
	}
	var previews []queue.Record
	var deploy queue.Record
	for _, r := range f.history(t, "web") {
		switch {
		case r.Kind == queue.KindPreview && r.StartedAt != nil && r.FinishedAt != nil:
			previews = append(previews, r)
		case r.Kind == queue.KindDeploy && r.SHA == second:
			deploy = r
		}
	}
	if len(previews) != 4 {
		t.Fatalf("preview records: %s", describeRecords(previews))
	}
	// The previews overlap: some preview started before another one finished.
	overlap := false
	for _, a := range previews {
		for _, b := range previews {
			if a.ID != b.ID && a.StartedAt.Before(*b.FinishedAt) && b.StartedAt.Before(*a.FinishedAt) {
				overlap = true
			}
		}
	}
	if !overlap {
		t.Errorf("the four previews ran one after another: %s", spans(previews))
	}
	// The deploy did not wait for every preview to end.
	lastEnd := previews[0].FinishedAt
	for _, p := range previews {
		if p.FinishedAt.After(*lastEnd) {
			lastEnd = p.FinishedAt
		}
	}
	if deploy.StartedAt == nil || !deploy.StartedAt.Before(*lastEnd) {
		t.Errorf("the deploy started at %v, after the last preview ended (%v): it waited behind them; previews %s", deploy.StartedAt, lastEnd, spans(previews))
	}
	assertAllFinal(t, forge)
}

// spans lists records' run times for failure messages.
func spans(recs []queue.Record) string {
	var parts []string
	for _, r := range recs {
		parts = append(parts, fmt.Sprintf("%s %s–%s", r.ID, r.StartedAt.Format(time.StampMilli), r.FinishedAt.Format(time.StampMilli)))
	}
	return strings.Join(parts, "; ")
}
