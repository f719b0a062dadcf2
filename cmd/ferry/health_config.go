package main

import (
	"fmt"

	"github.com/ferrygitops/ferry/syncer/apply"
)

// HealthCheckConf is a health rule for one kind of object, in CEL (see apply.HealthCheck): the
// healthChecks list of ferry.yaml.
type HealthCheckConf struct {
	// APIVersion is group/version, group/* or v1.
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Current is required; Failed and InProgress are optional. Failed is asked first, then
	// Current, then InProgress.
	Current    string `json:"current"`
	Failed     string `json:"failed,omitempty"`
	InProgress string `json:"inProgress,omitempty"`
}

// compileHealthChecks compiles the config's health rules once, at load: an expression that does
// not parse or type-check stops ferry from starting, naming its kind and the expression.
func (c *Config) compileHealthChecks() error {
	checks := make([]apply.HealthCheck, 0, len(c.HealthChecks))
	for _, h := range c.HealthChecks {
		checks = append(checks, apply.HealthCheck{APIVersion: h.APIVersion, Kind: h.Kind, Current: h.Current, Failed: h.Failed, InProgress: h.InProgress})
	}
	hc, err := apply.CompileHealthChecks(checks)
	if err != nil {
		return fmt.Errorf("healthChecks: %w", err)
	}
	c.health = hc
	return nil
}
