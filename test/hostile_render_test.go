package test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ferrygitops/ferry/test/forgefake"
	"github.com/ferrygitops/ferry/test/gitserver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostileLaughs is a "billion laughs" ConfigMap: levels of nine aliases, 9^levels scalars once
// expanded, in a file of a few hundred bytes.
func hostileLaughs(levels int) string {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\nx:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= levels; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "  l%d: &l%d [%s]\n", i, i, strings.Repeat(p+", ", 8)+p)
	}
	fmt.Fprintf(&b, "data:\n  bomb: *l%d\n", levels)
	return b.String()
}

// hostileAnchor is one anchor of size bytes aliased n times in a ConfigMap's data.
func hostileAnchor(size, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: &big %q\n", strings.Repeat("x", size))
	for i := range n {
		fmt.Fprintf(&b, "  a%d: *big\n", i)
	}
	return b.String()
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestHostileRenders opens pull requests that try to exhaust ferry's memory while rendering: a
// YAML alias bomb nested in a kustomization, a large anchor repeated in a plain manifest, one
// 4 MiB blob at 150 paths, and 2 MiB of dense YAML (a million nodes) in a kustomization. Each preview fails with a status naming the bound and the file, ferry
// stays up, and a deploy pushed afterwards goes through.
func TestHostileRenders(t *testing.T) {
	ns := "e2e-hostile"
	cs := kube(t)
	git := gitserver.New(t)
	repo := git.CreateRepo(t, "acme/platform")
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	files := webApp(ns, "hello")
	files["apps/kust/kustomization.yaml"] = kust + "namespace: " + ns + "\nresources: [../../base/kust]\n"
	files["base/kust/kustomization.yaml"] = kust + "resources: [cm.yaml]\n"
	files["base/kust/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kust\ndata:\n  a: \"1\"\n"
	base := repo.Commit(t, "main", "web and kust", files)
	forge := forgefake.New(t, forgeToken)
	cfg := forgeConfig("github", repo.CloneURL(), forge.URL(), "1h",
		e2eApp{name: "web", path: "apps/web", ns: ns}, e2eApp{name: "kust", path: "apps/kust", ns: ns, dependsOn: []string{"web"}})
	f := startFerry(t, cfg, ferryEnv, "")
	for _, app := range []string{"web", "kust"} {
		if st := waitFinal(t, forge, base, "ferry/"+app); st[len(st)-1].State != "success" {
			t.Fatalf("base sync of %s: %+v", app, st[len(st)-1])
		}
	}
	idle := peakRSS(t, f.cmd.Process.Pid)
	t.Logf("peak RSS before the attacks: %d MiB", idle>>20)

	blob := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: amplified\ndata:\n  k: " + strings.Repeat("y", 4<<20) + "\n"
	amplified := map[string]string{}
	for i := range 150 {
		amplified[fmt.Sprintf("apps/web/copies/c%03d.yaml", i)] = blob
	}
	attacks := []struct {
		name, app, bound, file string
		files                  map[string]string
	}{
		{"alias bomb in a kustomize base", "kust", "MaxAliasNodes", "base/kust/bomb.yaml", map[string]string{
			"base/kust/kustomization.yaml": kust + "resources: [cm.yaml, bomb.yaml]\n",
			"base/kust/bomb.yaml":          hostileLaughs(9),
		}},
		{"large anchor in a plain manifest", "web", "MaxAliasBytes", "apps/web/big.yaml", map[string]string{
			"apps/web/big.yaml": hostileAnchor(512<<10, 600),
		}},
		{"one blob at 150 paths", "web", "MaxRenderBytes", "apps/web/copies/c", amplified},
		{"dense YAML in a kustomize base", "kust", "MaxRenderNodes", "base/kust/dense.yaml", map[string]string{
			"base/kust/kustomization.yaml": kust + "resources: [cm.yaml, dense.yaml]\n",
			"base/kust/dense.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dense\nx: [" + strings.Repeat("1,", 1<<20) + "1]\n",
		}},
	}
	for i, a := range attacks {
		number := 30 + i
		head := repo.Commit(t, fmt.Sprintf("attack%d", i), a.name, a.files)
		repo.PushRef(t, fmt.Sprintf("refs/pull/%d/head", number), head)
		if code, body := f.send(t, "platform", githubPR(t, fmt.Sprintf("d-hostile-%d", number), number, head, base)); code != http.StatusAccepted {
			t.Fatalf("%s: pull_request hook: %d %s", a.name, code, body)
		}
		st := waitFinal(t, forge, head, "ferry/"+a.app+"/preview")
		if last := st[len(st)-1]; last.State != "failure" || !contains(last.Description, a.bound, a.file) {
			t.Fatalf("%s: preview status %+v, want a failure naming %s and %s", a.name, last, a.bound, a.file)
		}
		if code := f.readyz(); code != http.StatusOK {
			t.Fatalf("%s: ferry is not ready after the preview: %d", a.name, code)
		}
		t.Logf("%s: peak RSS %d MiB above the peak before the attacks", a.name, (peakRSS(t, f.cmd.Process.Pid)-idle)>>20)
	}
	select {
	case err := <-f.done:
		t.Fatalf("ferry exited under the attacks: %v", err)
	default:
	}

	// Deploys go on: a push after the attacks syncs.
	next := webApp(ns, "still here")
	sha := repo.Commit(t, "main", "web: greeting", map[string]string{"apps/web/config.yaml": next["apps/web/config.yaml"]})
	if code, body := f.send(t, "platform", githubPush(t, hookSecret, "d-hostile-push", base, sha, "apps/web/config.yaml")); code != http.StatusAccepted {
		t.Fatalf("push hook: %d %s", code, body)
	}
	if st := waitFinal(t, forge, sha, "ferry/web"); st[len(st)-1].State != "success" {
		t.Fatalf("deploy after the attacks: %+v", st[len(st)-1])
	}
	got, err := cs.CoreV1().ConfigMaps(ns).Get(t.Context(), "web-settings", metav1.GetOptions{})
	if err != nil || got.Data["greeting"] != "still here" {
		t.Fatalf("deploy after the attacks not applied: %v %v", err, got.Data)
	}
	if rss := peakRSS(t, f.cmd.Process.Pid) - idle; rss >= hostileRSSBound {
		t.Errorf("peak RSS %d MiB above idle under the attacks, want < %d MiB", rss>>20, hostileRSSBound>>20)
	}
}

// hostileRSSBound is the memory the attacks may add to ferry's peak, with the race detector's
// overhead (ferry is built with -race for these tests).
const hostileRSSBound = 1 << 30
