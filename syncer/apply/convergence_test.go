package apply

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ferrygitops/ferry/syncer/render"
)

// The convergence test is replayable: its seed is logged and can be set with -seed or
// FERRY_CONVERGENCE_SEED.
var (
	seedFlag  = flag.Uint64("seed", 0, "seed of TestConvergence (0: random)")
	stepsFlag = flag.Int("steps", 60, "commits in TestConvergence")
)

// convGroup is the API group of the convergence test's CRDs.
const convGroup = "conv.ferry.dev"

// mObj is one object of the model: what some app declares at a step.
type mObj struct {
	kind  string // ConfigMap, Namespace, CustomResourceDefinition, or a CRD's kind
	ns    string
	name  string
	value string
}

// model is the Git side: each app's objects, plus bookkeeping to keep every commit valid.
type model struct {
	r       *rand.Rand
	prefix  string
	apps    []string
	objs    map[string]map[mObj]bool // app -> objects (value included)
	base    []string                 // unmanaged namespaces made by the test
	nsOwner map[string]string        // managed namespace -> app
	crds    map[string]string        // CRD kind -> app
	allKind []string                 // every CRD kind ever created, to list
	n       int                      // name counter: names are never reused
}

func (m *model) fresh(what string) string {
	m.n++
	return fmt.Sprintf("%s-%s%d", m.prefix, what, m.n)
}

// pick returns a random element of s; callers pass sorted slices so a seed replays exactly.
func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (m *model) list(app string, kind string) []mObj {
	var out []mObj
	for o := range m.objs[app] {
		if kind == "" || o.kind == kind {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b mObj) int {
		return strings.Compare(a.kind+a.ns+a.name+a.value, b.kind+b.ns+b.name+b.value)
	})
	return out
}

// namespacesFor returns where app may put a namespaced object: base namespaces and its own.
func (m *model) namespacesFor(app string) []string {
	out := slices.Clone(m.base)
	for ns, owner := range m.nsOwner {
		if owner == app {
			out = append(out, ns)
		}
	}
	slices.Sort(out)
	return out
}

func (m *model) crdKinds(app string) []string {
	var out []string
	for k, owner := range m.crds {
		if owner == app {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// step applies one to three random changes: one commit.
func (m *model) step() []string {
	var did []string
	for range 1 + m.r.IntN(3) {
		app := pick(m.r, m.apps)
		cms := m.list(app, "ConfigMap")
		switch op := m.r.IntN(12); {
		case op < 3 || len(cms) == 0: // add ConfigMap
			o := mObj{kind: "ConfigMap", ns: pick(m.r, m.namespacesFor(app)), name: m.fresh("cm"), value: "v0"}
			m.objs[app][o] = true
			did = append(did, "add "+o.name+" to "+app)
		case op == 3: // change
			o := pick(m.r, cms)
			delete(m.objs[app], o)
			o.value = "v" + strconv.Itoa(m.r.IntN(1000))
			m.objs[app][o] = true
			did = append(did, "change "+o.name)
		case op == 4: // delete
			o := pick(m.r, cms)
			delete(m.objs[app], o)
			did = append(did, "delete "+o.name)
		case op == 5: // move between namespaces of the app
			o := pick(m.r, cms)
			delete(m.objs[app], o)
			o.ns = pick(m.r, m.namespacesFor(app))
			m.objs[app][o] = true
			did = append(did, "move "+o.name+" to namespace "+o.ns)
		case op == 6: // move to another app (into a base namespace, which every app may use)
			o := pick(m.r, cms)
			to := pick(m.r, m.apps)
			delete(m.objs[app], o)
			if !slices.Contains(m.base, o.ns) {
				o.ns = pick(m.r, m.base)
			}
			m.objs[to][o] = true
			did = append(did, "move "+o.name+" from "+app+" to "+to)
		case op == 7: // add a namespace
			ns := m.fresh("ns")
			m.nsOwner[ns] = app
			m.objs[app][mObj{kind: "Namespace", name: ns}] = true
			did = append(did, "add namespace "+ns+" to "+app)
		case op == 8: // delete a namespace, moving its objects to a base namespace
			nss := m.list(app, "Namespace")
			if len(nss) == 0 {
				continue
			}
			n := pick(m.r, nss)
			delete(m.objs[app], n)
			delete(m.nsOwner, n.name)
			for _, o := range m.list(app, "") {
				if o.ns == n.name {
					delete(m.objs[app], o)
					o.ns = pick(m.r, m.base)
					m.objs[app][o] = true
				}
			}
			did = append(did, "delete namespace "+n.name+" of "+app)
		case op == 9: // add a CRD with a resource
			if len(m.crds) >= 3 {
				continue
			}
			m.n++
			kind := fmt.Sprintf("Thing%d", m.n)
			m.crds[kind] = app
			m.allKind = append(m.allKind, kind)
			m.objs[app][mObj{kind: "CustomResourceDefinition", name: lower(kind) + "s." + convGroup}] = true
			m.objs[app][mObj{kind: kind, ns: pick(m.r, m.namespacesFor(app)), name: m.fresh("cr"), value: "v0"}] = true
			did = append(did, "add CRD "+kind+" to "+app)
		case op == 10: // add or change a custom resource
			kinds := m.crdKinds(app)
			if len(kinds) == 0 {
				continue
			}
			kind := pick(m.r, kinds)
			if crs := m.list(app, kind); len(crs) > 0 && m.r.IntN(2) == 0 {
				o := pick(m.r, crs)
				delete(m.objs[app], o)
				o.value = "v" + strconv.Itoa(m.r.IntN(1000))
				m.objs[app][o] = true
				did = append(did, "change "+o.name)
			} else {
				o := mObj{kind: kind, ns: pick(m.r, m.namespacesFor(app)), name: m.fresh("cr"), value: "v0"}
				m.objs[app][o] = true
				did = append(did, "add "+o.name)
			}
		case op == 11: // delete a CRD and its resources
			kinds := m.crdKinds(app)
			if len(kinds) == 0 {
				continue
			}
			kind := pick(m.r, kinds)
			delete(m.crds, kind)
			for _, o := range m.list(app, "") {
				if o.kind == kind || (o.kind == "CustomResourceDefinition" && o.name == lower(kind)+"s."+convGroup) {
					delete(m.objs[app], o)
				}
			}
			did = append(did, "delete CRD "+kind+" of "+app)
		}
	}
	return did
}

// render turns the model of one app into objects, as Git would.
func (m *model) render(t *testing.T, app string) []render.Object {
	var out []render.Object
	for _, o := range m.list(app, "") {
		switch o.kind {
		case "ConfigMap":
			ns := o.ns
			if ns == m.base[0] {
				ns = "" // exercise defaulting to the app namespace
			}
			out = append(out, configMap(t, ns, o.name, o.value))
		case "Namespace":
			out = append(out, namespace(t, o.name))
		case "CustomResourceDefinition":
			kind := ""
			for k := range m.crds {
				if lower(k)+"s."+convGroup == o.name {
					kind = k
				}
			}
			out = append(out, crd(t, convGroup, kind, true))
		default:
			out = append(out, cr(t, convGroup, o.kind, o.ns, o.name, o.value))
		}
	}
	return out
}

// want is the set of (app, object) the cluster must hold.
func (m *model) want() map[string]string {
	out := map[string]string{}
	for _, app := range m.apps {
		for o := range m.objs[app] {
			out[o.kind+" "+o.ns+"/"+o.name] = app + " " + o.value
		}
	}
	return out
}

// live lists every object carrying ferry's app label, skipping those being deleted.
func (m *model) live(t *testing.T, v *env) map[string]string {
	out := map[string]string{}
	gvrs := map[string]schema.GroupVersionResource{
		"ConfigMap":                {Version: "v1", Resource: "configmaps"},
		"Namespace":                {Version: "v1", Resource: "namespaces"},
		"CustomResourceDefinition": {Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"},
	}
	for _, k := range m.allKind {
		gvrs[k] = schema.GroupVersionResource{Group: convGroup, Version: "v1", Resource: lower(k) + "s"}
	}
	for kind, gvr := range gvrs {
		l, err := v.dyn.Resource(gvr).List(t.Context(), metav1.ListOptions{LabelSelector: LabelApp})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range l.Items {
			if u.GetDeletionTimestamp() != nil || !slices.Contains(m.apps, u.GetLabels()[LabelApp]) {
				continue
			}
			val := ""
			if d, ok := u.Object["data"].(map[string]any); ok {
				val, _ = d["value"].(string)
			}
			if s, ok := u.Object["spec"].(map[string]any); ok {
				val, _ = s["value"].(string)
			}
			out[kind+" "+u.GetNamespace()+"/"+u.GetName()] = u.GetLabels()[LabelApp] + " " + val
		}
	}
	return out
}

func TestConvergence(t *testing.T) {
	seed := *seedFlag
	if s := os.Getenv("FERRY_CONVERGENCE_SEED"); seed == 0 && s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FERRY_CONVERGENCE_SEED: %v", err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run TestConvergence ./syncer/apply/ -seed %d)", seed, seed)
	v := newEnv(t)
	r := rand.New(rand.NewPCG(seed, seed>>1|1))
	prefix := "cv" + strconv.FormatUint(seed%1679616, 36)
	m := &model{
		r: r, prefix: prefix,
		apps:    []string{prefix + "-a", prefix + "-b", prefix + "-c"},
		objs:    map[string]map[mObj]bool{},
		base:    []string{prefix + "-base0", prefix + "-base1"},
		nsOwner: map[string]string{},
		crds:    map[string]string{},
	}
	for _, app := range m.apps {
		m.objs[app] = map[mObj]bool{}
	}
	for _, ns := range m.base {
		if _, err := v.kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var syncs, retries int
	for step := range *stepsFlag {
		did := m.step()
		rev := fmt.Sprintf("c%03d", step)
		order := slices.Clone(m.apps)
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var retry []string
		for _, app := range order {
			syncs++
			_, err := v.e.Sync(t.Context(), App{Name: app, Namespace: m.base[0], Prune: true, Timeout: 30 * time.Second}, rev, m.render(t, app))
			var ce *ConflictError
			if errors.As(err, &ce) && ce.Owner != "" && IsTransient(err) {
				retry = append(retry, app)
				continue
			}
			if err != nil {
				t.Fatalf("step %d %v: sync %s: %v", step, did, app, err)
			}
		}
		for _, app := range retry {
			syncs++
			retries++
			if _, err := v.e.Sync(t.Context(), App{Name: app, Namespace: m.base[0], Prune: true, Timeout: 30 * time.Second}, rev, m.render(t, app)); err != nil {
				t.Fatalf("step %d %v: retry of %s: %v", step, did, app, err)
			}
		}
		if diff := cmp.Diff(m.want(), m.live(t, v)); diff != "" {
			t.Fatalf("step %d %v: cluster differs from Git (-want +got):\n%s", step, did, diff)
		}
	}
	total := 0
	for _, app := range m.apps {
		total += len(m.objs[app])
	}
	t.Logf("%d commits, %d syncs (%d retried after a conflict), %d objects at the end, %s",
		*stepsFlag, syncs, retries, total, time.Since(start).Round(time.Millisecond))
}
