package cluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ferrygitops/ferry/test/cluster"
)

func TestMain(m *testing.M) { os.Exit(cluster.Main(m)) }

// controllerTimeout bounds waits on the controller manager (namespace deletion, garbage
// collection); both usually finish in a few seconds.
const controllerTimeout = 60 * time.Second

func coreClient(t *testing.T, c *cluster.Cluster) corev1client.CoreV1Interface {
	t.Helper()
	core, err := corev1client.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("core client: %v", err)
	}
	return core
}

// TestSharedCluster exercises the shared cluster the way ferry's tests will: objects round-trip,
// the controller manager finishes namespace deletion and collects garbage, and the apiserver
// can be stopped and started under a client. It is the only test of this package on the shared
// cluster, so stopping its apiserver disturbs no one.
func TestSharedCluster(t *testing.T) {
	c := cluster.Shared(t)
	if again := cluster.Shared(t); again != c {
		t.Fatal("Shared returned a different cluster on the second call")
	}
	ctx := t.Context()
	core := coreClient(t, c)

	ns, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "cluster-test"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	want := map[string]string{"greeting": "hello", "sha": "0123456789abcdef"}
	owner, err := core.ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data:       want,
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create configmap: %v", err)
	}
	got, err := core.ConfigMaps(ns.Name).Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get configmap: %v", err)
	}
	if diff := cmp.Diff(want, got.Data); diff != "" {
		t.Errorf("configmap data (-want +got):\n%s", diff)
	}

	t.Run("garbage collection", func(t *testing.T) {
		_, err := core.ConfigMaps(ns.Name).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: "dependent",
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
			}},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create dependent: %v", err)
		}
		if err := core.ConfigMaps(ns.Name).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete owner: %v", err)
		}
		waitGone(t, "configmap dependent", func(ctx context.Context) error {
			_, err := core.ConfigMaps(ns.Name).Get(ctx, "dependent", metav1.GetOptions{})
			return err
		})
	})

	t.Run("namespace deletion finishes", func(t *testing.T) {
		if err := core.Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete namespace: %v", err)
		}
		waitGone(t, "namespace "+ns.Name, func(ctx context.Context) error {
			_, err := core.Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
			return err
		})
	})

	t.Run("kubeconfig file", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
		if err != nil {
			t.Fatalf("load kubeconfig: %v", err)
		}
		if cfg.Insecure {
			t.Error("kubeconfig skips TLS verification; want the apiserver's CA")
		}
		kc, err := corev1client.NewForConfig(cfg)
		if err != nil {
			t.Fatalf("client from kubeconfig: %v", err)
		}
		if _, err := kc.Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{}); err != nil {
			t.Fatalf("get kube-system through the kubeconfig: %v", err)
		}
	})

	t.Run("apiserver restart", func(t *testing.T) {
		if err := c.StopAPIServer(); err != nil {
			t.Fatalf("StopAPIServer: %v", err)
		}
		if err := c.StopAPIServer(); err != nil {
			t.Fatalf("second StopAPIServer: %v", err)
		}
		short, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := core.Namespaces().Get(short, metav1.NamespaceDefault, metav1.GetOptions{})
		cancel()
		if err == nil {
			t.Fatal("apiserver still answers after StopAPIServer")
		}
		began := time.Now()
		if err := c.StartAPIServer(ctx); err != nil {
			t.Fatalf("StartAPIServer: %v", err)
		}
		t.Logf("apiserver restarted in %s", time.Since(began).Round(time.Millisecond))
		// The same client (same host, CA and token) works again, and etcd kept the data.
		if _, err := core.Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			t.Fatalf("get default namespace after restart: %v", err)
		}
		if _, err := core.ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{}); err != nil {
			t.Fatalf("default service account lost across restart: %v", err)
		}
	})
}

// TestStartWithoutControllerManager runs a private cluster with only etcd and the apiserver,
// checks that Pods can be created without a controller making ServiceAccounts, and that Stop
// ends the processes and may be called twice.
func TestStartWithoutControllerManager(t *testing.T) {
	dir := t.TempDir()
	c, err := cluster.Start(t.Context(), dir, cluster.Options{Logf: t.Logf, BinDir: os.Getenv(cluster.BinDirEnv)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	core := coreClient(t, c)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "idle"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "registry.example/idle:1"}}},
	}
	if _, err := core.Pods(metav1.NamespaceDefault).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod: %v", err)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	short, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := core.Namespaces().Get(short, metav1.NamespaceDefault, metav1.GetOptions{}); err == nil {
		t.Fatal("apiserver still answers after Stop")
	}
	if err := c.StartAPIServer(t.Context()); err == nil {
		t.Fatal("StartAPIServer after Stop succeeded; want an error")
	}
}

// waitGone polls get until it reports NotFound, failing the test after controllerTimeout.
func waitGone(t *testing.T, what string, get func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, controllerTimeout, true, func(ctx context.Context) (bool, error) {
		last = get(ctx)
		return apierrors.IsNotFound(last), nil
	})
	if err != nil {
		t.Fatalf("%s still there after %s (last get: %v)", what, controllerTimeout, last)
	}
}
