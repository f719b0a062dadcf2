package apply

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCapabilities(t *testing.T) {
	env := newEnv(t)
	caps, err := env.e.Capabilities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(caps.KubeVersion, "v1.") {
		t.Errorf("KubeVersion = %q", caps.KubeVersion)
	}
	for _, want := range []string{"v1", "apps/v1", "policy/v1", "apps/v1/Deployment", "v1/ConfigMap", "apiextensions.k8s.io/v1/CustomResourceDefinition"} {
		if !slices.Contains(caps.APIVersions, want) {
			t.Errorf("APIVersions lacks %s", want)
		}
	}
	for _, v := range caps.APIVersions {
		if strings.Count(v, "/") > 2 || strings.HasSuffix(v, "/status") {
			t.Errorf("APIVersions holds a subresource: %s", v)
		}
	}
}

func TestData(t *testing.T) {
	env := newEnv(t)
	ctx := t.Context()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vars-data"}}
	if _, err := env.kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cluster-vars", Namespace: "vars-data"},
		Data: map[string]string{"region": "eu-1"}, BinaryData: map[string][]byte{"blob": []byte("b")}}
	if _, err := env.kube.CoreV1().ConfigMaps("vars-data").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cluster-secrets", Namespace: "vars-data"},
		StringData: map[string]string{"password": "s3cret"}}
	if _, err := env.kube.CoreV1().Secrets("vars-data").Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := env.e.Data(ctx, "ConfigMap", "vars-data", "cluster-vars")
	if err != nil || got["region"] != "eu-1" || got["blob"] != "b" || len(got) != 2 {
		t.Errorf("ConfigMap data = %v, %v", got, err)
	}
	got, err = env.e.Data(ctx, "Secret", "vars-data", "cluster-secrets")
	if err != nil || got["password"] != "s3cret" || len(got) != 1 {
		t.Errorf("Secret data = %v, %v", len(got), err)
	}
	_, err = env.e.Data(ctx, "Secret", "vars-data", "missing")
	if !errors.Is(err, ErrNotFound) || IsTransient(err) || !strings.Contains(err.Error(), "Secret vars-data/missing") {
		t.Errorf("missing Secret: %v", err)
	}
	if _, err := env.e.Data(ctx, "Deployment", "vars-data", "x"); err == nil {
		t.Error("a Deployment was read for variables")
	}
}
