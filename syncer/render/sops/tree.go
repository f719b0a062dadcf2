package sops

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

// The in-memory form of a SOPS file, as its store reads it: a document is a mapping; values are
// mappings, lists and scalars (string, int, float64, bool, nil, time.Time). Comments take part
// only where the output must be byte-exact (dotenv); elsewhere they are dropped, since they are
// not part of the MAC and ferry parses the plaintext.
type (
	mapping []item
	item    struct {
		key   string
		value any
		// comment marks a comment line; its text is in value (a string), key is empty.
		comment bool
	}
	// comment is a value that decrypted as a comment (sops writes comments of lists as items).
	comment string
)

// errNoMetadata says a file has no sops metadata: it only quotes an encrypted value.
var errNoMetadata = errors.New("no sops metadata")

// metadataKey is the key of the metadata in YAML, JSON and INI files; dotenv files prefix the
// flattened metadata keys with metadataPrefix.
const (
	metadataKey    = "sops"
	metadataPrefix = "sops_"
)

// splitMetadata removes the "sops" entry from every document and returns the first document's.
func splitMetadata(docs []mapping) ([]mapping, mapping, error) {
	var meta mapping
	found := false
	for di, doc := range docs {
		kept := doc[:0:0]
		for _, it := range doc {
			if it.comment || it.key != metadataKey {
				kept = append(kept, it)
				continue
			}
			if di == 0 {
				if found {
					return nil, nil, errors.New("duplicate sops entry")
				}
				m, ok := it.value.(mapping)
				if !ok {
					return nil, nil, errors.New("sops entry is not a mapping")
				}
				meta, found = m, true
			}
		}
		docs[di] = kept
	}
	if !found {
		return nil, nil, errNoMetadata
	}
	return docs, meta, nil
}

// --- YAML ---

// loadYAML reads every document of a YAML stream as a mapping, the way sops' YAML store does:
// scalars are what the YAML decoder makes of them into an interface, aliases are expanded.
func loadYAML(data []byte) ([]mapping, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []mapping
	r := &yamlReader{}
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		m, err := r.document(&n, 0)
		if err != nil {
			return nil, err
		}
		docs = append(docs, m)
	}
	return docs, nil
}

// maxYAMLDepth bounds nesting (aliases included), so a deep document fails instead of
// exhausting the stack.
const maxYAMLDepth = 100

// maxYAMLNodes bounds the nodes a YAML file expands to, aliases expanded: a few small
// anchors referencing each other (an alias bomb) would otherwise expand to billions.
const maxYAMLNodes = 1 << 20

// yamlReader converts YAML nodes into values within maxYAMLNodes.
type yamlReader struct{ nodes int }

// count charges one node; it fails once the file has expanded to more than maxYAMLNodes.
func (r *yamlReader) count() error {
	r.nodes++
	if r.nodes > maxYAMLNodes {
		return errors.New("too many values once aliases are expanded")
	}
	return nil
}

func (r *yamlReader) document(n *yaml.Node, depth int) (mapping, error) {
	if err := r.count(); err != nil {
		return nil, err
	}
	if depth > maxYAMLDepth {
		return nil, errors.New("nested too deep")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		var out mapping
		for _, c := range n.Content {
			m, err := r.document(c, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, m...)
		}
		return out, nil
	case yaml.MappingNode:
		v, err := r.value(n, depth)
		if err != nil {
			return nil, err
		}
		return v.(mapping), nil
	case yaml.AliasNode:
		return r.document(n.Alias, depth+1)
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return nil, nil
		}
	}
	return nil, errors.New("a YAML document that is not a mapping")
}

func (r *yamlReader) value(n *yaml.Node, depth int) (any, error) {
	if err := r.count(); err != nil {
		return nil, err
	}
	if depth > maxYAMLDepth {
		return nil, errors.New("nested too deep")
	}
	switch n.Kind {
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := r.value(c, depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	case yaml.MappingNode:
		if len(n.Content)%2 != 0 {
			return nil, errors.New("malformed mapping")
		}
		m := make(mapping, 0, len(n.Content)/2)
		for i := 0; i < len(n.Content); i += 2 {
			var k any
			if err := n.Content[i].Decode(&k); err != nil {
				return nil, err
			}
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("a key of type %T (sops supports string keys only)", k)
			}
			v, err := r.value(n.Content[i+1], depth+1)
			if err != nil {
				return nil, err
			}
			m = append(m, item{key: ks, value: v})
		}
		return m, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, err
		}
		return v, nil
	case yaml.AliasNode:
		return r.value(n.Alias, depth+1)
	}
	return nil, errors.New("unexpected YAML node")
}

// emitYAML writes documents as a YAML stream.
func emitYAML(docs []mapping) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(4)
	for _, d := range docs {
		n, err := yamlNode(d)
		if err != nil {
			return nil, err
		}
		if err := enc.Encode(n); err != nil {
			return nil, err
		}
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func yamlNode(v any) (*yaml.Node, error) {
	switch v := v.(type) {
	case mapping:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, it := range v {
			if it.comment {
				continue
			}
			if _, ok := it.value.(comment); ok {
				continue
			}
			k := &yaml.Node{}
			if err := k.Encode(it.key); err != nil {
				return nil, err
			}
			val, err := yamlNode(it.value)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, k, val)
		}
		return n, nil
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range v {
			if _, ok := e.(comment); ok {
				continue
			}
			c, err := yamlNode(e)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, c)
		}
		return n, nil
	case []byte:
		return yamlNode(string(v))
	}
	n := &yaml.Node{}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	return n, nil
}

// --- JSON ---

// loadJSON reads a JSON object keeping its keys' order; numbers become int when they are
// integers in int64's range, float64 otherwise, as sops reads them.
func loadJSON(data []byte) (mapping, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	m, err := jsonObject(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// maxJSONDepth bounds nesting of a JSON file.
const maxJSONDepth = 100

func jsonObject(dec *json.Decoder, depth int) (mapping, error) {
	m := mapping{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, ok := tok.(string)
		if !ok {
			return nil, errors.New("malformed JSON object")
		}
		v, err := jsonValue(dec, depth+1)
		if err != nil {
			return nil, err
		}
		m = append(m, item{key: k, value: v})
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	return m, nil
}

func jsonValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return jsonObject(dec, depth)
		case '[':
			list := []any{}
			for dec.More() {
				v, err := jsonValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return list, nil
		}
		return nil, errors.New("malformed JSON")
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return int(i), nil
		}
		return t.Float64()
	}
	return tok, nil // string, bool, nil
}

// emitJSON writes a mapping as an indented JSON object, keys in order.
func emitJSON(m mapping) ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, m); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "\t"); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func writeJSON(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case mapping:
		b.WriteByte('{')
		first := true
		for _, it := range v {
			if _, ok := it.value.(comment); ok || it.comment {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			k, _ := json.Marshal(it.key)
			b.Write(k)
			b.WriteByte(':')
			if err := writeJSON(b, it.value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	case []any:
		b.WriteByte('[')
		first := true
		for _, e := range v {
			if _, ok := e.(comment); ok {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			if err := writeJSON(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case []byte:
		v2, err := json.Marshal(string(v))
		b.Write(v2)
		return err
	}
	out, err := json.Marshal(v)
	b.Write(out)
	return err
}

// --- dotenv ---

// loadDotenv reads KEY=value lines and #comment lines, as sops' dotenv store does: empty lines
// are dropped, "\n" in a value is a newline. Keys starting with metadataPrefix are the
// flattened metadata, returned apart.
func loadDotenv(data []byte) (mapping, mapping, error) {
	var doc, meta mapping
	for _, line := range bytes.Split(data, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			doc = append(doc, item{comment: true, value: string(line[1:])})
			continue
		}
		k, v, ok := bytes.Cut(line, []byte("="))
		if !ok {
			return nil, nil, errors.New("a line without '='")
		}
		val := strings.ReplaceAll(string(v), `\n`, "\n")
		if key, isMeta := strings.CutPrefix(string(k), metadataPrefix); isMeta {
			meta = append(meta, item{key: key, value: val})
			continue
		}
		doc = append(doc, item{key: string(k), value: val})
	}
	if meta == nil {
		return nil, nil, errNoMetadata
	}
	return doc, meta, nil
}

// emitDotenv writes lines as sops decrypt does, byte for byte.
func emitDotenv(m mapping) ([]byte, error) {
	var b bytes.Buffer
	for _, it := range m {
		if it.comment {
			b.WriteString("#" + fmt.Sprint(it.value) + "\n")
			continue
		}
		switch v := it.value.(type) {
		case mapping, []any:
			return nil, errors.New("a nested value in a dotenv file")
		case string:
			b.WriteString(it.key + "=" + strings.ReplaceAll(v, "\n", `\n`) + "\n")
		case comment:
			b.WriteString("#" + string(v) + "\n")
		default:
			b.WriteString(it.key + "=" + scalarString(v) + "\n")
		}
	}
	return b.Bytes(), nil
}

// scalarString writes a non-string scalar of a flat file (dotenv, INI).
func scalarString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		return v.Format(time.RFC3339)
	}
	return fmt.Sprint(v)
}

// --- INI ---

// iniDefaultSection names the keys before any section header, as the INI library sops uses does.
const iniDefaultSection = "DEFAULT"

// loadINI reads sections of `key = value` lines into one mapping of sections (the DEFAULT
// section first). Lines starting with ';' or '#' are comments; a value in matching quotes loses them.
func loadINI(data []byte) (mapping, error) {
	doc := mapping{{key: iniDefaultSection, value: mapping{}}}
	cur := 0
	for _, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || line[0] == ';' || line[0] == '#' {
			continue
		}
		if line[0] == '[' {
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return nil, errors.New("unclosed section header")
			}
			name := strings.TrimSpace(line[1:end])
			cur = -1
			for i, it := range doc {
				if it.key == name {
					cur = i
				}
			}
			if cur < 0 {
				doc = append(doc, item{key: name, value: mapping{}})
				cur = len(doc) - 1
			}
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			k, v, ok = strings.Cut(line, ":")
		}
		if !ok {
			return nil, errors.New("a line that is neither a section, a key nor a comment")
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'' || v[0] == '`') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		sec := doc[cur].value.(mapping)
		doc[cur].value = append(sec, item{key: strings.TrimSpace(k), value: v})
	}
	return doc, nil
}

// emitINI writes sections; the DEFAULT section's keys come first, without a header.
func emitINI(doc mapping) ([]byte, error) {
	var b bytes.Buffer
	for _, sec := range doc {
		if sec.comment {
			continue
		}
		keys, ok := sec.value.(mapping)
		if !ok {
			return nil, errors.New("an INI section that is not a mapping")
		}
		if sec.key == iniDefaultSection && len(keys) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n")
		}
		if sec.key != iniDefaultSection {
			b.WriteString("[" + sec.key + "]\n")
		}
		for _, it := range keys {
			if it.comment {
				continue
			}
			var v string
			switch x := it.value.(type) {
			case comment:
				continue
			case string:
				v = x
			case mapping, []any:
				return nil, errors.New("a nested value in an INI file")
			default:
				v = scalarString(x)
			}
			b.WriteString(it.key + " = " + v + "\n")
		}
	}
	return b.Bytes(), nil
}
