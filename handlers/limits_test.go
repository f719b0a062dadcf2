package handlers

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestReadBody(t *testing.T) {
	payload := strings.Repeat("0123456789abcdef", 700) // 11,200 bytes: more than one read
	cases := []struct {
		name     string
		body     string
		length   int64 // Content-Length; -1 unknown (chunked)
		limit    int64
		want     string
		tooLarge bool
		maxCap   int
	}{
		{name: "declared length", body: payload, length: int64(len(payload)), limit: 1 << 20, want: payload, maxCap: len(payload) + 1},
		{name: "unknown length", body: payload, length: -1, limit: 1 << 20, want: payload},
		{name: "empty", body: "", length: 0, limit: 1 << 20, want: ""},
		{name: "over the limit", body: payload, length: int64(len(payload)), limit: 1000, tooLarge: true},
		{name: "over the limit, unknown length", body: payload, length: -1, limit: 1000, tooLarge: true},
		// A sender declaring a huge body that never comes gets no huge buffer.
		{name: "declared far more than sent", body: "{}", length: MaxBodyBytes, limit: MaxBodyBytes, want: "{}", maxCap: bodyPrealloc + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/hooks/x", io.NopCloser(bytes.NewReader([]byte(c.body))))
			r.ContentLength = c.length
			got, err := readBody(httptest.NewRecorder(), r, c.limit, nil)
			var mbe *http.MaxBytesError
			if c.tooLarge {
				if !errors.As(err, &mbe) {
					t.Fatalf("err = %v, want *http.MaxBytesError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("read %d bytes, want %d", len(got), len(c.want))
			}
			if c.maxCap > 0 && cap(got) > c.maxCap {
				t.Fatalf("buffer capacity %d, want at most %d", cap(got), c.maxCap)
			}
		})
	}
}
