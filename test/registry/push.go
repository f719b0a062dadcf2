package registry

import (
	"net/http"
	"path/filepath"
	"testing"

	helmregistry "helm.sh/helm/v4/pkg/registry"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// PushChart pushes a packaged chart to host as `helm push` does, under repository (host-relative
// path ending in the chart's name) with the chart's version as tag, and returns the manifest
// digest. Username and Password may be empty. Helm's client is given its credentials and a
// credentials file in the test's directory, so nothing is read from or written to the home
// directory's Helm configuration.
func PushChart(t testing.TB, host, repository, version string, archive []byte, username, password string) string {
	t.Helper()
	authz := auth.Client{Client: http.DefaultClient, Cache: auth.NewCache()}
	if username != "" {
		authz.Credential = auth.StaticCredential(host, auth.Credential{Username: username, Password: password})
	}
	client, err := helmregistry.NewClient(
		helmregistry.ClientOptPlainHTTP(),
		helmregistry.ClientOptCredentialsFile(filepath.Join(t.TempDir(), "registry.json")),
		helmregistry.ClientOptAuthorizer(authz),
	)
	if err != nil {
		t.Fatalf("registry: helm client: %v", err)
	}
	res, err := client.Push(archive, host+"/"+repository+":"+version)
	if err != nil {
		t.Fatalf("registry: push %s/%s:%s: %v", host, repository, version, err)
	}
	return res.Manifest.Digest
}
