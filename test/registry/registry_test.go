package registry

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	"github.com/ferrygitops/ferry/test/chartrepo"
)

func tags(t *testing.T, host, repository, user, pass string) (int, []string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+host+"/v2/"+repository+"/tags/list", nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Tags []string }
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, body.Tags
}

func TestPushAndList(t *testing.T) {
	r := Run(t, Options{})
	digest := PushChart(t, r.Host, "charts/hello", "1.0.0+meta", chartrepo.Package(t, "hello", "1.0.0+meta"), "", "")
	if digest == "" {
		t.Error("push returned no manifest digest")
	}
	code, got := tags(t, r.Host, "charts/hello", "", "")
	if code != http.StatusOK || !slices.Equal(got, []string{"1.0.0_meta"}) {
		t.Fatalf("tags: %d %v, want [1.0.0_meta]", code, got)
	}
	r.Stop()
	if _, err := http.Get("http://" + r.Host + "/v2/"); err == nil {
		t.Error("the registry still answers after Stop")
	}
}

func TestAuth(t *testing.T) {
	r := Run(t, Options{Username: "ferry", Password: "pw"})
	PushChart(t, r.Host, "charts/hello", "0.1.0", chartrepo.Package(t, "hello", "0.1.0"), "ferry", "pw")
	if code, _ := tags(t, r.Host, "charts/hello", "", ""); code != http.StatusUnauthorized {
		t.Errorf("without credentials: %d, want 401", code)
	}
	if code, got := tags(t, r.Host, "charts/hello", "ferry", "pw"); code != http.StatusOK || !slices.Equal(got, []string{"0.1.0"}) {
		t.Errorf("with credentials: %d %v", code, got)
	}
}
