package target

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/version"
)

// maxProbeError bounds the last error kept per cluster, as the API and pages show it.
const maxProbeError = 512

// Health is what ferry last saw of a cluster.
type Health struct {
	Name string `json:"name"`
	// Server is the apiserver's host:port (never a credential).
	Server string `json:"server"`
	// Default is ferry's own cluster (--kubeconfig or in-cluster).
	Default bool `json:"default"`
	// Reachable says the apiserver answered the last probe (an answer refusing ferry's
	// credentials is an answer: the error says so). False with CheckedAt unset: not probed yet.
	Reachable bool `json:"reachable"`
	// Version is the apiserver's version (git version), as last read.
	Version string `json:"version,omitempty"`
	// LastError is the last probe's error; empty when it succeeded.
	LastError string `json:"lastError,omitempty"`
	// CheckedAt is when the last probe ended; Since is when Reachable last changed.
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	Since     time.Time `json:"since,omitzero"`
}

// Health is the cluster's health as last probed.
func (c *Cluster) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

// Probe reads the apiserver's /version within the probe timeout and records what it saw. An
// apiserver that answers 5xx, or not at all, is unreachable; any other answer (401, 403) is
// reachable, with the error kept for the pages.
func (c *Cluster) Probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout)
	defer cancel()
	raw, err := c.rc.Get().AbsPath("/version").Do(pctx).Raw()
	var v version.Info
	if err == nil {
		if jerr := json.Unmarshal(raw, &v); jerr != nil {
			err = fmt.Errorf("read /version: %w", jerr)
		}
	}
	if ctx.Err() != nil {
		// ferry is stopping: that says nothing of the cluster.
		return ctx.Err()
	}
	reachable := err == nil || answered(err)
	now := c.opts.Now()
	c.mu.Lock()
	was := c.health
	h := Health{Name: was.Name, Server: was.Server, Default: was.Default, Reachable: reachable, Version: was.Version, CheckedAt: now, Since: was.Since}
	if err == nil {
		h.Version = v.GitVersion
	} else {
		h.LastError = cut(err.Error())
	}
	if was.CheckedAt.IsZero() || was.Reachable != reachable {
		h.Since = now
	}
	c.health, c.lastErr = h, err
	c.mu.Unlock()

	if m := c.opts.Metrics; m != nil {
		m.observe(c.name, reachable)
	}
	switch {
	case !reachable && (was.Reachable || was.CheckedAt.IsZero()):
		c.opts.Logger.Warn("cluster unreachable: its apps' syncs fail until it answers", "cluster", c.name, "server", c.host, "err", err)
	case reachable && !was.Reachable && !was.CheckedAt.IsZero():
		c.opts.Logger.Info("cluster reachable again", "cluster", c.name, "server", c.host)
	}
	return err
}

// answered tells an apiserver's answer (below 500) from no answer.
func answered(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	code := st.Status().Code
	return code > 0 && code < 500
}

func cut(s string) string {
	if len(s) > maxProbeError {
		return s[:maxProbeError] + "…"
	}
	return s
}

// ProbeAll probes every cluster at once and returns when all are done: a slow cluster costs its
// own probe's timeout, not the others'.
func (s *Set) ProbeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range s.names {
		c := s.clusters[n]
		wg.Go(func() { _ = c.Probe(ctx) })
	}
	wg.Wait()
}

// Run probes every cluster now and then every ProbeInterval until ctx ends.
func (s *Set) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.ProbeInterval)
	defer t.Stop()
	for {
		s.ProbeAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
