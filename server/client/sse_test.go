package client

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestEventReaderParsesTheStandardForm: the cases of the text/event-stream format a server may
// send, each read as the HTML standard says.
func TestEventReaderParsesTheStandardForm(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []Event
		retry time.Duration
	}{
		{name: "named event", in: "event: record\ndata: {\"a\":1}\n\n",
			want: []Event{{Name: "record", Data: []byte(`{"a":1}`)}}},
		{name: "data over lines joined with newlines", in: "data: one\ndata: two\ndata:three\n\n",
			want: []Event{{Name: "message", Data: []byte("one\ntwo\nthree")}}},
		{name: "comments and retry skipped", in: "retry: 1500\n\n: keep-alive\n\n: x\nevent: end\ndata: {}\n\n",
			want: []Event{{Name: "end", Data: []byte("{}")}}, retry: 1500 * time.Millisecond},
		{name: "CRLF and CR line ends", in: "event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r",
			want: []Event{{Name: "a", Data: []byte("1")}, {Name: "b", Data: []byte("2")}}},
		{name: "byte order mark at the start", in: "\xef\xbb\xbfdata: x\n\n",
			want: []Event{{Name: "message", Data: []byte("x")}}},
		{name: "an event without data is not dispatched and its name forgotten", in: "event: lone\n\nevent: b\ndata: y\n\ndata: z\n\n",
			want: []Event{{Name: "b", Data: []byte("y")}, {Name: "message", Data: []byte("z")}}},
		{name: "id kept across events", in: "id: 7\ndata: a\n\ndata: b\n\n",
			want: []Event{{Name: "message", Data: []byte("a"), ID: "7"}, {Name: "message", Data: []byte("b"), ID: "7"}}},
		{name: "only one leading space dropped; a field without colon", in: "data:  two spaces\ndata\n\n",
			want: []Event{{Name: "message", Data: []byte(" two spaces\n")}}},
		{name: "an event cut by the end of the stream is dropped", in: "data: whole\n\ndata: cut\n",
			want: []Event{{Name: "message", Data: []byte("whole")}}},
		{name: "a bad retry is ignored", in: "retry: soon\ndata: a\n\n",
			want: []Event{{Name: "message", Data: []byte("a")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			er := NewEventReader(strings.NewReader(tt.in))
			var got []Event
			for range 100 {
				ev, err := er.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, ev)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if er.Retry != tt.retry {
				t.Errorf("retry = %s, want %s", er.Retry, tt.retry)
			}
		})
	}
}

// TestEventReaderBoundsAnEvent: a line or an event past MaxEventBytes is refused, not held.
func TestEventReaderBoundsAnEvent(t *testing.T) {
	long := "data: " + strings.Repeat("x", MaxEventBytes+1) + "\n\n"
	if _, err := NewEventReader(strings.NewReader(long)).Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("a line past the bound: %v, want ErrEventTooLarge", err)
	}
	half := "data: " + strings.Repeat("y", MaxEventBytes/2+1) + "\n"
	if _, err := NewEventReader(strings.NewReader(half + half + "\n")).Next(); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("an event past the bound: %v, want ErrEventTooLarge", err)
	}
}
