package sops

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/ferrygitops/ferry/syncer/render"
	"github.com/ferrygitops/ferry/syncer/render/sops/sopstest"
)

// The plaintext of the fixtures: what a user writes before running sops.
const (
	secretYAML = `apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
type: Opaque
stringData:
  password: hunter2
data:
  token: c2VjcmV0LXRva2Vu
`
	secretJSON = `{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api"}, "stringData": {"apiKey": "k-123"}}`
	appEnv     = "DB_USER=admin\nDB_PASS=s3cr3t=with=equals\n"
	plainCM    = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: prod\n"
	kustomYAML = `resources:
- secret.yaml
generatorOptions:
  disableNameSuffixHash: true
secretGenerator:
- name: app-env
  envs: [app.env]
- name: app-files
  files: [tls.key, settings.json]
`
	settingsJSON = `{"endpoint": "https://db.internal", "password": "json-secret"}`
)

// tlsKey is a binary file (not valid UTF-8), encrypted with sops' binary store.
var tlsKey = []byte("-----BEGIN KEY-----\n\x00\x01\xfe\xffbinary\n-----END KEY-----\n")

// dataRegex is how users keep a Secret manifest readable: only its values are encrypted.
var dataRegex = []string{"--encrypted-regex", "^(data|stringData)$"}

// fixture is a repository whose secrets the real sops CLI encrypted for recipients.
type fixture struct {
	cli   *sopstest.CLI
	files fstest.MapFS
}

// newFixture encrypts the fixtures for recipients and lays them out as a repository:
// apps/plain (a plain directory) and apps/kust (a kustomization with a secretGenerator).
func newFixture(t *testing.T, recipients ...string) *fixture {
	t.Helper()
	cli := sopstest.New(t)
	enc := func(name, plain string, args ...string) *fstest.MapFile {
		return &fstest.MapFile{Data: cli.Encrypt(t, name, []byte(plain), recipients, args...)}
	}
	return &fixture{cli: cli, files: fstest.MapFS{
		"apps/plain/secret.yaml":       enc("secret.yaml", secretYAML, dataRegex...),
		"apps/plain/secret.json":       enc("secret.json", secretJSON, dataRegex...),
		"apps/plain/configmap.yaml":    {Data: []byte(plainCM)},
		"apps/kust/kustomization.yaml": {Data: []byte(kustomYAML)},
		"apps/kust/secret.yaml":        enc("secret.yaml", secretYAML, dataRegex...),
		"apps/kust/app.env":            enc("app.env", appEnv),
		"apps/kust/tls.key":            enc("tls.key", string(tlsKey)),
		"apps/kust/settings.json":      enc("settings.json", settingsJSON),
	}}
}

// keys parses ids' identity files.
func keys(t *testing.T, ids ...sopstest.Identity) *Keys {
	t.Helper()
	var files [][]byte
	for _, id := range ids {
		files = append(files, id.File)
	}
	k, err := ParseAgeIdentities(files...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// secrets renders dir and returns each Secret's values, base64-decoded, by name.
func secrets(t *testing.T, fsys fs.FS, dir string) map[string]map[string]string {
	t.Helper()
	objs, err := render.Render(fsys, dir, render.DefaultOptions())
	if err != nil {
		t.Fatalf("render %s: %v", dir, err)
	}
	out := map[string]map[string]string{}
	for _, o := range objs {
		if o.GetKind() != "Secret" {
			continue
		}
		vals := map[string]string{}
		data, _ := o.Object["data"].(map[string]any)
		for k, v := range data {
			b, err := base64.StdEncoding.DecodeString(v.(string))
			if err != nil {
				t.Fatalf("secret %s: data %s: %v", o.GetName(), k, err)
			}
			vals[k] = string(b)
		}
		sd, _ := o.Object["stringData"].(map[string]any)
		for k, v := range sd {
			vals[k] = v.(string)
		}
		out[o.GetName()] = vals
	}
	return out
}

func TestRenderDecryptsPlainAndKustomize(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	fsys := NewFS(fx.files, keys(t, id))

	got := secrets(t, fsys, "apps/plain")
	want := map[string]map[string]string{
		"db":  {"password": "hunter2", "token": "secret-token"},
		"api": {"apiKey": "k-123"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("plain directory secrets (-want +got):\n%s", d)
	}

	got = secrets(t, fsys, "apps/kust")
	if d := cmp.Diff(map[string]string{"password": "hunter2", "token": "secret-token"}, got["db"]); d != "" {
		t.Errorf("kustomize resource secret (-want +got):\n%s", d)
	}
	if d := cmp.Diff(map[string]string{"DB_USER": "admin", "DB_PASS": "s3cr3t=with=equals"}, got["app-env"]); d != "" {
		t.Errorf("secretGenerator envs (-want +got):\n%s", d)
	}
	files := got["app-files"]
	if files["tls.key"] != string(tlsKey) {
		t.Errorf("secretGenerator files: tls.key = %q, want the binary file's bytes %q", files["tls.key"], tlsKey)
	}
	var gotJSON, wantJSON any
	if err := json.Unmarshal([]byte(files["settings.json"]), &gotJSON); err != nil {
		t.Fatalf("secretGenerator files: settings.json is not JSON: %v", err)
	}
	if err := json.Unmarshal([]byte(settingsJSON), &wantJSON); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantJSON, gotJSON); d != "" {
		t.Errorf("secretGenerator files: settings.json (-want +got):\n%s", d)
	}
	for name, vals := range got {
		for k, v := range vals {
			if strings.Contains(v, "ENC[") || strings.Contains(v, "sops") {
				t.Errorf("secret %s: %s still holds SOPS content: %q", name, k, v)
			}
		}
	}
}

func TestWrongKeyNamesFileAndRecipients(t *testing.T) {
	owner, other := sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	fx := newFixture(t, owner.Recipient)
	_, err := render.Render(NewFS(fx.files, keys(t, other)), "apps/plain", render.DefaultOptions())
	de := asDecryptError(t, err)
	if de.File != "apps/plain/secret.json" { // lexical order: secret.json is read before secret.yaml
		t.Errorf("File = %q, want apps/plain/secret.json", de.File)
	}
	if d := cmp.Diff([]string{owner.Recipient}, de.Recipients); d != "" {
		t.Errorf("Recipients (-want +got):\n%s", d)
	}
	msg := err.Error()
	t.Logf("what the user reads: %s", msg)
	for _, want := range []string{"apps/plain/secret.json", owner.Recipient, other.Recipient, "is a recipient of this file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	noSecrets(t, msg, owner, other)

	// Through kustomize (its copy of the inputs reads the files) the error keeps its type.
	_, err = render.Render(NewFS(fx.files, keys(t, other)), "apps/kust", render.DefaultOptions())
	if de := asDecryptError(t, err); !strings.HasPrefix(de.File, "apps/kust/") {
		t.Errorf("kustomize: File = %q, want a file of apps/kust", de.File)
	}
}

func TestNoKeys(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	_, err := render.Render(NewFS(fx.files, nil), "apps/plain", render.DefaultOptions())
	de := asDecryptError(t, err)
	if de.Reason != reasonNoKeys {
		t.Errorf("Reason = %q, want %q", de.Reason, reasonNoKeys)
	}
	if d := cmp.Diff([]string{id.Recipient}, de.Recipients); d != "" {
		t.Errorf("Recipients (-want +got):\n%s", d)
	}
	// Without keys, a directory with no encrypted file still renders.
	objs, err := render.Render(NewFS(fstest.MapFS{"cm/cm.yaml": {Data: []byte(plainCM)}}, nil), "cm", render.DefaultOptions())
	if err != nil || len(objs) != 1 {
		t.Errorf("plain directory without keys: %d objects, %v; want 1, nil", len(objs), err)
	}
}

func TestTampered(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	enc := fx.files["apps/plain/secret.yaml"].Data
	for _, tc := range []struct {
		name, from, to, reason string
	}{
		// The namespace is not encrypted (encrypted_regex), but the MAC covers it.
		{"unencrypted value changed", "namespace: prod", "namespace: kube-system", reasonMAC},
		// A flipped character of a value's ciphertext fails its GCM tag.
		{"ciphertext changed", "password: ENC[AES256_GCM,data:", "password: ENC[AES256_GCM,data:A", reasonBadValue},
		{"lastmodified changed", "lastmodified: \"20", "lastmodified: \"19", reasonMAC},
		{"metadata corrupt", "lastmodified: \"20", "lastmodified: \"yesterday", reasonMetadata},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(enc, []byte(tc.from)) {
				t.Fatalf("fixture lacks %q:\n%s", tc.from, enc)
			}
			bad := bytes.Replace(enc, []byte(tc.from), []byte(tc.to), 1)
			fsys := NewFS(fstest.MapFS{"s.yaml": {Data: bad}}, keys(t, id))
			_, err := fs.ReadFile(fsys, "s.yaml")
			de := asDecryptError(t, err)
			if !strings.HasPrefix(de.Reason, tc.reason) {
				t.Errorf("Reason = %q, want %q", de.Reason, tc.reason)
			}
			if de.File != "s.yaml" {
				t.Errorf("File = %q, want s.yaml", de.File)
			}
			noSecrets(t, err.Error(), id)
		})
	}
}

func TestRotationAndSecondRecipient(t *testing.T) {
	a, b := sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	p := cli.Write(t, "secret.yaml", cli.Encrypt(t, "plain.yaml", []byte(secretYAML), []string{a.Recipient}, dataRegex...))
	before := readFile(t, p)
	// Rotate the data key and add b, as a user does when a second cluster gets the secret.
	cli.Run(t, []sopstest.Identity{a}, "rotate", "-i", "--add-age", b.Recipient, p)
	after := readFile(t, p)
	if bytes.Equal(before, after) {
		t.Fatal("sops rotate left the file unchanged")
	}
	for _, ids := range [][]sopstest.Identity{{a}, {b}, {b, a}} {
		got := secrets(t, NewFS(fstest.MapFS{"app/secret.yaml": {Data: after}}, keys(t, ids...)), "app")
		if d := cmp.Diff(map[string]string{"password": "hunter2", "token": "secret-token"}, got["db"]); d != "" {
			t.Errorf("after rotation, with %d identities (-want +got):\n%s", len(ids), d)
		}
	}
	// Remove a: it no longer decrypts, and the error names b as the recipient.
	cli.Run(t, []sopstest.Identity{b}, "rotate", "-i", "--rm-age", a.Recipient, p)
	_, err := fs.ReadFile(NewFS(fstest.MapFS{"secret.yaml": {Data: readFile(t, p)}}, keys(t, a)), "secret.yaml")
	if de := asDecryptError(t, err); !cmp.Equal(de.Recipients, []string{b.Recipient}) {
		t.Errorf("after removing a: Recipients = %v, want [%s]", de.Recipients, b.Recipient)
	}
}

func TestOnlyUnsupportedKeyTypes(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	// Replace the age recipient by a KMS one, as a file encrypted for AWS KMS only has it.
	var doc map[string]any
	if err := yamlv3.Unmarshal(fx.files["apps/plain/secret.yaml"].Data, &doc); err != nil {
		t.Fatal(err)
	}
	meta := doc["sops"].(map[string]any)
	delete(meta, "age")
	const arn = "arn:aws:kms:eu-west-1:111122223333:key/abcd"
	meta["kms"] = []any{map[string]any{"arn": arn, "enc": "AQICAHh=", "created_at": "2026-01-01T00:00:00Z", "aws_profile": ""}}
	data, err := yamlv3.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fs.ReadFile(NewFS(fstest.MapFS{"kms.yaml": {Data: data}}, keys(t, id)), "kms.yaml")
	de := asDecryptError(t, err)
	if !strings.Contains(de.Reason, "kms "+arn) || !strings.Contains(de.Reason, "cannot use") {
		t.Errorf("Reason = %q, want it to name the KMS key ferry cannot use", de.Reason)
	}
	if len(de.Recipients) != 0 {
		t.Errorf("Recipients = %v, want none (no age recipient)", de.Recipients)
	}
}

func TestFormatsRoundTrip(t *testing.T) {
	id := sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	for _, tc := range []struct {
		name, plain string
		exact       bool // the store writes the plaintext back byte for byte
	}{
		{"multi.yaml", "a: 1\n---\nb: [x, {c: true}]\n", false},
		{"a.yaml", "# comment\nkey: value\nlist: [1, 2]\nnested:\n  n: 1.5\n", false},
		{"a.json", `{"k": "v", "n": [1, true, null]}`, false},
		{"a.env", "A=1\n# c\nB=two words\n", true},
		{"a.ini", "[section]\nkey = value\n", false},
		{"a.bin", string(tlsKey), true},
		{"noext", "raw bytes\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc := cli.Encrypt(t, tc.name, []byte(tc.plain), []string{id.Recipient})
			if !isEncrypted(enc) {
				t.Fatalf("isEncrypted is false for sops' output:\n%s", enc)
			}
			want := cli.Run(t, []sopstest.Identity{id}, "decrypt", cli.Write(t, "enc-"+tc.name, enc))
			got, err := fs.ReadFile(NewFS(fstest.MapFS{"d/" + tc.name: {Data: enc}}, keys(t, id)), "d/"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if tc.exact && !bytes.Equal(got, want) {
				t.Errorf("decrypted differs from `sops decrypt`:\n got %q\nwant %q", got, want)
			}
			if !tc.exact {
				sameContent(t, tc.name, got, want)
			}
			if tc.exact && string(got) != tc.plain {
				t.Errorf("decrypted = %q, want the plaintext %q", got, tc.plain)
			}
		})
	}
}

// sameContent asserts got and want parse to the same content, as the format of name reads.
func sameContent(t *testing.T, name string, got, want []byte) {
	t.Helper()
	g, err := parseContent(name, got)
	if err != nil {
		t.Fatalf("decrypted %s does not parse: %v\n%s", name, err, got)
	}
	w, err := parseContent(name, want)
	if err != nil {
		t.Fatalf("`sops decrypt` of %s does not parse: %v", name, err)
	}
	if d := cmp.Diff(w, g); d != "" {
		t.Errorf("decrypted %s differs from `sops decrypt` once parsed (-want +got):\n%s", name, d)
	}
}

// parseContent parses a YAML stream (every document), a JSON document or an INI file (as
// sections of keys).
func parseContent(name string, data []byte) (any, error) {
	switch filepath.Ext(name) {
	case ".json":
		var v any
		return v, json.Unmarshal(data, &v)
	case ".ini":
		out := map[string]map[string]string{}
		sec := ""
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			switch {
			case line == "" || line[0] == ';' || line[0] == '#':
			case line[0] == '[':
				sec = strings.Trim(line, "[]")
			default:
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					return nil, errors.New("bad INI line " + line)
				}
				if out[sec] == nil {
					out[sec] = map[string]string{}
				}
				out[sec][strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		return out, nil
	}
	var docs []any
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	for {
		var v any
		if err := dec.Decode(&v); errors.Is(err, io.EOF) {
			return docs, nil
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, v)
	}
}

// asDecryptError asserts err is (or wraps) a *DecryptError.
func asDecryptError(t *testing.T, err error) *DecryptError {
	t.Helper()
	if err == nil {
		t.Fatal("no error, want a *DecryptError")
	}
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("errors.Is(%v, ErrDecrypt) = false", err)
	}
	var de *DecryptError
	if !errors.As(err, &de) {
		t.Fatalf("%v is not a *DecryptError", err)
	}
	return de
}

// noSecrets asserts msg holds no identity and no plaintext of the fixtures.
func noSecrets(t *testing.T, msg string, ids ...sopstest.Identity) {
	t.Helper()
	for _, id := range ids {
		if strings.Contains(msg, id.Secret) || strings.Contains(msg, "AGE-SECRET-KEY") {
			t.Errorf("error holds key material: %q", msg)
		}
	}
	for _, plain := range []string{"hunter2", "secret-token", "c2VjcmV0LXRva2Vu", "k-123", "s3cr3t"} {
		if strings.Contains(msg, plain) {
			t.Errorf("error holds plaintext %q: %q", plain, msg)
		}
	}
}

// TestCLIWritesSupportedVersion keeps test/sopsbin's CLI writing the format version this
// package reads, and checks that another major version is refused by name.
func TestCLIWritesSupportedVersion(t *testing.T) {
	id := sopstest.NewIdentity(t)
	enc := sopstest.New(t).Encrypt(t, "s.yaml", []byte(secretYAML), []string{id.Recipient})
	var doc struct {
		Sops struct {
			Version string `yaml:"version"`
		} `yaml:"sops"`
	}
	if err := yamlv3.Unmarshal(enc, &doc); err != nil {
		t.Fatal(err)
	}
	if major, _, _ := strings.Cut(doc.Sops.Version, "."); major != supportedVersionMajor {
		t.Fatalf("the sops CLI writes format version %q, this package reads %s.x", doc.Sops.Version, supportedVersionMajor)
	}
	future := bytes.Replace(enc, []byte("version: "+doc.Sops.Version), []byte("version: 4.0.0"), 1)
	_, err := fs.ReadFile(NewFS(fstest.MapFS{"s.yaml": {Data: future}}, keys(t, id)), "s.yaml")
	if de := asDecryptError(t, err); !strings.HasPrefix(de.Reason, reasonMetadata) || !strings.Contains(de.Reason, `"4.0.0" is not supported`) {
		t.Errorf("Reason = %q, want the version refused", de.Reason)
	}
}

func TestShamirKeyGroups(t *testing.T) {
	a, b, c := sopstest.NewIdentity(t), sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	cli.SetConfig(t, []byte(`creation_rules:
- shamir_threshold: 2
  encrypted_regex: ^(data|stringData)$
  key_groups:
  - age: [`+a.Recipient+`]
  - age: [`+b.Recipient+`]
  - age: [`+c.Recipient+`]
`))
	enc := cli.Encrypt(t, "secret.yaml", []byte(secretYAML), nil)
	files := fstest.MapFS{"app/secret.yaml": {Data: enc}}
	for _, ids := range [][]sopstest.Identity{{a, b}, {c, a}, {a, b, c}} {
		got := secrets(t, NewFS(files, keys(t, ids...)), "app")
		if d := cmp.Diff(map[string]string{"password": "hunter2", "token": "secret-token"}, got["db"]); d != "" {
			t.Errorf("with %d of 3 groups' identities (-want +got):\n%s", len(ids), d)
		}
	}
	_, err := fs.ReadFile(NewFS(files, keys(t, b)), "app/secret.yaml")
	de := asDecryptError(t, err)
	if !strings.Contains(de.Reason, "open 1 of the file's 3 key groups, and 2 are needed") {
		t.Errorf("Reason = %q, want it to say 1 of 3 groups opened, 2 needed", de.Reason)
	}
	if d := cmp.Diff([]string{a.Recipient, b.Recipient, c.Recipient}, de.Recipients, cmpopts.SortSlices(func(x, y string) bool { return x < y })); d != "" {
		t.Errorf("Recipients (-want +got):\n%s", d)
	}
}
