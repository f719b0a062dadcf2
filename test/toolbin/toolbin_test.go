package toolbin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFind(t *testing.T) {
	p, err := Find("test/k8sbin/build.sh")
	if err != nil || !strings.HasSuffix(p, filepath.FromSlash("test/k8sbin/build.sh")) {
		t.Fatalf("Find = %q, %v", p, err)
	}
	if _, err := Find("test/no/such/script.sh"); err == nil || !strings.Contains(err.Error(), "test/no/such/script.sh") {
		t.Errorf("a missing script: %v", err)
	}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "build.sh")
	if err := os.WriteFile(p, []byte("set -eu\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuild(t *testing.T) {
	var mu sync.Mutex
	var logged []string
	logf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		logged = append(logged, strings.TrimSpace(strings.SplitN(format, "%s", 2)[0]+" "+args[len(args)-1].(string)))
	}
	out, err := Build(t.Context(), script(t, `echo "building $1" >&2; echo noise; echo "/cache/tool-$1"`), []string{"x"}, logf)
	if err != nil || out != "/cache/tool-x" {
		t.Fatalf("Build = %q, %v", out, err)
	}
	if len(logged) != 1 || !strings.HasSuffix(logged[0], "building x") {
		t.Errorf("progress lines: %q", logged)
	}

	_, err = Build(t.Context(), script(t, `echo "compile error in pkg" >&2; exit 3`), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "compile error in pkg") || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a failing build: %v", err)
	}
	if _, err := Build(t.Context(), script(t, "true"), nil, nil); err == nil || !strings.Contains(err.Error(), "printed nothing") {
		t.Errorf("a build that prints nothing: %v", err)
	}

	// Cancelling kills the whole group, a child holding the pipes included.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if _, err := Build(ctx, script(t, "sleep 60 & wait"), nil, nil); err == nil {
		t.Error("a cancelled build succeeded")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("a cancelled build returned after %s", took)
	}
}
