package sops

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/ferrygitops/ferry/syncer/render/sops/sopstest"
)

// typesYAML has every kind of value sops encrypts (strings, ints, floats, booleans, nulls,
// empty strings, multi-line strings, lists in lists, mappings in lists) and comments at every
// level.
const typesYAML = `# head comment
name: app
count: 3
ratio: 0.25
enabled: true
off: false
nothing: null
empty: ""
when: 2024-01-02T03:04:05Z # looks like a time, is a string
nested:
  list:
    - a
    # a comment in a list
    - 2
    - [x, [y, 7]]
    - {k: v, n: 1.5}
  # inner comment
  password_unencrypted: plain
  token_enc: secret
multi: |
  line1
  line2
`

// typesJSON is typesYAML's content as JSON (no comments: JSON has none).
const typesJSON = `{"name": "app", "count": 3, "ratio": 0.25, "enabled": true, "off": false, "nothing": null,
 "empty": "", "big": 12345678901234, "neg": -1e-7,
 "nested": {"list": ["a", 2, ["x", ["y", 7]], {"k": "v", "n": 1.5}], "password_unencrypted": "plain", "token_enc": "secret"}}`

// rules are the ways sops selects the values it encrypts, as CLI flags or a creation rule.
var rules = []struct {
	name  string
	flags []string
	rule  string // creation rule lines besides the age key
}{
	{name: "default (unencrypted suffix)"},
	{name: "encrypted suffix", flags: []string{"--encrypted-suffix", "_enc"}},
	{name: "unencrypted regex", flags: []string{"--unencrypted-regex", "^(name|count|k)$"}},
	{name: "encrypted regex", flags: []string{"--encrypted-regex", "^(list|ratio)$"}},
	{name: "mac only encrypted", rule: "  encrypted_regex: ^(list|enabled)$\n  mac_only_encrypted: true\n"},
}

// TestEncryptionRulesAndTypes decrypts files the CLI encrypted under every rule and compares
// them, parsed, with `sops decrypt`.
func TestEncryptionRulesAndTypes(t *testing.T) {
	id := sopstest.NewIdentity(t)
	for _, r := range rules {
		t.Run(r.name, func(t *testing.T) {
			cli := sopstest.New(t)
			recipients := []string{id.Recipient}
			if r.rule != "" {
				cli.SetConfig(t, []byte("creation_rules:\n- age: "+id.Recipient+"\n"+r.rule))
				recipients = nil
			}
			for name, plain := range map[string]string{"t.yaml": typesYAML, "t.json": typesJSON} {
				enc := cli.Encrypt(t, name, []byte(plain), recipients, r.flags...)
				want := cli.Run(t, []sopstest.Identity{id}, "decrypt", cli.Write(t, "enc-"+name, enc))
				got, err := fs.ReadFile(NewFS(fstest.MapFS{name: {Data: enc}}, keys(t, id)), name)
				if err != nil {
					t.Fatalf("%s: %v\n%s", name, err, enc)
				}
				sameContent(t, name, got, want)
				sameContent(t, name, got, []byte(plain))
			}
		})
	}
}

// TestMACCoverage changes an unencrypted value: the MAC covers it, unless the file was
// encrypted with mac_only_encrypted, which sops itself then accepts too.
func TestMACCoverage(t *testing.T) {
	id := sopstest.NewIdentity(t)
	for _, macOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("mac_only_encrypted=%v", macOnly), func(t *testing.T) {
			cli := sopstest.New(t)
			cli.SetConfig(t, []byte(fmt.Sprintf("creation_rules:\n- age: %s\n  encrypted_regex: ^password$\n  mac_only_encrypted: %v\n", id.Recipient, macOnly)))
			enc := cli.Encrypt(t, "s.yaml", []byte("name: app\npassword: hunter2\n"), nil)
			changed := bytes.Replace(enc, []byte("name: app"), []byte("name: other"), 1)
			if bytes.Equal(changed, enc) {
				t.Fatalf("fixture lacks name: app:\n%s", enc)
			}
			_, sopsErr := cli.TryRun(t, []sopstest.Identity{id}, "decrypt", cli.Write(t, "changed.yaml", changed))
			got, err := fs.ReadFile(NewFS(fstest.MapFS{"s.yaml": {Data: changed}}, keys(t, id)), "s.yaml")
			if macOnly {
				if sopsErr != nil || err != nil {
					t.Fatalf("sops: %v; ferry: %v; want both to accept a change outside the MAC", sopsErr, err)
				}
				sameContent(t, "s.yaml", got, []byte("name: other\npassword: hunter2\n"))
				return
			}
			if sopsErr == nil {
				t.Fatal("sops accepted a changed value the MAC covers")
			}
			if de := asDecryptError(t, err); de.Reason != reasonMAC {
				t.Errorf("Reason = %q, want %q", de.Reason, reasonMAC)
			}
		})
	}
}

// TestFlatFormatsExact checks dotenv files (comments included, encrypted or not) and INI
// files of several sections under encryption rules.
func TestFlatFormatsExact(t *testing.T) {
	id := sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	const env = "# database\nDB_USER=admin\nDB_PASS=a=b\\nc\n#second comment\nEMPTY=\nPORT=5432\n"
	for _, flags := range [][]string{nil, {"--encrypted-regex", "PASS"}, {"--unencrypted-suffix", "USER"}} {
		enc := cli.Encrypt(t, "a.env", []byte(env), []string{id.Recipient}, flags...)
		want := cli.Run(t, []sopstest.Identity{id}, "decrypt", cli.Write(t, "enc.env", enc))
		got, err := fs.ReadFile(NewFS(fstest.MapFS{"a.env": {Data: enc}}, keys(t, id)), "a.env")
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		if !bytes.Equal(got, want) || string(got) != env {
			t.Errorf("%v: dotenv decrypted = %q, want %q (sops decrypt: %q)", flags, got, env, want)
		}
	}
	const ini = "top = level\n\n[db]\nuser = admin\npassword = hunter2\n\n[api]\nkey = k-123\nurl = https://x\n"
	for _, flags := range [][]string{nil, {"--encrypted-regex", "^(password|key)$"}} {
		enc := cli.Encrypt(t, "a.ini", []byte(ini), []string{id.Recipient}, flags...)
		want := cli.Run(t, []sopstest.Identity{id}, "decrypt", cli.Write(t, "enc.ini", enc))
		got, err := fs.ReadFile(NewFS(fstest.MapFS{"a.ini": {Data: enc}}, keys(t, id)), "a.ini")
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		sameContent(t, "a.ini", got, want)
		sameContent(t, "a.ini", got, []byte(ini))
	}
}

// TestCommentRegexRefused: files whose encryption rule selects values by comment are refused
// by name rather than decrypted by a guess at sops' comment placement.
func TestCommentRegexRefused(t *testing.T) {
	id := sopstest.NewIdentity(t)
	cli := sopstest.New(t)
	cli.SetConfig(t, []byte("creation_rules:\n- age: "+id.Recipient+"\n  encrypted_comment_regex: sops:enc\n"))
	enc := cli.Encrypt(t, "s.yaml", []byte("# sops:enc\npassword: hunter2\nname: app\n"), nil)
	_, err := fs.ReadFile(NewFS(fstest.MapFS{"s.yaml": {Data: enc}}, keys(t, id)), "s.yaml")
	de := asDecryptError(t, err)
	if !strings.Contains(de.Reason, "encrypted_comment_regex is not supported") {
		t.Errorf("Reason = %q, want it to name encrypted_comment_regex", de.Reason)
	}
	noSecrets(t, err.Error(), id)
}

// TestAliasBomb: a few anchors referencing each other would expand to 10^10 values; the file
// fails as unreadable, at once, instead of exhausting the worker's memory.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	b.WriteString("sops:\n    mac: ENC[AES256_GCM,data:x]\n")
	start := time.Now()
	_, encrypted, err := decrypt("bomb.yaml", []byte(b.String()), nil)
	if !encrypted {
		t.Fatal("the file was taken as plain")
	}
	if de := asDecryptError(t, err); !strings.HasPrefix(de.Reason, reasonMetadata) {
		t.Errorf("Reason = %q, want %q", de.Reason, reasonMetadata)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing the file took %v", d)
	}
}
