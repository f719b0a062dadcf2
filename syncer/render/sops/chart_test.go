package sops

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops/sopstest"
)

// A chart's values file encrypted with SOPS (the whole file, as users encrypt values with
// credentials) is decrypted before the chart reads it; a wrong key fails naming the values file.
func TestRenderDecryptsChartValues(t *testing.T) {
	id, stranger := sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	values := "db:\n  password: chart-s3cret\n  port: 5432\n"
	repo := fstest.MapFS{
		"apps/db/Chart.yaml":  {Data: []byte("apiVersion: v2\nname: db\nversion: 0.1.0\n")},
		"apps/db/values.yaml": {Data: []byte("db:\n  password: changeme\n  port: 1\n")},
		"apps/db/templates/secret.yaml": {Data: []byte(`apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-db
stringData:
  password: {{ .Values.db.password | quote }}
  port: {{ .Values.db.port | quote }}
`)},
		"envs/prod/db.enc.yaml": {Data: cli.Encrypt(t, "db.enc.yaml", []byte(values), []string{id.Recipient})},
	}
	opts := render.DefaultOptions()
	opts.Helm = &render.Helm{ReleaseName: "prod", Namespace: "db", ValuesFiles: []string{"/envs/prod/db.enc.yaml"}}

	objs, err := render.Render(NewFS(repo, keys(t, id)), "apps/db", opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("rendered %d objects", len(objs))
	}
	sd := objs[0].Object["stringData"].(map[string]any)
	if sd["password"] != "chart-s3cret" || sd["port"] != "5432" {
		t.Errorf("the chart did not see the decrypted values: port %v", sd["port"])
	}

	_, err = render.Render(NewFS(repo, keys(t, stranger)), "apps/db", opts)
	de := asDecryptError(t, err)
	if de.File != "envs/prod/db.enc.yaml" {
		t.Errorf("error names %q, want the values file", de.File)
	}
	noSecrets(t, err.Error(), id, stranger)
	if strings.Contains(err.Error(), "chart-s3cret") {
		t.Errorf("the error carries a decrypted value: %v", err)
	}
}
