package apply

import (
	"context"
	"slices"
	"strings"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Prune order: the reverse of apply. Admission webhooks, policies and API services go first, so
// that none is left pointing at a deleted Service; then namespaced and custom objects, then
// cluster-scoped prerequisites, and Namespaces and CRDs last, since deleting them takes everything
// inside along.
const (
	pruneAdmission = iota
	pruneFirst
	pruneClusterScoped
	pruneLast
	numPruneGroups
)

func pruneGroup(en *entry) int {
	switch {
	case en.Stage == stageAdmission:
		return pruneAdmission
	case en.Stage == stageRest:
		return pruneFirst
	case (en.Group == "" && en.Kind == "Namespace") || (en.Group == crdGK.Group && en.Kind == crdGK.Kind):
		return pruneLast
	}
	return pruneClusterScoped
}

// pruned is the outcome of pruning one inventory entry.
type pruned struct {
	en      *entry
	deleted bool // false: already gone, or no longer ferry's
}

// prune deletes the inventory entries in stale, which are no longer desired. An entry is deleted only
// if the owned LIST (live) still shows it with this app's label; the delete carries the UID seen
// then as a precondition, so an object re-created meanwhile by someone else is never removed.
// Entries that are gone already, or now belong to someone else, are dropped without a request.
// It returns the entries that could not be deleted (to keep in the inventory) with their errors.
func (e *Engine) prune(ctx context.Context, stale []*entry, live map[string]liveMeta) ([]pruned, []*entry, error) {
	var groups [numPruneGroups][]*entry
	for _, en := range stale {
		g := pruneGroup(en)
		groups[g] = append(groups[g], en)
	}
	var (
		mu     sync.Mutex
		done   []pruned
		failed []*entry
		errs   []error
	)
	propagation := metav1.DeletePropagationBackground
	for _, group := range groups {
		slices.SortFunc(group, func(a, b *entry) int { return strings.Compare(a.id().key(), b.id().key()) })
		e.parallel(len(group), func(i int) {
			en := group[i]
			lm, ok := live[en.id().key()]
			if !ok || lm.deleting {
				mu.Lock()
				done = append(done, pruned{en: en, deleted: ok})
				mu.Unlock()
				return
			}
			uid := types.UID(lm.uid)
			err := e.dyn.Resource(en.mapping().gvr).Namespace(en.Namespace).Delete(ctx, en.Name, metav1.DeleteOptions{
				Preconditions:     &metav1.Preconditions{UID: &uid},
				PropagationPolicy: &propagation,
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				done = append(done, pruned{en: en, deleted: true})
			case apierrors.IsNotFound(err):
				done = append(done, pruned{en: en})
			case apierrors.IsConflict(err):
				// The UID precondition failed: the name now belongs to a different object. Not ours.
				done = append(done, pruned{en: en})
			default:
				failed = append(failed, en)
				errs = append(errs, objectError(StagePrune, en.id().String(), "", err))
			}
		})
	}
	if len(errs) > 0 {
		return done, failed, joinErrs(errs)
	}
	return done, nil, nil
}
