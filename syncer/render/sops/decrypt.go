package sops

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	sopsv3 "github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/shamir"
	"github.com/getsops/sops/v3/stores/dotenv"
	"github.com/getsops/sops/v3/stores/ini"
	"github.com/getsops/sops/v3/stores/json"
	"github.com/getsops/sops/v3/stores/yaml"
)

// maxDataKeySize bounds what decrypting one recipient's stanza may yield: a SOPS data key (or
// a Shamir share of it) is 32 bytes, 33 for a share.
const maxDataKeySize = 1 << 10

// encMarker starts every value SOPS encrypts, the MAC included.
var encMarker = []byte("ENC[AES256_GCM,")

// isEncrypted is the cheap test every file read goes through before anything parses it: a SOPS
// file holds its MAC as an encrypted value under a key ending in "mac", whichever the format:
//
//	yaml    mac: ENC[AES256_GCM,…
//	json    "mac": "ENC[AES256_GCM,…
//	dotenv  sops_mac=ENC[AES256_GCM,…
//	ini     mac = ENC[AES256_GCM,…
//
// A plain file has no "ENC[AES256_GCM," at all, which one substring search tells.
func isEncrypted(data []byte) bool {
	for rest := data; ; {
		i := bytes.Index(rest, encMarker)
		if i < 0 {
			return false
		}
		if macBefore(rest[:i]) {
			return true
		}
		rest = rest[i+len(encMarker):]
	}
}

// macBefore reports whether b ends with `mac`, a separator (':' or '=') and optional quotes
// and blanks around it.
func macBefore(b []byte) bool {
	b = bytes.TrimRight(b, " \t\"'")
	if len(b) == 0 || (b[len(b)-1] != ':' && b[len(b)-1] != '=') {
		return false
	}
	b = bytes.TrimRight(b[:len(b)-1], " \t\"'")
	return bytes.HasSuffix(b, []byte("mac"))
}

// store is what this package needs of a sops store: load an encrypted file, write the
// decrypted tree back in the file's own format.
type store interface {
	LoadEncryptedFile(in []byte) (sopsv3.Tree, error)
	EmitPlainFile(sopsv3.TreeBranches) ([]byte, error)
}

// storeFor picks the store the way the sops CLI does, by file extension: YAML, JSON, dotenv,
// INI, and binary (the whole file as one value, in a JSON envelope) for any other name. A file
// of another name whose content is not a JSON envelope is read in the format its content shows,
// as `sops --input-type` would have written it.
func storeFor(name string, data []byte) (store, string) {
	c := config.NewStoresConfig() // sops' defaults, as the CLI writes plaintext
	switch {
	case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"):
		return yaml.NewStore(&c.YAML), "yaml"
	case strings.HasSuffix(name, ".json"):
		return json.NewStore(&c.JSON), "json"
	case strings.HasSuffix(name, ".env"):
		return dotenv.NewStore(&c.Dotenv), "dotenv"
	case strings.HasSuffix(name, ".ini"):
		return ini.NewStore(&c.INI), "ini"
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		return json.NewBinaryStore(&c.JSONBinary), "binary"
	case bytes.Contains(data, []byte("sops_mac=")):
		return dotenv.NewStore(&c.Dotenv), "dotenv"
	case bytes.HasPrefix(trimmed, []byte("[")):
		return ini.NewStore(&c.INI), "ini"
	}
	return yaml.NewStore(&c.YAML), "yaml"
}

// decrypt returns the plaintext of a SOPS-encrypted file, in its own format (a binary file's
// own bytes), and whether it was one. A file that is not SOPS-encrypted comes back as it is.
// Errors are *DecryptError and hold no value of the file: sops' own messages may quote the
// input, so they are replaced by a reason.
func decrypt(name string, data []byte, keys *Keys) (out []byte, encrypted bool, err error) {
	if !isEncrypted(data) {
		return data, false, nil
	}
	// sops' stores and tree walk were written for files their users wrote; these are a pull
	// request author's. Whatever they trip on fails this file, not the worker.
	defer func() {
		if r := recover(); r != nil {
			out, encrypted, err = nil, true, &DecryptError{File: name, Reason: reasonMetadata + " (sops cannot process it)"}
		}
	}()
	st, format := storeFor(path.Base(name), data)
	tree, err := st.LoadEncryptedFile(data)
	if errors.Is(err, sopsv3.MetadataNotFound) {
		return data, false, nil // it only quotes a SOPS value (a README, an example)
	} else if err != nil {
		return nil, true, &DecryptError{File: name, Reason: fmt.Sprintf("%s (read as %s, as its name says)", reasonMetadata, format)}
	}
	recipients, others := recipientsOf(tree.Metadata)
	fail := func(reason string) ([]byte, bool, error) {
		return nil, true, &DecryptError{File: name, Recipients: recipients, Reason: reason}
	}
	if keys == nil || len(keys.identities) == 0 {
		return fail(reasonNoKeys)
	}
	dataKey, reason := recoverDataKey(tree.Metadata, keys, others)
	if dataKey == nil {
		return fail(reason)
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(dataKey, cipher)
	if err != nil {
		return fail(reasonBadValue)
	}
	stored, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, dataKey, tree.Metadata.LastModified.Format(time.RFC3339))
	storedMAC, ok := stored.(string)
	if err != nil || !ok || subtle.ConstantTimeCompare([]byte(storedMAC), []byte(mac)) != 1 {
		return fail(reasonMAC)
	}
	plain, err := st.EmitPlainFile(tree.Branches)
	if err != nil {
		return fail("the decrypted content cannot be written back as " + format)
	}
	return plain, true, nil
}

// recipientsOf returns the age recipients of every key group, sorted and without repeats, and
// a description of the other keys ("kms arn:aws:kms:…"), which ferry cannot use.
func recipientsOf(m sopsv3.Metadata) (ages, others []string) {
	for _, g := range m.KeyGroups {
		for _, k := range g {
			if a, ok := k.(*sopsage.MasterKey); ok {
				ages = append(ages, a.Recipient)
			} else if k != nil {
				others = append(others, k.TypeToIdentifier()+" "+k.ToString())
			}
		}
	}
	slices.Sort(ages)
	slices.Sort(others)
	return slices.Compact(ages), slices.Compact(others)
}

// recoverDataKey opens the file's data key with the app's identities: from one key group, the
// key itself; from several (Shamir), enough shares to meet the threshold. On failure it returns
// the reason, naming what the app holds (public keys only).
func recoverDataKey(m sopsv3.Metadata, keys *Keys, others []string) ([]byte, string) {
	if len(m.KeyGroups) == 0 {
		return nil, reasonMetadata + ": no key groups"
	}
	var parts [][]byte
	hasAge := false
	for _, g := range m.KeyGroups {
		part, sawAge := openGroup(g, keys)
		hasAge = hasAge || sawAge
		if part != nil {
			parts = append(parts, part)
		}
	}
	threshold := m.ShamirThreshold
	if threshold <= 0 {
		threshold = len(m.KeyGroups)
	}
	switch {
	case !hasAge:
		return nil, "encrypted only for keys ferry cannot use (it decrypts with age identities): " + strings.Join(others, ", ")
	case len(parts) == 0:
		return nil, fmt.Sprintf(reasonNoMatchingKey, strings.Join(keys.recipients, ", "))
	case len(m.KeyGroups) == 1:
		return parts[0], ""
	case len(parts) < threshold:
		return nil, fmt.Sprintf("the app's age identities (%s) open %d of the file's %d key groups, and %d are needed",
			strings.Join(keys.recipients, ", "), len(parts), len(m.KeyGroups), threshold)
	}
	key, err := shamir.Combine(parts)
	if err != nil {
		return nil, reasonMetadata + ": the key groups' shares do not combine"
	}
	return key, ""
}

// openGroup decrypts a key group's share with the first of its age stanzas an identity opens.
// sawAge reports whether the group has age recipients at all.
func openGroup(g sopsv3.KeyGroup, keys *Keys) (part []byte, sawAge bool) {
	for _, k := range g {
		a, ok := k.(*sopsage.MasterKey)
		if !ok {
			continue
		}
		sawAge = true
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(a.EncryptedKey)), keys.identities...)
		if err != nil {
			continue // not for these identities, or a corrupt stanza: try the next recipient
		}
		key, err := io.ReadAll(io.LimitReader(r, maxDataKeySize+1))
		if err != nil || len(key) == 0 || len(key) > maxDataKeySize {
			continue
		}
		return key, true
	}
	return nil, sawAge
}
