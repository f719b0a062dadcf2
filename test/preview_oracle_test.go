package test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/queue"
	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPreviewIsNoExistenceOracle: a pull request naming an object outside its app gets the same
// preview, status and diff, whether that object exists (someone else's Secret in kube-system) or
// not, and the Secret is left alone.
func TestPreviewIsNoExistenceOracle(t *testing.T) {
	ns := "e2e-oracle"
	cs := kube(t)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "e2e-oracle-secret", Namespace: "kube-system"}, StringData: map[string]string{"k": "v"}}
	if _, err := cs.CoreV1().Secrets("kube-system").Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Secrets("kube-system").Delete(context.Background(), secret.Name, metav1.DeleteOptions{})
	})

	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	base := repo.Commit(t, "main", "web: base", webApp(ns, "hi"))
	forge := forgefake.New(t, forgeToken)
	f := startFerry(t, config("github", repo.CloneURL(), forge.URL(), ns), ferryEnv, "")
	if st := waitFinal(t, forge, base, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("base sync: %+v", st[len(st)-1])
	}

	// preview opens pull request number declaring the Secret name, and returns its final status and
	// diff with the name replaced by a placeholder.
	preview := func(number int, name string) (string, string) {
		t.Helper()
		files := webApp(ns, "hi")
		files["apps/web/probe.yaml"] = fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n  namespace: kube-system\nstringData:\n  k: guess\n", name)
		head := repo.Commit(t, fmt.Sprintf("probe-%d", number), "web: probe "+name, files)
		repo.PushRef(t, fmt.Sprintf("refs/pull/%d/head", number), head)
		if code, body := f.send(t, "platform", githubPR(t, fmt.Sprintf("d-oracle-%d", number), number, head, base)); code != http.StatusAccepted {
			t.Fatalf("pull_request hook: %d %s", code, body)
		}
		st := waitFinal(t, forge, head, "ferry/web/preview")
		last := st[len(st)-1]
		id := last.TargetURL[strings.LastIndex(last.TargetURL, "/")+1:]
		var rec queue.Record
		if code := f.getJSON(t, "/api/v1/syncs/"+id, &rec); code != http.StatusOK {
			t.Fatalf("preview record: %d", code)
		}
		return strings.ReplaceAll(last.State+" "+last.Description, name, "NAME"), strings.ReplaceAll(rec.Diff, name, "NAME")
	}
	existsStatus, existsDiff := preview(31, secret.Name)
	absentStatus, absentDiff := preview(32, "e2e-oracle-absent")
	if existsStatus != absentStatus || existsDiff != absentDiff {
		t.Errorf("the preview tells an existing Secret from an absent one:\nexists: %s\n%s\nabsent: %s\n%s", existsStatus, existsDiff, absentStatus, absentDiff)
	}
	if absentStatus != "success 0 changed, 1 created, 0 pruned" || !contains(absentDiff, "+ Secret kube-system/NAME  (apps/web/probe.yaml)  create") {
		t.Errorf("preview of a new Secret: %q\n%s", absentStatus, absentDiff)
	}
	got, err := cs.CoreV1().Secrets("kube-system").Get(t.Context(), secret.Name, metav1.GetOptions{})
	if err != nil || string(got.Data["k"]) != "v" || len(got.Labels) != 0 {
		t.Errorf("the previewed Secret changed: %v %v %v", err, got.Labels, got.Data)
	}
}
