package render

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// The annotations a Helm hook is declared by.
const (
	annHook         = "helm.sh/hook"
	annHookWeight   = "helm.sh/hook-weight"
	annHookDelete   = "helm.sh/hook-delete-policy"
	hookPreInstall  = "pre-install"
	hookPostInstall = "post-install"
	hookPreUpgrade  = "pre-upgrade"
	hookPostUpgrade = "post-upgrade"
)

// droppedHookEvents are the events ferry never reaches: it runs no chart tests and never
// uninstalls or rolls back a release. A hook for only these is left out of the render.
// crd-install is Helm 2's, which Helm 3 and later no longer run either.
var droppedHookEvents = []string{"test", "test-success", "test-failure", "pre-delete", "post-delete", "pre-rollback", "post-rollback", "crd-install"}

// hookOf reads an object's hook annotations: no hook (nil, true) for an ordinary object, the
// hook for an install or upgrade hook, and keep false for a hook ferry never runs (tests,
// delete and rollback hooks). An unknown event, weight or delete policy is an error naming the
// file and the object: the author meant something ferry cannot tell.
func hookOf(o Object) (hook *Hook, keep bool, err error) {
	ann := o.GetAnnotations()
	events, ok := ann[annHook]
	if !ok {
		return nil, true, nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s %s: %s", o.File, o.GetKind(), describe(o.Unstructured), fmt.Sprintf(format, args...))
	}
	h := &Hook{}
	for _, e := range strings.Split(events, ",") {
		switch e = strings.TrimSpace(e); e {
		case hookPreInstall:
			h.Pre, h.Install = true, true
		case hookPreUpgrade:
			h.Pre, h.Upgrade = true, true
		case hookPostInstall:
			h.Install = true
		case hookPostUpgrade:
			h.Upgrade = true
		case "":
		default:
			if !slices.Contains(droppedHookEvents, e) {
				return nil, false, bad("%s: unknown hook event %q", annHook, e)
			}
			if strings.HasPrefix(e, "test") {
				return nil, false, nil // a test hook is a test, whatever else it says
			}
		}
	}
	if !h.Install && !h.Upgrade {
		return nil, false, nil
	}
	if w, ok := ann[annHookWeight]; ok && strings.TrimSpace(w) != "" {
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil {
			return nil, false, bad("%s %q is not a whole number", annHookWeight, w)
		}
		h.Weight = n
	}
	for _, p := range strings.Split(ann[annHookDelete], ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case HookBeforeCreation, HookSucceeded, HookFailed:
			if !slices.Contains(h.DeletePolicies, p) {
				h.DeletePolicies = append(h.DeletePolicies, p)
			}
		default:
			return nil, false, bad("%s: unknown delete policy %q", annHookDelete, p)
		}
	}
	if len(h.DeletePolicies) == 0 {
		h.DeletePolicies = []string{HookBeforeCreation}
	}
	return h, true, nil
}
