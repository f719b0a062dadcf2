// Package sopstest runs the real sops CLI for tests: it finds (or builds) the binary and runs it
// isolated from the user's sops and age configuration, so fixtures are encrypted the way users
// encrypt them.
package sopstest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/ferrygitops/ferry/test/toolbin"
)

// BinEnv names the environment variable that may point at the sops binary or the directory
// holding it; when unset, the binary is built by BuildScript.
const BinEnv = "FERRY_SOPS_BIN"

// BuildScript is the script, relative to the repository root, that builds the sops CLI from the
// Go module proxy into a cache and prints the cache directory.
const BuildScript = "test/sopsbin/build.sh"

// BuildTimeout bounds a cold build of the CLI (about 10 minutes on 2 cores, downloads included).
const BuildTimeout = 30 * time.Minute

// RunTimeout bounds one run of the CLI.
const RunTimeout = time.Minute

// Binary returns the path of the sops CLI: $FERRY_SOPS_BIN when set, else what BuildScript
// prints (a warm cache answers at once). It fails t when neither yields an executable.
func Binary(t testing.TB) string {
	t.Helper()
	p := os.Getenv(BinEnv)
	if p == "" {
		script, err := toolbin.Find(BuildScript)
		if err != nil {
			t.Fatalf("%v; set %s", err, BinEnv)
		}
		ctx, cancel := context.WithTimeout(t.Context(), BuildTimeout)
		defer cancel()
		if p, err = toolbin.Build(ctx, script, nil, t.Logf); err != nil {
			t.Fatalf("build sops: %v", err)
		}
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		p = filepath.Join(p, "sops")
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatalf("sops binary: %v", err)
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		t.Fatalf("sops binary %s is not an executable file", p)
	}
	return p
}

// Identity is a freshly generated age key pair.
type Identity struct {
	// Secret is the identity line (AGE-SECRET-KEY-1…), File an identity file holding it as
	// age-keygen writes one, Recipient the public key.
	Secret, Recipient string
	File              []byte
}

// NewIdentity generates an age X25519 identity.
func NewIdentity(t testing.TB) Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	file := "# created: by a test\n# public key: " + id.Recipient().String() + "\n" + id.String() + "\n"
	return Identity{Secret: id.String(), Recipient: id.Recipient().String(), File: []byte(file)}
}

// CLI runs sops in a directory of its own, with its own sops configuration (empty unless
// SetConfig wrote one), no HOME of the user's and no age keys but the ones a call passes.
type CLI struct {
	// Path is the sops binary; Dir the directory files are written to and sops runs in.
	Path, Dir string
}

// New returns a CLI on the sops binary Binary finds, in a fresh temporary directory.
func New(t testing.TB) *CLI {
	t.Helper()
	c := &CLI{Path: Binary(t), Dir: t.TempDir()}
	c.SetConfig(t, nil)
	return c
}

// configFile is the sops configuration every run of a CLI reads (and no other).
const configFile = "sops-config.yaml"

// SetConfig replaces the CLI's sops configuration (.sops.yaml's content), e.g. creation rules
// with key groups and a Shamir threshold.
func (c *CLI) SetConfig(t testing.TB, config []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(c.Dir, configFile), config, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Run runs sops with args in Dir and returns its standard output; decrypting runs (rotate,
// updatekeys, decrypt) get the secrets of ids as SOPS_AGE_KEY. It fails t when sops fails.
func (c *CLI) Run(t testing.TB, ids []Identity, args ...string) []byte {
	t.Helper()
	out, err := c.TryRun(t, ids, args...)
	if err != nil {
		t.Fatalf("sops %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// TryRun is Run returning sops' failure (with its standard error) instead of failing t.
func (c *CLI) TryRun(t testing.TB, ids []Identity, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), RunTimeout)
	defer cancel()
	full := append([]string{"--config", filepath.Join(c.Dir, configFile)}, args...)
	cmd := exec.CommandContext(ctx, c.Path, full...)
	cmd.Dir = c.Dir
	cmd.Env = []string{"HOME=" + c.Dir, "XDG_CONFIG_HOME=" + c.Dir, "PATH=" + os.Getenv("PATH"), "SOPS_DISABLE_VERSION_CHECK=1"}
	if len(ids) > 0 {
		var secrets []string
		for _, id := range ids {
			secrets = append(secrets, id.Secret)
		}
		cmd.Env = append(cmd.Env, "SOPS_AGE_KEY="+strings.Join(secrets, "\n"))
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return out, nil
}

// Write writes data to name under Dir and returns its path.
func (c *CLI) Write(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(c.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Encrypt writes plaintext to name under Dir and returns what `sops encrypt --age` makes of it
// for recipients (none: as the configuration says); args go before the file (e.g. "--encrypted-regex", "^(data|stringData)$").
// The format follows name's extension, as for users.
func (c *CLI) Encrypt(t testing.TB, name string, plaintext []byte, recipients []string, args ...string) []byte {
	t.Helper()
	p := c.Write(t, name, plaintext)
	full := []string{"encrypt"}
	if len(recipients) > 0 {
		full = append(full, "--age", strings.Join(recipients, ","))
	}
	return c.Run(t, nil, append(append(full, args...), p)...)
}
