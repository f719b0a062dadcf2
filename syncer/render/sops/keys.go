package sops

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"filippo.io/age"
)

// MaxIdentityFileSize bounds one age identity file. An identity is one line of about 75 bytes
// (about 2 KiB for a post-quantum one); a file much larger than a few hundred of them is not
// an identity file.
const MaxIdentityFileSize = 1 << 20

// The prefixes of the identity lines age-keygen writes. Plugin identities (AGE-PLUGIN-…) run an
// external program to decrypt, which a render never does, so they are refused by name.
const (
	x25519Prefix = "AGE-SECRET-KEY-1"
	hybridPrefix = "AGE-SECRET-KEY-PQ-1"
	pluginPrefix = "AGE-PLUGIN-"
)

// Keys are the age identities an app may decrypt with: what its `decryption: {age: …}` secret
// references hold. They are only ever used to open the data key of a SOPS file; nothing in this
// package prints, logs or returns them.
type Keys struct {
	identities []age.Identity
	// recipients are the public keys of identities, in the same order: what an error may name
	// and a status page may show.
	recipients []string
}

// ParseAgeIdentities reads age identity files as age-keygen writes them: one identity per line
// (X25519 or post-quantum hybrid), blank lines and lines starting with '#' ignored, any number
// per file. At least one identity is required. An error names the file (by its position among
// files, counting from 1) and the line, never the line's content.
func ParseAgeIdentities(files ...[]byte) (*Keys, error) {
	k := &Keys{}
	for fi, data := range files {
		if len(data) > MaxIdentityFileSize {
			return nil, fmt.Errorf("age identity file %d: larger than MaxIdentityFileSize (%d bytes)", fi+1, MaxIdentityFileSize)
		}
		for li, line := range bytes.Split(data, []byte("\n")) {
			s := strings.TrimSpace(string(line))
			if s == "" || strings.HasPrefix(s, "#") {
				continue
			}
			id, pub, err := parseIdentity(s)
			if err != nil {
				return nil, fmt.Errorf("age identity file %d, line %d: %w", fi+1, li+1, err)
			}
			k.identities = append(k.identities, id)
			k.recipients = append(k.recipients, pub)
		}
	}
	if len(k.identities) == 0 {
		return nil, errors.New("age identity files: no identity found (want lines starting with " + x25519Prefix + ")")
	}
	return k, nil
}

// parseIdentity parses one identity line and returns it with its public key. Its errors say what
// kind of line it is at most: age's own parse errors may quote characters of the key.
func parseIdentity(s string) (age.Identity, string, error) {
	switch {
	case strings.HasPrefix(s, hybridPrefix):
		id, err := age.ParseHybridIdentity(s)
		if err != nil {
			return nil, "", errors.New("malformed post-quantum age identity")
		}
		return id, id.Recipient().String(), nil
	case strings.HasPrefix(s, x25519Prefix):
		id, err := age.ParseX25519Identity(s)
		if err != nil {
			return nil, "", errors.New("malformed age identity")
		}
		return id, id.Recipient().String(), nil
	case strings.HasPrefix(s, pluginPrefix):
		return nil, "", errors.New("age plugin identities are not supported: they run a program to decrypt")
	}
	return nil, "", errors.New("not an age identity (want a line starting with " + x25519Prefix + ", or a comment starting with #)")
}

// Recipients returns the public keys of the identities, which files must be encrypted for to
// be readable with k. They are public: showing them is how a user learns which key to add.
func (k *Keys) Recipients() []string {
	if k == nil {
		return nil
	}
	return append([]string(nil), k.recipients...)
}
