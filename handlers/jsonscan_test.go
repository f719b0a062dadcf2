package handlers

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"
)

// scanCases are payload corners where the scanner must agree with the JSON v2 decoder.
var scanCases = []string{
	`{}`, `null`, ` {"ref":"a"} `, `{"ref":"a"}x`, `{"ref":"a",}`, `{"ref" "a"}`, `{,}`, `{"ref":"a"`, ``, `[]`,
	`{"ref":null,"after":null,"deleted":null,"commits":null}`,
	`{"ref":"refs/heads/main","after":"abc","commits":[null,{"added":["a",null,"b"]}]}`,
	`{"ref":"\u0072\ud83d\ude00\n\"\\\/\b\f\r\t","after":"x"}`,
	`{"r\u0065f":"escaped name","after":"x"}`,
	`{"ref":"a","after":"x","x":"\ud800"}`, `{"ref":"a","after":"x","x":"\ud800\u0041"}`, `{"ref":"a","after":"x","x":"\udc00"}`,
	`{"ref":"a","after":"x","x":"\u12"}`, `{"ref":"a","after":"x","x":"\q"}`, "{\"ref\":\"a\",\"after\":\"x\",\"x\":\"\x01\"}",
	"{\"ref\":\"a\",\"after\":\"x\",\"x\":\"\xff\"}", "{\"ref\":\"\xc3\xa9t\xc3\xa9\",\"after\":\"x\"}", "{\"ref\":\"a\",\"after\":\"x\",\"x\":\"\xed\xa0\x80\"}",
	`{"ref":"a","after":"x","n":[0,-0,1.5,-2e10,3E+2,4e-1]}`, `{"ref":"a","after":"x","n":01}`, `{"ref":"a","after":"x","n":1.}`,
	`{"ref":"a","after":"x","n":-}`, `{"ref":"a","after":"x","n":1e}`, `{"ref":"a","after":"x","n":.5}`, `{"ref":"a","after":"x","n":+1}`,
	`{"ref":"a","after":"x","l":[true,false,null]}`, `{"ref":"a","after":"x","l":tru}`, `{"ref":"a","after":"x","l":nul}`,
	`{"ref":1,"after":"x"}`, `{"ref":"a","after":1}`, `{"ref":"a","after":"x","deleted":"true"}`, `{"ref":"a","after":"x","commits":{}}`,
	`{"ref":"a","after":"x","commits":[{"added":"a"}]}`, `{"ref":"a","after":"x","commits":[{"added":[1]}]}`, `{"ref":"a","after":"x","commits":[1]}`,
	`{"ref":"a","after":"x","forced":true,"deleted":false}`, `{"ref":"a","after":"0000000000000000000000000000000000000000"}`,
	`{"ref":"a","after":"x","total_commits":3}`, `{"ref":"a","after":"x","total_commits":1.0}`, `{"ref":"a","after":"x","total_commits":1e2}`,
	`{"ref":"a","after":"x","total_commits":-1}`, `{"ref":"a","after":"x","total_commits":99999999999999999999}`, `{"ref":"a","after":"x","total_commits":"3"}`,
	`{"ref":"a","after":"x","x":{"y":[{"z":[]}, {}]}}`, `{"ref":"a","after":"x","x":{"y":]}`, `{"ref":"a","after":"x","x":[1 2]}`,
	"{\t\"ref\"\r:\n\"a\" , \"after\":\"x\"}", `{"ref":"a","after":"x","x":"abcdefgh\"ijklmnop"}`,
	`{"ref":"a","after":"x","d":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `}`,
	`{"ref":"a","after":"x","d":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`,
}

// checkScanMatchesDecoder is the scanner's property: on any body it fails exactly when the
// JSON v2 decoder (decodePayload) fails, and otherwise yields the same event. Bodies naming a
// member twice are only checked for agreement on failure: a decoder may merge repeated
// arrays where the scanner keeps the last one.
func checkScanMatchesDecoder(t *testing.T, body []byte) {
	t.Helper()
	duplicates := jsonv2.Unmarshal(body, new(any)) != nil && jsonv2.Unmarshal(body, new(any), jsontext.AllowDuplicateNames(true)) == nil

	var want githubPushPayload
	wantErr := decodePayload(body, &want)
	got, gotErr := scanGitHubPush(body)
	compare(t, "github", wantErr, gotErr, duplicates, func() (Event, Event) {
		w, _ := githubPush("d", &want)
		g, _ := githubPush("d", &got)
		return w, g
	})

	var wantGitea giteaPush
	wantErr = decodePayload(body, &wantGitea)
	gotGitea, gotErr := scanGiteaPush(body)
	compare(t, "gitea", wantErr, gotErr, duplicates, func() (Event, Event) {
		return giteaEvent("d", wantGitea), giteaEvent("d", gotGitea)
	})
}

func compare(t *testing.T, what string, wantErr, gotErr error, duplicates bool, events func() (Event, Event)) {
	t.Helper()
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%s: decoder error %v, scanner error %v", what, wantErr, gotErr)
	}
	if gotErr != nil && !errors.Is(gotErr, errJSONSyntax) {
		t.Fatalf("%s: scanner error %v does not wrap errJSONSyntax", what, gotErr)
	}
	if gotErr != nil || duplicates {
		return
	}
	want, got := events()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%s: event (-decoder +scanner):\n%s", what, diff)
	}
}

// giteaEvent builds the event of a decoded Gitea push without its required-field check, so
// the comparison covers every decoded field.
func giteaEvent(id string, p giteaPush) Event {
	p.Ref, p.After = "refs/heads/x"+p.Ref, "a"+p.After
	return giteaPushEvent(id, p)
}

func TestScanMatchesDecoder(t *testing.T) {
	for _, c := range scanCases {
		t.Run("", func(t *testing.T) { checkScanMatchesDecoder(t, []byte(c)) })
	}
	for _, name := range []string{"github/push.json", "gitea/push.json", "github/ping.json", "github/pull_request.json", "gitlab/push.json"} {
		t.Run(name, func(t *testing.T) { checkScanMatchesDecoder(t, readTestdata(t, name)) })
	}
}

func TestScanRefusesTooDeep(t *testing.T) {
	// The top-level object counts as the first level.
	deep := `{"x":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + `,"ref":"r","after":"a"}`
	if _, err := scanGitHubPush([]byte(deep)); err != nil {
		t.Fatalf("nesting of %d refused: %v", maxJSONDepth, err)
	}
	deeper := `{"x":` + strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth) + `}`
	if _, err := scanGitHubPush([]byte(deeper)); err == nil {
		t.Fatalf("nesting of %d accepted", maxJSONDepth+1)
	}
}

// TestSpecial8 checks the eight-byte test against plainByte for every byte value in every lane.
func TestSpecial8(t *testing.T) {
	for lane := range 8 {
		for c := range 256 {
			word := []byte("aaaaaaaa")
			word[lane] = byte(c)
			if got, want := special8(binary.LittleEndian.Uint64(word)), !plainByte[c]; got != want {
				t.Fatalf("byte %#x in lane %d: special8 = %v, want %v", c, lane, got, want)
			}
		}
	}
	// Lanes next to a special byte must not hide or invent one through borrows.
	for _, w := range []string{"\x00\x01\x1f\"\\\x7f\x80\xff", " !#[]^~\x7f", "\x1f!!!!!!!", "!!!!!!!\x1f", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
		want := false
		for i := range 8 {
			want = want || !plainByte[w[i]]
		}
		if got := special8(binary.LittleEndian.Uint64([]byte(w))); got != want {
			t.Fatalf("%q: special8 = %v, want %v", w, got, want)
		}
	}
}

func FuzzScanPush(f *testing.F) {
	for _, c := range scanCases {
		if len(c) < 1000 { // the deep-nesting cases only slow the fuzzer's mutations down
			f.Add([]byte(c))
		}
	}
	for _, name := range []string{"github/push.json", "gitea/push.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkScanMatchesDecoder(t, body) })
}
