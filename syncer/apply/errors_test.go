package apply

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestIsTransient(t *testing.T) {
	gr := schema.GroupResource{Resource: "configmaps"}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"optimistic conflict", apierrors.NewConflict(gr, "x", errors.New("modified")), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"500", apierrors.NewInternalError(errors.New("boom")), true},
		{"503", apierrors.NewServiceUnavailable("down"), true},
		{"server timeout", apierrors.NewServerTimeout(gr, "patch", 1), true},
		{"connection refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), true},
		{"deadline", context.DeadlineExceeded, true},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "x", nil), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("rbac")), false},
		{"no such kind", &meta.NoKindMatchError{GroupKind: schema.GroupKind{Kind: "Gadget"}}, false},
		{"unmanaged conflict", &ConflictError{Object: "ConfigMap a/b", App: "x"}, false},
		{"conflict with another app", &ConflictError{Object: "ConfigMap a/b", App: "x", Owner: "y"}, true},
		{"object error wrapping 503", &Error{Stage: StageApply, Object: "ConfigMap a/b", Err: apierrors.NewServiceUnavailable("down")}, true},
		{"object error wrapping invalid", &Error{Stage: StageApply, Object: "ConfigMap a/b", Err: apierrors.NewBadRequest("bad")}, false},
		{"health timeout", &Error{Stage: StageHealth, Object: "Deployment a/b", Err: context.DeadlineExceeded}, false},
		{"all transient joined", errors.Join(apierrors.NewServiceUnavailable("down"), &ConflictError{Owner: "y"}), true},
		{"one permanent joined", errors.Join(apierrors.NewServiceUnavailable("down"), apierrors.NewBadRequest("bad")), false},
		{"wrapped", fmt.Errorf("sync: %w", apierrors.NewTooManyRequests("x", 1)), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	err := objectError(StageApply, "Deployment db/api", "apps/api/deploy.yaml",
		apierrors.NewInvalid(schema.GroupKind{Group: "apps", Kind: "Deployment"}, "api", nil))
	want := `apply: Deployment db/api (apps/api/deploy.yaml): Deployment.apps "api" is invalid`
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if !apierrors.IsInvalid(err) {
		t.Error("the apiserver error is not reachable through Unwrap")
	}
}
