package handlers

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth bounds how deeply objects and arrays may nest in a payload read by jsonScanner,
// the same bound the JSON v2 decoder applies, so a body of brackets cannot exhaust the stack.
const maxJSONDepth = 10000

// errJSONSyntax is wrapped by every error jsonScanner returns about malformed input.
var errJSONSyntax = errors.New("invalid JSON")

// jsonScanner reads one JSON document straight from the body, for the push payloads that are
// the webhook's hot path: the few members ferry reads are decoded by the caller's callbacks,
// and everything else (most of a push: repository, users, URLs) is stepped over while still
// being checked against the JSON grammar, UTF-8 included. Malformed input is refused exactly as
// a full decoder would refuse it; it costs no reflection and allocates only the decoded
// strings. Payloads read off the hot path use decodePayload instead.
type jsonScanner struct {
	b     []byte
	i     int
	depth int
	// name is scratch space for a member name that holds escapes.
	name []byte
}

func (s *jsonScanner) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: %s: %w", s.i, fmt.Sprintf(format, args...), errJSONSyntax)
}

// ws steps over insignificant whitespace and returns the next byte, or 0 at the end.
func (s *jsonScanner) ws() byte {
	b, i := s.b, s.i
	for i < len(b) && space[b[i]] {
		i++
	}
	s.i = i
	if i == len(b) {
		return 0
	}
	return b[i]
}

// space marks JSON's insignificant whitespace.
var space = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

// end checks that only whitespace follows the document.
func (s *jsonScanner) end() error {
	if s.ws(); s.i != len(s.b) {
		return s.errorf("unexpected data after the top-level value")
	}
	return nil
}

// null consumes a null literal if one comes next: the callbacks then leave the field unset,
// as decoders do.
func (s *jsonScanner) null() bool {
	if s.ws() == 'n' && len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// object reads an object (or null), calling member with each name; member must consume the
// value, through one of the readers or skip.
func (s *jsonScanner) object(member func(name []byte) error) error {
	if s.null() {
		return nil
	}
	if s.ws() != '{' {
		return s.mismatch("an object")
	}
	if err := s.push(); err != nil {
		return err
	}
	s.i++
	if s.ws() == '}' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if s.ws() != '"' {
			return s.errorf("expected a member name")
		}
		name, err := s.memberName()
		if err != nil {
			return err
		}
		if s.ws() != ':' {
			return s.errorf("expected ':' after a member name")
		}
		s.i++
		if err := member(name); err != nil {
			return err
		}
		switch s.ws() {
		case ',':
			s.i++
		case '}':
			s.i++
			s.depth--
			return nil
		default:
			return s.errorf("expected ',' or '}' in an object")
		}
	}
}

// array reads an array (or null), calling elem for each element; elem must consume it.
func (s *jsonScanner) array(elem func() error) error {
	if s.null() {
		return nil
	}
	if s.ws() != '[' {
		return s.mismatch("an array")
	}
	if err := s.push(); err != nil {
		return err
	}
	s.i++
	if s.ws() == ']' {
		s.i++
		s.depth--
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.ws() {
		case ',':
			s.i++
		case ']':
			s.i++
			s.depth--
			return nil
		default:
			return s.errorf("expected ',' or ']' in an array")
		}
	}
}

// strings reads an array of strings (or null); null elements read as "".
func (s *jsonScanner) strings() ([]string, error) {
	var out []string
	err := s.array(func() error {
		v, err := s.str()
		out = append(out, v)
		return err
	})
	return out, err
}

// str reads a string, or null as "".
func (s *jsonScanner) str() (string, error) {
	if s.null() {
		return "", nil
	}
	if s.ws() != '"' {
		return "", s.mismatch("a string")
	}
	raw, escaped, err := s.scanString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(raw), nil
	}
	return string(unescape(nil, raw)), nil
}

// boolean reads true or false, or null as false.
func (s *jsonScanner) boolean() (bool, error) {
	if s.null() {
		return false, nil
	}
	switch s.ws() {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	}
	return false, s.mismatch("a boolean")
}

// integer reads a number that is an integer (no fraction or exponent) fitting in an int, or
// null as 0.
func (s *jsonScanner) integer() (int, error) {
	if s.null() {
		return 0, nil
	}
	if c := s.ws(); c != '-' && (c < '0' || c > '9') {
		return 0, s.mismatch("a number")
	}
	start := s.i
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(s.b[start:s.i]), 10, strconv.IntSize)
	if err != nil {
		return 0, fmt.Errorf("offset %d: number %s is not an integer that fits: %w", start, s.b[start:s.i], errJSONSyntax)
	}
	return int(n), nil
}

// mismatch reports a value of the wrong type where a kind was expected. A malformed value
// gets the grammar's error, as a decoder would report it first.
func (s *jsonScanner) mismatch(want string) error {
	at := s.i
	if err := s.skip(); err != nil {
		return err
	}
	return fmt.Errorf("offset %d: expected %s: %w", at, want, errJSONSyntax)
}

func (s *jsonScanner) push() error {
	if s.depth++; s.depth > maxJSONDepth {
		return s.errorf("nested deeper than %d", maxJSONDepth)
	}
	return nil
}

// skip steps over one value of any kind, checking its grammar.
func (s *jsonScanner) skip() error {
	switch c := s.ws(); {
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(s.skip)
	case c == '"':
		_, _, err := s.scanString()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case s.i == len(s.b):
		return s.errorf("unexpected end of input")
	default:
		return s.errorf("invalid character %q looking for a value", c)
	}
}

func (s *jsonScanner) literal(lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return s.errorf("invalid literal, want %s", lit)
	}
	s.i += len(lit)
	return nil
}

// number steps over a number: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?
func (s *jsonScanner) number() error {
	b, i := s.b, s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		s.i = i
		return s.errorf("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			s.i = i
			return s.errorf("invalid number: no digits after '.'")
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == j {
			s.i = i
			return s.errorf("invalid number: no digits in the exponent")
		}
	}
	s.i = i
	return nil
}

// plainByte marks the bytes a string may hold as they are: printable ASCII other than the
// quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanString steps over a string starting at its opening quote and returns its raw contents,
// saying whether they hold escapes. Control characters, malformed escapes (lone surrogates
// included) and invalid UTF-8 are refused.
func (s *jsonScanner) scanString() (raw []byte, escaped bool, err error) {
	b := s.b
	start := s.i + 1
	i := start
	for {
		// Eight bytes at a time while none needs a look, then byte by byte.
		for len(b)-i >= 8 && !special8(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		if i == len(b) {
			s.i = i
			return nil, false, s.errorf("unterminated string")
		}
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return b[start:i], escaped, nil
		case c == '\\':
			escaped = true
			n, ok := escapeLen(b[i:])
			if !ok {
				s.i = i
				return nil, false, s.errorf("invalid escape in a string")
			}
			i += n
		case c < 0x20:
			s.i = i
			return nil, false, s.errorf("control character in a string")
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				s.i = i
				return nil, false, s.errorf("invalid UTF-8 in a string")
			}
			i += n
		}
	}
}

// special8 reports whether any of the eight bytes packed in x is not a plainByte: a control
// character, a quote, a backslash or a byte of a multi-byte UTF-8 sequence. Each term is the
// classic exact "some byte is less than n" (n ≤ 128) or "some byte is zero" test.
func special8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	less20 := (x - 0x20*ones) &^ x
	quote := x ^ '"'*ones
	backslash := x ^ '\\'*ones
	return (less20|(quote-ones)&^quote|(backslash-ones)&^backslash|x)&highs != 0
}

// escapeLen returns the length of the escape sequence at the start of b and whether it is
// valid. A \u escape of a high surrogate must be followed by one of a low surrogate.
func escapeLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	switch b[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, true
	case 'u':
		r, ok := hex4(b[2:])
		switch {
		case !ok:
			return 0, false
		case utf16.IsSurrogate(r):
			if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
				return 0, false
			}
			r2, ok := hex4(b[8:])
			if !ok || utf16.DecodeRune(r, r2) == utf8.RuneError {
				return 0, false
			}
			return 12, true
		default:
			return 6, true
		}
	}
	return 0, false
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the decoded form of raw, a string's contents already checked by
// scanString, to dst.
func unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i+2:])
			n := 6
			if utf16.IsSurrogate(r) {
				r2, _ := hex4(raw[i+8:])
				r, n = utf16.DecodeRune(r, r2), 12
			}
			dst = utf8.AppendRune(dst, r)
			i += n
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

// memberName reads a member name; the result is valid until the next call.
func (s *jsonScanner) memberName() ([]byte, error) {
	raw, escaped, err := s.scanString()
	if err != nil || !escaped {
		return raw, err
	}
	s.name = unescape(s.name[:0], raw)
	return s.name, nil
}

// document reads the whole body as one object (or null), then checks that nothing follows it.
func (s *jsonScanner) document(member func(name []byte) error) error {
	if err := s.object(member); err != nil {
		return err
	}
	return s.end()
}

// commits reads a push payload's commits array (or null).
func (s *jsonScanner) commits() ([]*pushCommit, error) {
	var out []*pushCommit
	err := s.array(func() error {
		c, err := s.commit()
		out = append(out, c)
		return err
	})
	return out, err
}

// commit reads one element of a push payload's commits (nil for null).
func (s *jsonScanner) commit() (*pushCommit, error) {
	if s.null() {
		return nil, nil
	}
	c := &pushCommit{}
	return c, s.object(func(name []byte) (err error) {
		switch string(name) {
		case "added":
			c.Added, err = s.strings()
		case "removed":
			c.Removed, err = s.strings()
		case "modified":
			c.Modified, err = s.strings()
		default:
			err = s.skip()
		}
		return err
	})
}
