package apply

import (
	"errors"
	"fmt"
	"maps"
	"strconv"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// leanObject is what the engine reads of a live object: its identity, the metadata the inventory
// records, spec and status. Managed fields, annotations and the rest are skipped without being
// decoded; on a Deployment that makes reading it several times cheaper than decoding it whole
// into an unstructured object, which matters when hundreds are applied or polled at once. The
// spec is kept raw until it is known to be needed: see specless.
type leanObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name              string `json:"name"`
		Namespace         string `json:"namespace"`
		UID               string `json:"uid"`
		ResourceVersion   string `json:"resourceVersion"`
		Generation        int64  `json:"generation"`
		DeletionTimestamp string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Spec   jsontext.Value `json:"spec"`
	Status map[string]any `json:"status"`
}

// specless are kinds whose health kstatus reads from their status alone and whose spec can be
// megabytes: a CRD's spec is its OpenAPI schema (the ten of a Prometheus operator bundle weigh
// 4 MB), which an apply response or a poll would otherwise decode into maps for nothing.
var specless = map[schema.GroupKind]bool{crdGK: true}

// leanList is a LIST response read the same way.
type leanList struct {
	Metadata struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []leanObject `json:"items"`
}

// unstructured returns o as an object kstatus and the inventory can read. apiVersion and kind
// fill in for items of built-in lists, which carry neither. The spec of a specless kind is left
// out.
func (o *leanObject) unstructured(apiVersion, kind string) (*unstructured.Unstructured, error) {
	if o.APIVersion != "" {
		apiVersion = o.APIVersion
	}
	if o.Kind != "" {
		kind = o.Kind
	}
	md := map[string]any{"name": o.Metadata.Name}
	for k, v := range map[string]string{"namespace": o.Metadata.Namespace, "uid": o.Metadata.UID,
		"resourceVersion": o.Metadata.ResourceVersion, "deletionTimestamp": o.Metadata.DeletionTimestamp} {
		if v != "" {
			md[k] = v
		}
	}
	if o.Metadata.Generation != 0 {
		md["generation"] = o.Metadata.Generation
	}
	obj := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	gk := schema.FromAPIVersionAndKind(apiVersion, kind).GroupKind()
	if len(o.Spec) > 0 && !specless[gk] {
		var spec map[string]any
		if err := jsonv2.Unmarshal(o.Spec, &spec, intsAsInt64); err != nil {
			return nil, fmt.Errorf("decode spec of %s %s: %w", kind, o.Metadata.Name, err)
		}
		if spec != nil {
			obj["spec"] = spec
		}
	}
	if o.Status != nil {
		obj["status"] = o.Status
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

// decodeLeanObject reads one object, as an apply answers with it.
func decodeLeanObject(body []byte) (*unstructured.Unstructured, error) {
	var o leanObject
	if err := jsonv2.Unmarshal(body, &o, jsontext.AllowDuplicateNames(true), intsAsInt64); err != nil {
		return nil, fmt.Errorf("decode object: %w", err)
	}
	return o.unstructured("", "")
}

// decodeLeanList reads a LIST response and returns its items and the continue token.
func decodeLeanList(body []byte, apiVersion, kind string) ([]*unstructured.Unstructured, string, error) {
	var l leanList
	if err := jsonv2.Unmarshal(body, &l, jsontext.AllowDuplicateNames(true), intsAsInt64); err != nil {
		return nil, "", fmt.Errorf("decode %s list: %w", kind, err)
	}
	out := make([]*unstructured.Unstructured, 0, len(l.Items))
	for i := range l.Items {
		u, err := l.Items[i].unstructured(apiVersion, kind)
		if err != nil {
			return nil, "", err
		}
		out = append(out, u)
	}
	return out, l.Metadata.Continue, nil
}

// rawBody returns a response's body, or its error with the apiserver's Status (reason, message,
// causes) when the body holds one, as typed and dynamic clients report it.
func rawBody(r rest.Result) ([]byte, error) {
	if err := r.Error(); err != nil {
		return nil, err
	}
	return r.Raw()
}

// resourcePath is the REST path of a resource, of its objects in namespace ns when ns is set, and
// of object name when name is set.
func resourcePath(gvr schema.GroupVersionResource, ns, name string) string {
	p := "/apis/" + gvr.Group + "/" + gvr.Version
	if gvr.Group == "" {
		p = "/api/" + gvr.Version
	}
	if ns != "" {
		p += "/namespaces/" + ns
	}
	p += "/" + gvr.Resource
	if name != "" {
		p += "/" + name
	}
	return p
}

// intsAsInt64 decodes JSON integers held in interface values as int64, as apimachinery does:
// kstatus reads generations and replica counts as integers and ignores float64s.
var intsAsInt64 = jsonv2.WithUnmarshalers(jsonv2.UnmarshalFromFunc(func(dec *jsontext.Decoder, v *any) error {
	if dec.PeekKind() != '0' {
		return errors.ErrUnsupported
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if i, err := strconv.ParseInt(tok.String(), 10, 64); err == nil {
		*v = i
		return nil
	}
	f, err := strconv.ParseFloat(tok.String(), 64)
	if err != nil {
		return err
	}
	*v = f
	return nil
}))

// shallowCopy copies what prepare changes in a rendered object (the top level and its metadata)
// and shares the rest, which nothing in the engine writes: deep-copying a large CRD's schema for
// every sync would cost more than applying it.
func shallowCopy(u *unstructured.Unstructured) *unstructured.Unstructured {
	obj := maps.Clone(u.Object)
	if md, ok := obj["metadata"].(map[string]any); ok {
		obj["metadata"] = maps.Clone(md)
	}
	return &unstructured.Unstructured{Object: obj}
}
