package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"
)

// MaxEventBytes bounds one server-sent event (and one line of it): a sync's record is at most
// 256 KiB as stored, a little more as JSON on the wire.
const MaxEventBytes = 4 << 20

// ErrEventTooLarge is returned by EventReader.Next for an event past MaxEventBytes.
var ErrEventTooLarge = errors.New("server-sent event larger than the limit")

// Event is one server-sent event.
type Event struct {
	// Name is the event's type ("message" when the stream named none).
	Name string
	// Data is the event's data, its lines joined with "\n".
	Data []byte
	// ID is the stream's last event id as of this event.
	ID string
}

// EventReader parses a text/event-stream as the HTML standard defines it: lines ended by CR,
// LF or CRLF; "field: value" lines (one leading space of a value dropped); data over several
// lines joined with newlines; comments (lines starting with ":") skipped; an event dispatched
// at a blank line, unless it has no data; "retry" kept for the reconnection delay.
type EventReader struct {
	r     *bufio.Reader
	first bool
	// lastID is kept across events, as the standard says.
	lastID string
	// Retry is the reconnection delay the server asked for, 0 if none.
	Retry time.Duration
	// Activity is called for every line read, comments included, so that a reader can tell a
	// quiet stream (keep-alive comments) from a dead one.
	Activity func()
}

// NewEventReader reads events from r.
func NewEventReader(r io.Reader) *EventReader {
	return &EventReader{r: bufio.NewReaderSize(r, 64<<10), first: true}
}

// Next returns the next event, or io.EOF when the stream ends (an event not ended by a blank
// line is dropped, as the standard says).
func (er *EventReader) Next() (Event, error) {
	var (
		data    bytes.Buffer
		name    string
		hasData bool
	)
	for {
		line, err := er.line()
		if err != nil {
			return Event{}, err
		}
		if er.Activity != nil {
			er.Activity()
		}
		if len(line) == 0 {
			if !hasData {
				name = ""
				continue
			}
			ev := Event{Name: name, Data: bytes.TrimSuffix(data.Bytes(), []byte("\n")), ID: er.lastID}
			if ev.Name == "" {
				ev.Name = "message"
			}
			return ev, nil
		}
		if line[0] == ':' {
			continue
		}
		field, value, found := bytes.Cut(line, []byte(":"))
		if found {
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(field) {
		case "event":
			name = string(value)
		case "data":
			if data.Len()+len(value) > MaxEventBytes {
				return Event{}, ErrEventTooLarge
			}
			data.Write(value)
			data.WriteByte('\n')
			hasData = true
		case "id":
			if !bytes.Contains(value, []byte{0}) {
				er.lastID = string(value)
			}
		case "retry":
			if n, err := strconv.ParseUint(string(value), 10, 31); err == nil {
				er.Retry = time.Duration(n) * time.Millisecond
			}
		}
	}
}

// line reads one line without its end (CR, LF or CRLF), at most MaxEventBytes long.
func (er *EventReader) line() ([]byte, error) {
	var out []byte
	for {
		b, err := er.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(out) > 0 {
				// A last line without its end is not a complete line: the event is dropped.
				return nil, io.EOF
			}
			return nil, err
		}
		switch b {
		case '\n':
			return er.strip(out), nil
		case '\r':
			if next, err := er.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = er.r.ReadByte()
			}
			return er.strip(out), nil
		}
		if len(out) >= MaxEventBytes {
			return nil, ErrEventTooLarge
		}
		out = append(out, b)
	}
}

// strip drops a byte order mark at the start of the stream.
func (er *EventReader) strip(line []byte) []byte {
	if er.first {
		er.first = false
		line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
	}
	return line
}
