package sops

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferrygitops/ferry/syncer/render/sops/sopstest"
)

// readFile reads a file of the test's temporary directory.
func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// openOnly hides a base FS's ReadFile, ReadDir and Stat, so the wrapper's Open path is tested.
type openOnly struct{ fs.FS }

func TestPlainFilesPassThrough(t *testing.T) {
	files := map[string][]byte{
		"a.yaml":       []byte(plainCM),
		"readme.yaml":  []byte("doc: |\n  a SOPS file ends with\n  mac: ENC[AES256_GCM,data:...]\n"),
		"b.json":       []byte(`{"x": "ENC[AES256_GCM,data:zz]"}`),
		"bin":          {0, 1, 2, 0xff},
		"empty.yaml":   {},
		"template.yml": []byte("{{ .Values.x }}: [\n"),
	}
	base := fstest.MapFS{}
	for n, d := range files {
		base[n] = &fstest.MapFile{Data: d, ModTime: time.Unix(1, 0)}
	}
	for _, fsys := range []fs.FS{NewFS(base, nil), NewFS(openOnly{base}, nil)} {
		for n, want := range files {
			got, err := fs.ReadFile(fsys, n)
			if err != nil {
				t.Fatalf("%s: %v", n, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: got %q, want the same bytes %q", n, got, want)
			}
			st, err := fs.Stat(fsys, n)
			if err != nil || st.Size() != int64(len(want)) {
				t.Errorf("%s: Stat = %v, %v; want size %d", n, st, err, len(want))
			}
		}
		if err := fstest.TestFS(fsys, "a.yaml", "bin", "readme.yaml"); err != nil {
			t.Errorf("fs.FS semantics: %v", err)
		}
	}
	// Large plain files are handed through, all of them.
	big := bytes.Repeat([]byte("x"), MaxEncryptedFileSize+10)
	got, err := fs.ReadFile(NewFS(openOnly{fstest.MapFS{"big": {Data: big}}}, nil), "big")
	if err != nil || !bytes.Equal(got, big) {
		t.Errorf("large plain file: %d bytes, %v; want %d bytes", len(got), err, len(big))
	}
}

func TestDecryptedFileSemantics(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	for name, base := range map[string]fs.FS{"ReadFileFS": fx.files, "Open only": openOnly{fx.files}} {
		t.Run(name, func(t *testing.T) {
			fsys := NewFS(base, keys(t, id))
			plain, err := fs.ReadFile(fsys, "apps/kust/app.env")
			if err != nil {
				t.Fatal(err)
			}
			if string(plain) != appEnv {
				t.Fatalf("app.env = %q, want %q", plain, appEnv)
			}
			plain[0] = 'X' // the caller owns what ReadFile returns
			again, _ := fs.ReadFile(fsys, "apps/kust/app.env")
			if string(again) != appEnv {
				t.Errorf("a change to a returned slice reached the cache: %q", again)
			}
			st, err := fs.Stat(fsys, "apps/kust/app.env")
			if err != nil || st.Size() != int64(len(appEnv)) || st.Name() != "app.env" {
				t.Errorf("Stat = %v, %v; want app.env of %d bytes (the plaintext's size)", st, err, len(appEnv))
			}
			entries, err := fs.ReadDir(fsys, "apps/kust")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if e.Name() != "app.env" {
					continue
				}
				info, err := e.Info()
				if err != nil || info.Size() != int64(len(appEnv)) {
					t.Errorf("ReadDir entry Info = %v, %v; want %d bytes", info, err, len(appEnv))
				}
			}
			f, err := fsys.Open("apps/kust/app.env")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := io.ReadAll(f); err != nil {
				t.Fatal(err)
			}
			// app.env was read (and its Info, Stat taken) several times: decrypted once.
			d := fsys.(*decryptFS)
			if d.decrypts != 1 {
				t.Errorf("decrypted %d times, want once per file", d.decrypts)
			}
			if err := fstest.TestFS(fsys, "apps/kust/app.env", "apps/plain/secret.yaml", "apps/plain/configmap.yaml"); err != nil {
				t.Errorf("fs.FS semantics: %v", err)
			}
		})
	}
}

func TestDecryptErrorThroughFSOperations(t *testing.T) {
	id := sopstest.NewIdentity(t)
	fx := newFixture(t, id.Recipient)
	fsys := NewFS(fx.files, nil)
	_, errOpen := fsys.Open("apps/kust/app.env")
	_, errRead := fs.ReadFile(fsys, "apps/kust/app.env")
	_, errReadOpen := fs.ReadFile(NewFS(openOnly{fx.files}, nil), "apps/kust/app.env")
	for _, err := range []error{errOpen, errRead, errReadOpen} {
		var de *DecryptError
		if !errors.As(err, &de) || de.File != "apps/kust/app.env" || de.Reason != reasonNoKeys {
			t.Errorf("%v: want a *DecryptError for apps/kust/app.env saying %q", err, reasonNoKeys)
		}
	}
	// The file still exists for Stat, as stored: renderers test existence with it.
	st, err := fs.Stat(fsys, "apps/kust/app.env")
	if err != nil || st.Size() != int64(len(fx.files["apps/kust/app.env"].Data)) {
		t.Errorf("Stat of an undecryptable file = %v, %v; want its stored size", st, err)
	}
	// Directories and plain files still read.
	if _, err := fs.ReadDir(fsys, "apps/kust"); err != nil {
		t.Errorf("ReadDir: %v", err)
	}
	if _, err := fs.ReadFile(fsys, "apps/kust/kustomization.yaml"); err != nil {
		t.Errorf("plain file: %v", err)
	}
}

func TestIsEncrypted(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"sops:\n    mac: ENC[AES256_GCM,data:x]\n", true},
		{`{"sops": {"mac": "ENC[AES256_GCM,data:x]"}}`, true},
		{"sops_mac=ENC[AES256_GCM,data:x]\n", true},
		{"[sops]\nmac = ENC[AES256_GCM,data:x]\n", true},
		{"password: ENC[AES256_GCM,data:x]\n", false},
		{"hmac ENC[AES256_GCM,data:x]\n", false},
		{"mac: ENC[AES256_GC", false},
		{"", false},
		{strings.Repeat("a: b\n", 1000), false},
	} {
		if got := isEncrypted([]byte(tc.in)); got != tc.want {
			t.Errorf("isEncrypted(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseAgeIdentities(t *testing.T) {
	a, b, c := sopstest.NewIdentity(t), sopstest.NewIdentity(t), sopstest.NewIdentity(t)
	two := []byte("# two keys\n\n" + a.Secret + "\r\n  " + b.Secret + "  \n# trailing comment\n")
	k, err := ParseAgeIdentities(two, c.File)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(k.Recipients(), ","), a.Recipient+","+b.Recipient+","+c.Recipient; got != want {
		t.Errorf("Recipients = %s, want %s", got, want)
	}
	broken := a.Secret[:len(a.Secret)-3] + "QQQ" // a bad checksum
	for _, tc := range []struct {
		name  string
		files [][]byte
		want  string
	}{
		{"empty", [][]byte{[]byte("# nothing\n\n")}, "no identity found"},
		{"none", nil, "no identity found"},
		{"garbage", [][]byte{c.File, []byte("# x\nnot-a-key-" + a.Secret + "\n")}, "age identity file 2, line 2: not an age identity"},
		{"bad checksum", [][]byte{[]byte(broken + "\n")}, "age identity file 1, line 1: malformed age identity"},
		{"plugin", [][]byte{[]byte("AGE-PLUGIN-YUBIKEY-1QQQ\n")}, "plugin identities are not supported"},
		{"too large", [][]byte{bytes.Repeat([]byte("#"), MaxIdentityFileSize+1)}, "MaxIdentityFileSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseAgeIdentities(tc.files...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), a.Secret[:20]) || strings.Contains(err.Error(), c.Secret[:20]) || strings.Contains(err.Error(), "QQQ") {
				t.Errorf("error holds key material: %v", err)
			}
		})
	}
}

// TestErrorMessages shows what a user reads on a failed sync, so a change to them is seen in review.
func TestErrorMessages(t *testing.T) {
	e := &DecryptError{File: "apps/db/secret.yaml", Recipients: []string{"age1a", "age1b"}, Reason: reasonNoKeys}
	want := "apps/db/secret.yaml: cannot decrypt SOPS file: " + reasonNoKeys + " (encrypted for age recipients age1a, age1b)"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	e.Recipients = nil
	if got := e.Error(); strings.Contains(got, "encrypted for") {
		t.Errorf("Error() without recipients = %q, want no recipient list", got)
	}
}
