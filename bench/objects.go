package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// writeManifests writes n objects as plain YAML under dir: a file of nsCount Namespaces, then one
// file per namespace with its ConfigMaps, headless Services and Deployments in turn. kubectl, the
// bare loop and ferry all read these same files.
//
// Services are headless because the test apiserver has a /24 of cluster IPs; Deployments have zero
// replicas because the control plane has no scheduler or kubelet, so that kube-controller-manager
// can still report them Available and ferry's health wait can end.
func writeManifests(dir string, n, nsCount int) error {
	if nsCount < 1 || n <= nsCount {
		return fmt.Errorf("manifests: %d objects cannot spread over %d namespaces", n, nsCount)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("manifests: %w", err)
	}
	var ns strings.Builder
	for i := range nsCount {
		fmt.Fprintf(&ns, "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n  labels:\n    team: bench\n", nsName(i))
	}
	if err := os.WriteFile(filepath.Join(dir, "00-namespaces.yaml"), []byte(ns.String()), 0o644); err != nil {
		return fmt.Errorf("manifests: %w", err)
	}
	rest := n - nsCount
	for i := range nsCount {
		// Spread the remainder over the first namespaces so the total is exactly n.
		count := rest / nsCount
		if i < rest%nsCount {
			count++
		}
		var b strings.Builder
		for j := range count {
			name := fmt.Sprintf("web-%03d", j/3)
			switch j % 3 {
			case 0:
				fmt.Fprintf(&b, configMapYAML, name, nsName(i), j, i)
			case 1:
				fmt.Fprintf(&b, serviceYAML, name, nsName(i), name)
			case 2:
				fmt.Fprintf(&b, deploymentYAML, name, nsName(i), name, name, name, name)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("10-%s.yaml", nsName(i))), []byte(b.String()), 0o644); err != nil {
			return fmt.Errorf("manifests: %w", err)
		}
	}
	return nil
}

func nsName(i int) string { return fmt.Sprintf("bench-%02d", i) }

const configMapYAML = `---
apiVersion: v1
kind: ConfigMap
metadata:
  name: %s
  namespace: %s
  labels:
    app.kubernetes.io/part-of: bench
data:
  LOG_LEVEL: info
  FEATURE_FLAGS: "alpha,beta,gamma"
  INDEX: "%d"
  SHARD: "%d"
  config.yaml: |
    server:
      port: 8080
      readTimeout: 10s
    cache:
      size: 128Mi
      ttl: 5m
`

const serviceYAML = `---
apiVersion: v1
kind: Service
metadata:
  name: %s
  namespace: %s
  labels:
    app.kubernetes.io/part-of: bench
spec:
  clusterIP: None
  selector:
    app: %s
  ports:
  - name: http
    port: 80
    targetPort: 8080
`

const deploymentYAML = `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  namespace: %s
  labels:
    app.kubernetes.io/part-of: bench
spec:
  replicas: 0
  selector:
    matchLabels:
      app: %s
  template:
    metadata:
      labels:
        app: %s
    spec:
      containers:
      - name: main
        image: registry.invalid/bench/%s:1.0.0
        ports:
        - containerPort: 8080
        env:
        - name: CONFIG
          value: /etc/%s/config.yaml
        resources:
          requests:
            cpu: 10m
            memory: 32Mi
          limits:
            memory: 64Mi
`
