package charts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

const (
	// ChartLayerMediaType is the media type of the layer that holds a Helm chart's archive in an
	// OCI artifact, as `helm push` writes it.
	ChartLayerMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
	// MaxManifestBytes bounds an OCI manifest. A chart's manifest is well under 1 KiB.
	MaxManifestBytes = 4 << 20
	// MaxTags bounds how many tags of a repository are listed to resolve a constraint. A chart
	// repository in a registry holds one tag per version.
	MaxTags = 10000
)

// errTooManyTags stops the tag listing at MaxTags.
var errTooManyTags = errors.New("too many tags")

// fetchOCI fetches a chart from an OCI registry: the tag (or the highest tag matching a
// constraint) names a manifest, whose chart layer is the archive.
func (f *Fetcher) fetchOCI(ctx context.Context, ref Ref, creds *Credentials) (*Chart, error) {
	name := displayRef(ref)
	rref, err := registry.ParseReference(strings.TrimPrefix(ref.Chart, "oci://"))
	if err != nil {
		return nil, permanentErr(name, "parse OCI reference", fmt.Errorf("%w: %v", ErrBadRef, err))
	}
	if rref.Reference != "" {
		return nil, permanentErr(name, "parse OCI reference", fmt.Errorf("%w: the chart name carries a tag or digest; give the version separately", ErrBadRef))
	}
	repo := &remote.Repository{
		Client:           f.ociClient(rref.Registry, creds),
		Reference:        rref,
		PlainHTTP:        ref.PlainHTTP,
		MaxMetadataBytes: MaxManifestBytes,
	}
	base := "oci://" + rref.Registry + "/" + rref.Repository
	chartName := path.Base(rref.Repository)

	version := ref.Version
	if !isExact(version) {
		tags, err := listTags(ctx, repo)
		if err != nil {
			return nil, classifyOCI(name, "list tags", err)
		}
		if version, err = resolveVersion(tagVersions(tags), ref.Version); err != nil {
			return nil, permanentErr(name, "resolve version", err)
		}
	}
	name = base + ":" + version
	tag := strings.ReplaceAll(version, "+", "_") // OCI tags cannot hold '+'; Helm pushes '_'
	desc, rc, err := repo.FetchReference(ctx, tag)
	if errors.Is(err, errdef.ErrNotFound) {
		tags, lerr := listTags(ctx, repo)
		if lerr != nil {
			return nil, classifyOCI(name, "list tags", lerr)
		}
		return nil, permanentErr(name, "resolve tag", notFound(tagVersions(tags), ref.Version))
	}
	if err != nil {
		return nil, classifyOCI(name, "resolve tag", err)
	}
	raw, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return nil, classifyOCI(name, "read manifest", err)
	}
	if desc.MediaType != ocispec.MediaTypeImageManifest && desc.MediaType != "" {
		return nil, permanentErr(name, "read manifest", fmt.Errorf("%w: the tag names a %s, not an OCI image manifest", ErrNotChart, desc.MediaType))
	}
	var manifest ocispec.Manifest
	if err := json.Unmarshal(raw, &manifest); err != nil {
		return nil, permanentErr(name, "read manifest", fmt.Errorf("%w: %v", ErrNotChart, err))
	}
	var layer *ocispec.Descriptor
	for i := range manifest.Layers {
		if manifest.Layers[i].MediaType == ChartLayerMediaType {
			layer = &manifest.Layers[i]
			break
		}
	}
	if layer == nil {
		return nil, permanentErr(name, "read manifest", fmt.Errorf("%w: no layer of type %s (config %s)", ErrNotChart, ChartLayerMediaType, manifest.Config.MediaType))
	}
	if layer.Size > f.maxChartBytes {
		return nil, permanentErr(name, "read manifest", fmt.Errorf("%w: the chart layer is %d bytes, the limit is %d", ErrTooLarge, layer.Size, f.maxChartBytes))
	}
	digest := layer.Digest.String()
	if data, err := f.cache.get(digest); err != nil {
		return nil, permanentErr(name, "read cache", err)
	} else if data != nil {
		return &Chart{Archive: data, Digest: digest, Version: version, Ref: name}, nil
	}
	rc, err = repo.Fetch(ctx, *layer)
	if err != nil {
		return nil, classifyOCI(name, "download chart layer", err)
	}
	data, err := content.ReadAll(rc, *layer)
	rc.Close()
	if err != nil {
		return nil, classifyOCI(name, "download chart layer", err)
	}
	return f.keep(name, data, digestOf(data), chartName, version)
}

// ociClient authenticates to host with creds only, through the Fetcher's HTTP client: no Docker
// or Helm credential store is consulted.
func (f *Fetcher) ociClient(host string, creds *Credentials) *auth.Client {
	c := &auth.Client{Client: f.hc, Cache: auth.NewCache()}
	c.SetUserAgent("ferry")
	if creds != nil {
		cred := auth.Credential{Username: creds.Username, Password: creds.Password}
		if creds.Username == "" {
			cred = auth.Credential{AccessToken: creds.Password}
		}
		c.Credential = auth.StaticCredential(host, cred)
	}
	return c
}

// listTags returns the repository's tags, at most MaxTags.
func listTags(ctx context.Context, repo *remote.Repository) ([]string, error) {
	var tags []string
	err := repo.Tags(ctx, "", func(page []string) error {
		tags = append(tags, page...)
		if len(tags) > MaxTags {
			return fmt.Errorf("%w: more than %d (MaxTags)", errTooManyTags, MaxTags)
		}
		return nil
	})
	return tags, err
}

// tagVersions turns tags back into chart versions ('_' stands for '+').
func tagVersions(tags []string) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = strings.ReplaceAll(t, "_", "+")
	}
	return out
}

// classifyOCI sorts an error from the registry: an HTTP answer by its status, a digest or size
// that does not match the descriptor as permanent, anything below HTTP as the network.
func classifyOCI(name, op string, err error) *Error {
	var resp *errcode.ErrorResponse
	switch {
	case errors.As(err, &resp):
		return &Error{Ref: name, Op: op, Transient: transientStatus(resp.StatusCode), Err: err}
	case errors.Is(err, content.ErrMismatchedDigest), errors.Is(err, content.ErrTrailingData),
		errors.Is(err, content.ErrInvalidDescriptorSize):
		return permanentErr(name, op, fmt.Errorf("%w: %v", ErrDigestMismatch, err))
	case errors.Is(err, errdef.ErrSizeExceedsLimit), errors.Is(err, errTooManyTags):
		return permanentErr(name, op, fmt.Errorf("%w: %v", ErrTooLarge, err))
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return permanentErr(name, op, fmt.Errorf("the registry requires credentials (401 Unauthorized), none given: %w", err))
	case errors.Is(err, errdef.ErrNotFound):
		return permanentErr(name, op, err)
	}
	return transportErr(name, op, err)
}
