package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// p11MaxRenderRSS is P11's memory target for the render attacks: ferry's peak RSS may grow by
// less than this over its peak before them.
const p11MaxRenderRSS = 512 << 20

// renderAttack is one pull request that tries to exhaust ferry's memory while it renders.
type renderAttack struct {
	name, app, bound string
	files            map[string]string
}

// renderAttacks are P11's render attacks: an alias bomb nested in a kustomization, a large anchor
// repeated in a plain manifest, one 4 MiB blob at 150 paths, and dense YAML in a kustomization.
func renderAttacks() []renderAttack {
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	var bomb strings.Builder
	bomb.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\nx:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&bomb, "  l%d: &l%d [%s]\n", i, i, strings.Repeat(p+", ", 8)+p)
	}
	bomb.WriteString("data:\n  bomb: *l9\n")
	var anchor strings.Builder
	fmt.Fprintf(&anchor, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  a: &big %q\n", strings.Repeat("x", 512<<10))
	for i := range 600 {
		fmt.Fprintf(&anchor, "  a%d: *big\n", i)
	}
	blob := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: amplified\ndata:\n  k: " + strings.Repeat("y", 4<<20) + "\n"
	amplified := map[string]string{}
	for i := range 150 {
		amplified[fmt.Sprintf("apps/web/copies/c%03d.yaml", i)] = blob
	}
	return []renderAttack{
		{"alias bomb (9 levels of 9) in a kustomize base", "kust", "MaxAliasNodes", map[string]string{
			"base/kust/kustomization.yaml": kust + "resources: [cm.yaml, bomb.yaml]\n", "base/kust/bomb.yaml": bomb.String()}},
		{"512 KiB anchor × 600 aliases, plain", "web", "MaxAliasBytes", map[string]string{"apps/web/big.yaml": anchor.String()}},
		{"one 4 MiB blob at 150 paths, plain", "web", "MaxRenderBytes", amplified},
		{"2 MiB of dense YAML in a kustomize base", "kust", "MaxRenderNodes", map[string]string{
			"base/kust/kustomization.yaml": kust + "resources: [cm.yaml, dense.yaml]\n",
			"base/kust/dense.yaml":         "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dense\nx: [" + strings.Repeat("1,", 1<<20) + "1]\n"}},
	}
}

// prHook builds a signed GitHub pull_request delivery for number at head over base.
func prHook(delivery string, number int, head, base string) ([]byte, http.Header, error) {
	raw, err := os.ReadFile("handlers/testdata/github/pull_request.json")
	if err != nil {
		return nil, nil, fmt.Errorf("pull request payload: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("pull request payload: %w", err)
	}
	m["action"], m["number"] = "synchronize", number
	pr := m["pull_request"].(map[string]any)
	pr["number"] = number
	pr["head"].(map[string]any)["sha"] = head
	b := pr["base"].(map[string]any)
	b["ref"], b["sha"] = "main", base
	body, err := json.Marshal(m)
	if err != nil {
		return nil, nil, err
	}
	mac := hmac.New(sha256.New, []byte(e2eHookSecret))
	mac.Write(body)
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("X-GitHub-Event", "pull_request")
	h.Set("X-GitHub-Delivery", delivery)
	h.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	return body, h, nil
}

// renderRSS runs P11's render attacks against one ferry process, one pull request at a time,
// and reads its peak RSS (VmHWM) before and after each: the figure is the growth of the peak.
func (e *e2e) renderRSS(ctx context.Context, res *results) error {
	cl, err := startCluster(ctx, e.p, "cluster-p11r")
	if err != nil {
		return err
	}
	defer cl.Stop()
	ns := "p11-render"
	kust := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
	repo := e.git.CreateRepo(e.tb, "acme/p11render")
	files := map[string]string{
		"apps/web/ns.yaml":             "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"apps/web/cm.yaml":             "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  a: \"1\"\n",
		"apps/kust/kustomization.yaml": kust + "resources: [../../base/kust]\n",
		"base/kust/kustomization.yaml": kust + "resources: [cm.yaml]\n",
		"base/kust/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kust\ndata:\n  a: \"1\"\n",
	}
	base := repo.Commit(e.tb, "main", "web and kust", files)
	apps := []appConf{{Name: "web", Path: "apps/web", Namespace: ns}, {Name: "kust", Path: "apps/kust", Namespace: ns, DependsOn: []string{"web"}}}
	f, err := startFerry(ctx, e.p.FerryBin, filepath.Join(e.p.Work, "ferry-p11r"), ferryConfig(repo.CloneURL(), e.forge.URL, apps), cl.Kubeconfig)
	if err != nil {
		return err
	}
	defer f.stop()
	wctx, cancel := context.WithTimeout(ctx, e.p.E2E.Timeout)
	defer cancel()
	if _, err := e.forge.waitFinal(wctx, time.Time{}, base, []string{"ferry/web", "ferry/kust"}); err != nil {
		return fmt.Errorf("start-up syncs (log %s): %w", f.Log, err)
	}
	idle := procStatusBytes(f.pid(), "VmHWM")
	e.logf("P11 render: peak RSS before the attacks %s", fmtMB(idle))
	var worst uint64
	var parts []string
	for i, a := range renderAttacks() {
		head := repo.Commit(e.tb, fmt.Sprintf("attack%d", i), a.name, a.files)
		repo.PushRef(e.tb, fmt.Sprintf("refs/pull/%d/head", 60+i), head)
		body, hdr, err := prHook(fmt.Sprintf("p11r-%d-%d", time.Now().UnixNano(), i), 60+i, head, base)
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, e.p.E2E.Timeout)
		t0 := time.Now()
		err = f.sendHook(pctx, body, hdr)
		var got map[string]seenStatus
		if err == nil {
			// The failure is what is expected: waitFinal calls it an error but returns it.
			got, err = e.forge.waitFinal(pctx, t0, head, []string{"ferry/" + a.app + "/preview"})
		}
		cancel()
		st, final := got["ferry/"+a.app+"/preview"]
		if !final {
			return fmt.Errorf("%s (log %s): %w", a.name, f.Log, err)
		}
		if st.State != "failure" || !strings.Contains(st.Description, a.bound) {
			return fmt.Errorf("%s: preview %s %q, want a failure naming %s", a.name, st.State, st.Description, a.bound)
		}
		peak := procStatusBytes(f.pid(), "VmHWM")
		grown := peak - min(peak, idle)
		worst = max(worst, grown)
		parts = append(parts, fmt.Sprintf("%s: +%s", a.name, fmtMB(grown)))
		e.logf("P11 render: %s: refused (%s) in %s, peak RSS %s (+%s)", a.name, a.bound, fmtDur(time.Since(t0)), fmtMB(peak), fmtMB(grown))
	}
	res.add(row{ID: "P11", Measure: "peak RSS growth under render attacks in pull requests (alias bomb, large anchor, blob ×150, dense YAML), each refused naming its bound",
		Ferry: "+" + fmtMB(worst), Target: "< 512 MB above idle", Met: verdict(worst < p11MaxRenderRSS)})
	res.note("P11 render attacks, cumulative peak growth over the peak before them (%s): %s.", fmtMB(idle), strings.Join(parts, "; "))
	return nil
}
