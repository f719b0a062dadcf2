package sops

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// supportedVersionMajor is the major version of the SOPS format this package reads: the
// `version` the sops CLI 3.x writes into a file's metadata.
const supportedVersionMajor = "3"

// maxQuotedVersion bounds the format version an error quotes: a longer one is not a version.
const maxQuotedVersion = 16

// maxFlatIndex bounds a list position in flattened metadata (dotenv, INI), so a crafted key
// cannot make the unflattening allocate a huge list.
const maxFlatIndex = 1 << 10

// metadata is what decrypting needs of a file's sops metadata.
type metadata struct {
	lastModified string // as sops formats it for the MAC's additional data (RFC 3339)
	mac          string
	version      string

	unencryptedSuffix, encryptedSuffix string
	unencryptedRegex, encryptedRegex   *regexp.Regexp
	macOnlyEncrypted                   bool
	threshold                          int

	groups []keyGroup
}

// keyGroup is one key group: its age stanzas, and descriptions of its other keys.
type keyGroup struct {
	age    []ageKey
	others []string
}

type ageKey struct{ recipient, enc string }

// otherKeyTypes are the key types sops writes besides age, with the field that identifies a key
// of the type (what an error names).
var otherKeyTypes = []struct{ name, id string }{
	{"kms", "arn"}, {"pgp", "fp"}, {"gcp_kms", "resource_id"}, {"azure_kv", "vault_url"},
	{"hc_vault", "vault_address"}, {"hckms", "key_id"},
}

// parseMetadata reads the sops metadata tree. Its errors hold no value of the file.
func parseMetadata(m mapping) (*metadata, error) {
	md := &metadata{}
	str := func(key string) (string, error) {
		v, ok := get(m, key)
		if !ok || v == nil {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("%s is not a string", key)
		}
		return s, nil
	}
	var err error
	lm, err := str("lastmodified")
	if err != nil {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339, lm)
	if err != nil {
		return nil, errors.New("lastmodified is not a time")
	}
	md.lastModified = t.Format(time.RFC3339)
	if md.mac, err = str("mac"); err != nil {
		return nil, err
	}
	if md.version, err = str("version"); err != nil {
		return nil, err
	}
	if major, _, _ := strings.Cut(md.version, "."); major != supportedVersionMajor {
		if len(md.version) > maxQuotedVersion {
			return nil, fmt.Errorf("the format version is not supported (want %s.x)", supportedVersionMajor)
		}
		return nil, fmt.Errorf("format version %q is not supported (want %s.x)", md.version, supportedVersionMajor)
	}
	if md.unencryptedSuffix, err = str("unencrypted_suffix"); err != nil {
		return nil, err
	}
	if md.encryptedSuffix, err = str("encrypted_suffix"); err != nil {
		return nil, err
	}
	for _, r := range []struct {
		key string
		dst **regexp.Regexp
	}{{"unencrypted_regex", &md.unencryptedRegex}, {"encrypted_regex", &md.encryptedRegex}} {
		s, err := str(r.key)
		if err != nil {
			return nil, err
		}
		if s == "" {
			continue
		}
		re, err := regexp.Compile(s)
		if err != nil {
			// sops matches with regexp.Match and ignores its error: nothing matches.
			re = regexp.MustCompile(`[^\x00-\x{10FFFF}]`)
		}
		*r.dst = re
	}
	for _, k := range []string{"unencrypted_comment_regex", "encrypted_comment_regex"} {
		if s, err := str(k); err != nil || s != "" {
			return nil, fmt.Errorf("%s is not supported (ferry decrypts files that select values by key, not by comment)", k)
		}
	}
	if v, ok := get(m, "mac_only_encrypted"); ok {
		switch b := v.(type) {
		case bool:
			md.macOnlyEncrypted = b
		case string:
			if md.macOnlyEncrypted, err = strconv.ParseBool(b); err != nil {
				return nil, errors.New("mac_only_encrypted is not a boolean")
			}
		case nil:
		default:
			return nil, errors.New("mac_only_encrypted is not a boolean")
		}
	}
	if v, ok := get(m, "shamir_threshold"); ok {
		switch n := v.(type) {
		case int:
			md.threshold = n
		case string:
			if md.threshold, err = strconv.Atoi(n); err != nil {
				return nil, errors.New("shamir_threshold is not a number")
			}
		case nil:
		default:
			return nil, errors.New("shamir_threshold is not a number")
		}
	}
	if v, ok := get(m, "key_groups"); ok && v != nil {
		list, ok := v.([]any)
		if !ok {
			return nil, errors.New("key_groups is not a list")
		}
		for _, g := range list {
			gm, ok := g.(mapping)
			if !ok {
				return nil, errors.New("a key group is not a mapping")
			}
			kg, err := parseKeyGroup(gm)
			if err != nil {
				return nil, err
			}
			md.groups = append(md.groups, kg)
		}
	} else {
		kg, err := parseKeyGroup(m)
		if err != nil {
			return nil, err
		}
		if len(kg.age) > 0 || len(kg.others) > 0 {
			md.groups = append(md.groups, kg)
		}
	}
	return md, nil
}

// parseKeyGroup reads the keys of a group (or of the metadata itself, without key_groups).
func parseKeyGroup(m mapping) (keyGroup, error) {
	var g keyGroup
	entries := func(name string) ([]mapping, error) {
		v, ok := get(m, name)
		if !ok || v == nil {
			return nil, nil
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%s is not a list", name)
		}
		var out []mapping
		for _, e := range list {
			em, ok := e.(mapping)
			if !ok {
				return nil, fmt.Errorf("an entry of %s is not a mapping", name)
			}
			out = append(out, em)
		}
		return out, nil
	}
	ages, err := entries("age")
	if err != nil {
		return g, err
	}
	for _, a := range ages {
		r, _ := get(a, "recipient")
		e, _ := get(a, "enc")
		rs, ok1 := r.(string)
		es, ok2 := e.(string)
		if !ok1 || !ok2 {
			return g, errors.New("an age entry lacks its recipient or enc")
		}
		g.age = append(g.age, ageKey{recipient: rs, enc: es})
	}
	for _, kt := range otherKeyTypes {
		keys, err := entries(kt.name)
		if err != nil {
			return g, err
		}
		for _, k := range keys {
			id, _ := get(k, kt.id)
			g.others = append(g.others, fmt.Sprintf("%s %v", kt.name, id))
		}
	}
	return g, nil
}

// get returns the value of key in m.
func get(m mapping, key string) (any, bool) {
	for _, it := range m {
		if !it.comment && it.key == key {
			return it.value, true
		}
	}
	return nil, false
}

// The separators of flattened metadata keys (dotenv, INI): `age__list_0__map_enc` is
// age[0].enc.
const (
	flatMapSep  = "__map_"
	flatListSep = "__list_"
)

// unflatten turns flattened metadata entries into a tree: each key is a path of map keys and
// list positions.
func unflatten(flat mapping) (mapping, error) {
	var root any = mapping{}
	for _, it := range flat {
		if it.comment {
			continue
		}
		path, err := flatPath(it.key)
		if err != nil {
			return nil, err
		}
		root, err = setPath(root, path, it.value)
		if err != nil {
			return nil, err
		}
	}
	return root.(mapping), nil
}

// flatPath splits a flattened key into map keys (strings) and list positions (ints).
func flatPath(key string) ([]any, error) {
	end := nextSep(key)
	path := []any{key[:end]}
	rest := key[end:]
	for rest != "" {
		if after, ok := strings.CutPrefix(rest, flatMapSep); ok {
			end := nextSep(after)
			path = append(path, after[:end])
			rest = after[end:]
			continue
		}
		after := rest[len(flatListSep):]
		end := nextSep(after)
		n, err := strconv.Atoi(after[:end])
		if err != nil || n < 0 || n > maxFlatIndex {
			return nil, errors.New("a flattened metadata key has a bad list position")
		}
		path = append(path, n)
		rest = after[end:]
	}
	return path, nil
}

// nextSep is the position of the next separator in s, or len(s).
func nextSep(s string) int {
	end := len(s)
	for _, sep := range []string{flatMapSep, flatListSep} {
		if i := strings.Index(s, sep); i >= 0 && i < end {
			end = i
		}
	}
	return end
}

// setPath sets the value at path under node, making mappings and lists as needed.
func setPath(node any, path []any, v any) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	switch p := path[0].(type) {
	case string:
		m, ok := node.(mapping)
		if node == nil {
			m, ok = mapping{}, true
		}
		if !ok {
			return nil, errors.New("flattened metadata mixes maps and lists")
		}
		for i, it := range m {
			if it.key == p {
				nv, err := setPath(it.value, path[1:], v)
				if err != nil {
					return nil, err
				}
				m[i].value = nv
				return m, nil
			}
		}
		nv, err := setPath(nil, path[1:], v)
		if err != nil {
			return nil, err
		}
		return append(m, item{key: p, value: nv}), nil
	case int:
		l, ok := node.([]any)
		if node == nil {
			l, ok = nil, true
		}
		if !ok {
			return nil, errors.New("flattened metadata mixes maps and lists")
		}
		for len(l) <= p {
			l = append(l, nil)
		}
		nv, err := setPath(l[p], path[1:], v)
		if err != nil {
			return nil, err
		}
		l[p] = nv
		return l, nil
	}
	return nil, errors.New("bad flattened path")
}
