package sops

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// ivSize is the nonce size sops uses with AES-GCM.
const ivSize = 32

// macOnlyEncryptedPrefix is what sops writes into the MAC first when mac_only_encrypted is set,
// so a MAC of that mode never equals one of the default mode.
var macOnlyEncryptedPrefix = [...]byte{0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69}

// walker decrypts a file's values in tree order and computes its MAC.
type walker struct {
	md   *metadata
	gcm  cipher.AEAD
	hash hash.Hash
}

func newWalker(md *metadata, key []byte) (*walker, error) {
	if len(key) != 32 {
		return nil, errors.New("data key is not 32 bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCMWithNonceSize(block, ivSize)
	if err != nil {
		return nil, err
	}
	w := &walker{md: md, gcm: gcm, hash: sha512.New()}
	if md.macOnlyEncrypted {
		w.hash.Write(macOnlyEncryptedPrefix[:])
	}
	return w, nil
}

// sum is the MAC of the values walked so far, as sops writes it.
func (w *walker) sum() string { return fmt.Sprintf("%X", w.hash.Sum(nil)) }

// mapping decrypts m's values in place. A value's path is the keys leading to it; list items
// share their list's path.
func (w *walker) mapping(m mapping, path []string) error {
	for i, it := range m {
		if it.comment {
			// Comments are outside the MAC; an encrypted one is opened, one that does not open
			// is kept as it is (sops wrote comments unencrypted before 3.0).
			if s, ok := it.value.(string); ok && w.encrypted(path) {
				if v, err := w.open(s, joinAAD(path)); err == nil {
					if c, ok := v.(comment); ok {
						m[i].value = string(c)
					}
				}
			}
			continue
		}
		v, err := w.value(it.value, append(path[:len(path):len(path)], it.key))
		if err != nil {
			return err
		}
		m[i].value = v
	}
	return nil
}

func (w *walker) value(v any, path []string) (any, error) {
	switch x := v.(type) {
	case mapping:
		return x, w.mapping(x, path)
	case []any:
		for i, e := range x {
			nv, err := w.value(e, path)
			if err != nil {
				return nil, err
			}
			x[i] = nv
		}
		return x, nil
	case nil:
		return nil, nil // sops neither encrypts nor MACs a null
	case string, int, float64, bool, time.Time:
		return w.leaf(x, path)
	}
	return nil, fmt.Errorf("%s (a value of type %T, which sops does not write)", reasonBadValue, v)
}

// leaf decrypts one scalar if the metadata says it was encrypted, and adds it to the MAC.
func (w *walker) leaf(v any, path []string) (any, error) {
	enc := w.encrypted(path)
	if enc {
		s, ok := v.(string)
		if !ok {
			return nil, errors.New(reasonBadValue)
		}
		var err error
		if v, err = w.open(s, joinAAD(path)); err != nil {
			return nil, errors.New(reasonBadValue)
		}
	}
	if _, isComment := v.(comment); !isComment && (enc || !w.md.macOnlyEncrypted) {
		b, err := macBytes(v)
		if err != nil {
			return nil, errors.New(reasonBadValue)
		}
		w.hash.Write(b)
	}
	return v, nil
}

// joinAAD is the additional data of a value at path: its keys joined by ':', then ':'.
func joinAAD(path []string) string { return strings.Join(path, ":") + ":" }

// encrypted reports whether sops encrypted the value at path, by the metadata's suffixes and
// regular expressions, each later rule overriding the earlier ones as in sops.
func (w *walker) encrypted(path []string) bool {
	md := w.md
	enc := true
	if md.unencryptedSuffix != "" && anyKey(path, func(k string) bool { return strings.HasSuffix(k, md.unencryptedSuffix) }) {
		enc = false
	}
	if md.encryptedSuffix != "" {
		enc = anyKey(path, func(k string) bool { return strings.HasSuffix(k, md.encryptedSuffix) })
	}
	if md.unencryptedRegex != nil && anyKey(path, md.unencryptedRegex.MatchString) {
		enc = false
	}
	if md.encryptedRegex != nil {
		enc = anyKey(path, md.encryptedRegex.MatchString)
	}
	return enc
}

func anyKey(path []string, match func(string) bool) bool {
	for _, k := range path {
		if match(k) {
			return true
		}
	}
	return false
}

// encPrefix and the field names of an encrypted value:
// ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<type>].
const encPrefix = "ENC[AES256_GCM,data:"

// open decrypts one encrypted value with additional data aad and returns it typed as its
// type field says. An empty string is a value sops left empty (it does not encrypt those).
func (w *walker) open(s, aad string) (any, error) {
	if s == "" {
		return "", nil
	}
	rest, ok := strings.CutPrefix(s, encPrefix)
	if !ok {
		return nil, errors.New("not an encrypted value")
	}
	end := strings.LastIndex(rest, "]")
	if end < 0 {
		return nil, errors.New("not an encrypted value")
	}
	rest = rest[:end]
	b64data, rest, ok1 := strings.Cut(rest, ",iv:")
	b64iv, rest, ok2 := strings.Cut(rest, ",tag:")
	b64tag, typ, ok3 := strings.Cut(rest, ",type:")
	if !ok1 || !ok2 || !ok3 {
		return nil, errors.New("not an encrypted value")
	}
	data, err1 := base64.StdEncoding.DecodeString(b64data)
	iv, err2 := base64.StdEncoding.DecodeString(b64iv)
	tag, err3 := base64.StdEncoding.DecodeString(b64tag)
	if err1 != nil || err2 != nil || err3 != nil || len(iv) != ivSize || len(tag) != w.gcm.Overhead() {
		return nil, errors.New("malformed encrypted value")
	}
	plain, err := w.gcm.Open(nil, iv, append(data, tag...), []byte(aad))
	if err != nil {
		return nil, err
	}
	switch typ {
	case "str":
		return string(plain), nil
	case "int":
		return strconv.Atoi(string(plain))
	case "float":
		return strconv.ParseFloat(string(plain), 64)
	case "bool":
		return strconv.ParseBool(string(plain))
	case "bytes":
		return string(plain), nil
	case "time":
		var t time.Time
		err := t.UnmarshalText(plain)
		return t, err
	case "comment":
		return comment(plain), nil
	}
	return nil, errors.New("unknown value type")
}

// macBytes is how sops writes a value into the MAC.
func macBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case int:
		return []byte(strconv.Itoa(x)), nil
	case float64:
		return []byte(strconv.FormatFloat(x, 'f', -1, 64)), nil
	case bool:
		if x {
			return []byte("True"), nil
		}
		return []byte("False"), nil
	case time.Time:
		return x.MarshalText()
	}
	return nil, fmt.Errorf("type %T", v)
}
