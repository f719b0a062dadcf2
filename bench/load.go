package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// loadSpec bounds one load run both in count and in time, as the rules ask.
type loadSpec struct {
	// URL must be on 127.0.0.1.
	URL string
	// Clients is the number of concurrent keep-alive connections, each sending one request at a
	// time.
	Clients int
	// Requests is the total number of requests sent, across clients.
	Requests int
	// MaxDuration stops the run early even if Requests were not all sent.
	MaxDuration time.Duration
	// Body is sent with every request; Header(i) adds the per-request headers.
	Body   []byte
	Header func(i int64, h http.Header)
	// Want is the status code that counts as a success.
	Want int
}

// loadResult is what one run measured.
type loadResult struct {
	OK, Failed int
	// FirstFailure describes one failed request, for the log.
	FirstFailure string
	Elapsed      time.Duration
	Latencies    []time.Duration
}

// Rate is the successful requests per second.
func (r loadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// runLoad sends spec.Requests POSTs over spec.Clients keep-alive connections and records the
// latency of each: from writing the request until the whole response is read. The client writes
// pre-built HTTP/1.1 requests on raw connections and parses only the response head, so that as
// much of the two cores as possible is left to the server under test (net/http's client costs
// about as much CPU per request as a small handler).
func runLoad(ctx context.Context, spec loadSpec) (loadResult, error) {
	if err := loopbackOnly(spec.URL); err != nil {
		return loadResult{}, err
	}
	u, err := url.Parse(spec.URL)
	if err != nil {
		return loadResult{}, fmt.Errorf("load target: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, spec.MaxDuration)
	defer cancel()

	var (
		next     atomic.Int64
		res      loadResult
		wg       sync.WaitGroup
		perLat   = make([][]time.Duration, spec.Clients)
		perOK    = make([]int, spec.Clients)
		perFail  = make([]int, spec.Clients)
		firstErr atomic.Value
	)
	fail := func(c int, msg string) {
		firstErr.CompareAndSwap(nil, msg)
		perFail[c]++
	}
	start := time.Now()
	for c := range spec.Clients {
		wg.Go(func() {
			lat := make([]time.Duration, 0, spec.Requests/spec.Clients+1)
			defer func() { perLat[c] = lat }()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			var buf bytes.Buffer
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(spec.Requests) {
					return
				}
				if conn == nil {
					var d net.Dialer
					conn, err = d.DialContext(ctx, "tcp", u.Host)
					if err != nil {
						fail(c, err.Error())
						continue
					}
					br = bufio.NewReaderSize(conn, 16<<10)
				}
				buf.Reset()
				h := http.Header{}
				if spec.Header != nil {
					spec.Header(i, h)
				}
				fmt.Fprintf(&buf, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", u.RequestURI(), u.Host, len(spec.Body))
				_ = h.Write(&buf)
				buf.WriteString("\r\n")
				buf.Write(spec.Body)
				_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
				t0 := time.Now()
				_, werr := conn.Write(buf.Bytes())
				var resp *http.Response
				if werr == nil {
					resp, werr = http.ReadResponse(br, nil)
				}
				if werr != nil {
					if ctx.Err() == nil {
						fail(c, werr.Error())
					}
					conn.Close()
					conn = nil
					continue
				}
				body, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if rerr != nil || resp.Close {
					conn.Close()
					conn = nil
				}
				if resp.StatusCode != spec.Want {
					fail(c, fmt.Sprintf("status %d: %s", resp.StatusCode, bytes.TrimSpace(body)))
					continue
				}
				perOK[c]++
				lat = append(lat, d)
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	for c := range spec.Clients {
		res.OK += perOK[c]
		res.Failed += perFail[c]
		res.Latencies = append(res.Latencies, perLat[c]...)
	}
	if v, ok := firstErr.Load().(string); ok {
		res.FirstFailure = v
	}
	return res, nil
}

// loopbackOnly refuses any load target that is not 127.0.0.1.
func loopbackOnly(url string) error {
	if !bytes.HasPrefix([]byte(url), []byte("http://127.0.0.1:")) {
		return fmt.Errorf("load target %q is not on 127.0.0.1", url)
	}
	return nil
}
