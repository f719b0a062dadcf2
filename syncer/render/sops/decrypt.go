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

	"filippo.io/age"
	"filippo.io/age/armor"
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

// format is a store: how a SOPS file of one kind is read and written back.
type format string

const (
	formatYAML   format = "yaml"
	formatJSON   format = "json"
	formatDotenv format = "dotenv"
	formatINI    format = "ini"
	formatBinary format = "binary"
)

// formatFor picks the store the way the sops CLI does, by file extension: YAML, JSON, dotenv,
// INI, and binary (the whole file as one value, in a JSON envelope) for any other name. A file
// of another name whose content is not a JSON envelope is read in the format its content shows,
// as `sops --input-type` would have written it.
func formatFor(name string, data []byte) format {
	switch {
	case strings.HasSuffix(name, ".yaml"), strings.HasSuffix(name, ".yml"):
		return formatYAML
	case strings.HasSuffix(name, ".json"):
		return formatJSON
	case strings.HasSuffix(name, ".env"):
		return formatDotenv
	case strings.HasSuffix(name, ".ini"):
		return formatINI
	}
	trimmed := bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		return formatBinary
	case bytes.Contains(data, []byte("sops_mac=")):
		return formatDotenv
	case bytes.HasPrefix(trimmed, []byte("[")):
		return formatINI
	}
	return formatYAML
}

// parsed is a file read by its store: its documents (one but for multi-document YAML) and
// its metadata tree.
type parsed struct {
	docs []mapping
	meta mapping
}

// load reads data in format f. errNoMetadata says the file has no sops metadata.
func load(f format, data []byte) (*parsed, error) {
	switch f {
	case formatYAML:
		docs, err := loadYAML(data)
		if err != nil {
			return nil, err
		}
		docs, meta, err := splitMetadata(docs)
		return &parsed{docs: docs, meta: meta}, err
	case formatJSON, formatBinary:
		doc, err := loadJSON(data)
		if err != nil {
			return nil, err
		}
		docs, meta, err := splitMetadata([]mapping{doc})
		return &parsed{docs: docs, meta: meta}, err
	case formatDotenv:
		doc, flat, err := loadDotenv(data)
		if err != nil {
			return nil, err
		}
		meta, err := unflatten(flat)
		return &parsed{docs: []mapping{doc}, meta: meta}, err
	case formatINI:
		doc, err := loadINI(data)
		if err != nil {
			return nil, err
		}
		docs, flat, err := splitMetadata([]mapping{doc})
		if err != nil {
			return nil, err
		}
		for i := range flat {
			if s, ok := flat[i].value.(string); ok {
				flat[i].value = strings.ReplaceAll(s, `\n`, "\n")
			}
		}
		meta, err := unflatten(flat)
		return &parsed{docs: docs, meta: meta}, err
	}
	return nil, errors.New("unknown format")
}

// emit writes decrypted documents back in format f; a binary file's bytes are its data value.
func emit(f format, docs []mapping) ([]byte, error) {
	switch f {
	case formatYAML:
		return emitYAML(docs)
	case formatJSON:
		return emitJSON(docs[0])
	case formatDotenv:
		return emitDotenv(docs[0])
	case formatINI:
		return emitINI(docs[0])
	case formatBinary:
		v, ok := get(docs[0], "data")
		if !ok {
			return nil, errors.New("no data value")
		}
		s, ok := v.(string)
		if !ok {
			return nil, errors.New("the data value is not a string")
		}
		return []byte(s), nil
	}
	return nil, errors.New("unknown format")
}

// decrypt returns the plaintext of a SOPS-encrypted file, in its own format (a binary file's
// own bytes), and whether it was one. A file that is not SOPS-encrypted comes back as it is.
// Errors are *DecryptError and hold no value of the file: parsers' messages may quote the
// input, so they are replaced by a reason.
func decrypt(name string, data []byte, keys *Keys) (out []byte, encrypted bool, err error) {
	if !isEncrypted(data) {
		return data, false, nil
	}
	// The files are a pull request author's: whatever the parsers trip on fails this file, not
	// the worker.
	defer func() {
		if r := recover(); r != nil {
			out, encrypted, err = nil, true, &DecryptError{File: name, Reason: reasonMetadata + " (it cannot be parsed)"}
		}
	}()
	f := formatFor(path.Base(name), data)
	file, err := load(f, data)
	if errors.Is(err, errNoMetadata) {
		return data, false, nil // it only quotes a SOPS value (a README, an example)
	} else if err != nil {
		return nil, true, &DecryptError{File: name, Reason: fmt.Sprintf("%s (read as %s, as its name says)", reasonMetadata, f)}
	}
	md, err := parseMetadata(file.meta)
	if err != nil {
		// parseMetadata's errors name metadata fields, never their values.
		return nil, true, &DecryptError{File: name, Reason: reasonMetadata + ": " + err.Error()}
	}
	recipients, others := recipientsOf(md)
	fail := func(reason string) ([]byte, bool, error) {
		return nil, true, &DecryptError{File: name, Recipients: recipients, Reason: reason}
	}
	if keys == nil || len(keys.identities) == 0 {
		return fail(reasonNoKeys)
	}
	dataKey, reason := recoverDataKey(md, keys, others)
	if dataKey == nil {
		return fail(reason)
	}
	w, err := newWalker(md, dataKey)
	if err != nil {
		return fail(reasonMetadata + ": the data key is not an AES-256 key")
	}
	for _, doc := range file.docs {
		if err := w.mapping(doc, nil); err != nil {
			return fail(err.Error())
		}
	}
	stored, err := w.open(md.mac, md.lastModified)
	storedMAC, ok := stored.(string)
	if err != nil || !ok || subtle.ConstantTimeCompare([]byte(storedMAC), []byte(w.sum())) != 1 {
		return fail(reasonMAC)
	}
	plain, err := emit(f, file.docs)
	if err != nil {
		return fail(fmt.Sprintf("the decrypted content cannot be written back as %s", f))
	}
	return plain, true, nil
}

// recipientsOf returns the age recipients of every key group, sorted and without repeats, and
// a description of the other keys ("kms arn:aws:kms:…"), which ferry cannot use.
func recipientsOf(m *metadata) (ages, others []string) {
	for _, g := range m.groups {
		for _, a := range g.age {
			ages = append(ages, a.recipient)
		}
		others = append(others, g.others...)
	}
	slices.Sort(ages)
	slices.Sort(others)
	return slices.Compact(ages), slices.Compact(others)
}

// recoverDataKey opens the file's data key with the app's identities: from one key group, the
// key itself; from several (Shamir), enough shares to meet the threshold. On failure it returns
// the reason, naming what the app holds (public keys only).
func recoverDataKey(m *metadata, keys *Keys, others []string) ([]byte, string) {
	if len(m.groups) == 0 {
		return nil, reasonMetadata + ": no key groups"
	}
	var parts [][]byte
	hasAge := false
	for _, g := range m.groups {
		part := openGroup(g, keys)
		hasAge = hasAge || len(g.age) > 0
		if part != nil {
			parts = append(parts, part)
		}
	}
	threshold := m.threshold
	if threshold <= 0 {
		threshold = len(m.groups)
	}
	switch {
	case !hasAge:
		return nil, "encrypted only for keys ferry cannot use (it decrypts with age identities): " + strings.Join(others, ", ")
	case len(parts) == 0:
		return nil, fmt.Sprintf(reasonNoMatchingKey, strings.Join(keys.recipients, ", "))
	case len(m.groups) == 1:
		return parts[0], ""
	case len(parts) < threshold:
		return nil, fmt.Sprintf("the app's age identities (%s) open %d of the file's %d key groups, and %d are needed",
			strings.Join(keys.recipients, ", "), len(parts), len(m.groups), threshold)
	}
	key, err := combineShares(parts)
	if err != nil {
		return nil, reasonMetadata + ": the key groups' shares do not combine"
	}
	return key, ""
}

// openGroup decrypts a key group's share with the first of its age stanzas an identity opens.
func openGroup(g keyGroup, keys *Keys) []byte {
	for _, a := range g.age {
		r, err := age.Decrypt(armor.NewReader(strings.NewReader(a.enc)), keys.identities...)
		if err != nil {
			continue // not for these identities, or a corrupt stanza: try the next recipient
		}
		key, err := io.ReadAll(io.LimitReader(r, maxDataKeySize+1))
		if err != nil || len(key) == 0 || len(key) > maxDataKeySize {
			continue
		}
		return key
	}
	return nil
}
