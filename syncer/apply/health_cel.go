package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Bounds of one health expression's evaluation. A rule runs on every poll of every object of its
// kind, so it must stay cheap whatever the object holds: the cost limit stops a comprehension over
// a huge list, the timeout anything the cost estimate misses.
const (
	// HealthExprCostLimit is the most CEL cost units (roughly, values visited) one evaluation may
	// spend before it fails: some milliseconds of work, thousands of times what a look through an
	// object's conditions costs.
	HealthExprCostLimit = 100_000
	// HealthExprTimeout bounds the wall-clock time of one evaluation.
	HealthExprTimeout = 100 * time.Millisecond
	// healthExprInterruptEvery is how many comprehension iterations pass between checks of the
	// evaluation's deadline.
	healthExprInterruptEvery = 100
)

// healthVars are the names an expression may use: self is the whole object, and its top-level
// fields are variables too, so that expressions written for Flux's healthCheckExprs
// (status.conditions...) work unchanged. An object without a status (or spec, metadata) gets an
// empty map, so has(status.x) is false rather than an error.
var healthVars = []string{"apiVersion", "kind", "metadata", "spec", "status"}

// HealthCheck is a health rule for one kind, in CEL. Current is required; Failed and InProgress
// are optional. They are tried in the order Failed, Current, InProgress: the first that is true
// decides; when none is, the object is in progress.
type HealthCheck struct {
	// APIVersion is group/version (example.com/v1, or v1 for the core group), or group/* for
	// every version of the group.
	APIVersion string
	// Kind is the object's kind, e.g. Certificate.
	Kind string
	// Current, Failed and InProgress are boolean CEL expressions over the object.
	Current, Failed, InProgress string
}

// rule is a compiled HealthCheck.
type rule struct {
	check HealthCheck
	// group, version of APIVersion; version "*" matches any.
	group, version string
	// exprs are Failed, Current, InProgress in evaluation order; a nil program is an unset one.
	exprs [3]ruleExpr
}

type ruleExpr struct {
	name   string
	source string
	prg    cel.Program
	status status.Status
}

// HealthChecks are compiled health rules, built once at start by CompileHealthChecks.
type HealthChecks struct {
	// rules from the configuration come first, so they override the built-ins; within each,
	// an exact version comes before group/*.
	rules []*rule
}

// CompileHealthChecks parses and type-checks checks, and adds the built-in rules (BuiltinHealthChecks)
// for the kinds no check names. Errors name the rule's kind and the expression.
func CompileHealthChecks(checks []HealthCheck) (*HealthChecks, error) {
	env, err := healthEnv()
	if err != nil {
		return nil, err
	}
	hc := &HealthChecks{}
	var errs []error
	named := map[string]bool{}
	for i, c := range checks {
		r, err := compileRule(env, c)
		if err != nil {
			errs = append(errs, fmt.Errorf("healthChecks[%d] (%s %s): %w", i, c.APIVersion, c.Kind, err))
			continue
		}
		key := r.group + "/" + r.version + "/" + r.check.Kind
		if named[key] {
			errs = append(errs, fmt.Errorf("healthChecks[%d] (%s %s): a rule for this apiVersion and kind is given twice", i, c.APIVersion, c.Kind))
		}
		named[key] = true
		named[r.group+"/"+r.check.Kind] = true
		hc.rules = append(hc.rules, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, c := range BuiltinHealthChecks() {
		r, err := compileRule(env, c)
		if err != nil {
			return nil, fmt.Errorf("built-in health check %s %s: %w", c.APIVersion, c.Kind, err)
		}
		if !named[r.group+"/"+r.check.Kind] {
			hc.rules = append(hc.rules, r)
		}
	}
	// Exact versions before wildcards, keeping configuration before built-ins.
	exact := make([]*rule, 0, len(hc.rules))
	var wild []*rule
	for _, r := range hc.rules {
		if r.version == "*" {
			wild = append(wild, r)
		} else {
			exact = append(exact, r)
		}
	}
	hc.rules = append(exact, wild...)
	return hc, nil
}

func healthEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{cel.OptionalTypes(), cel.Variable("self", cel.MapType(cel.StringType, cel.DynType))}
	for _, v := range healthVars {
		opts = append(opts, cel.Variable(v, cel.DynType))
	}
	env, err := cel.NewEnv(opts...)
	if err != nil {
		return nil, fmt.Errorf("health checks: cel environment: %w", err)
	}
	return env, nil
}

func compileRule(env *cel.Env, c HealthCheck) (*rule, error) {
	r := &rule{check: c}
	switch g, v, ok := strings.Cut(c.APIVersion, "/"); {
	case c.APIVersion == "":
		return nil, errors.New("apiVersion is required (group/version, group/* or v1)")
	case !ok && strings.Contains(c.APIVersion, "*"):
		return nil, fmt.Errorf("apiVersion %q: a wildcard needs a group (group/*)", c.APIVersion)
	case !ok:
		r.version = c.APIVersion
	case g == "" || v == "" || strings.Contains(g, "*") || strings.Contains(v, "/") || (v != "*" && strings.Contains(v, "*")):
		return nil, fmt.Errorf("apiVersion %q must be group/version or group/*", c.APIVersion)
	default:
		r.group, r.version = g, v
	}
	if c.Kind == "" {
		return nil, errors.New("kind is required")
	}
	if strings.TrimSpace(c.Current) == "" {
		return nil, errors.New("current is required")
	}
	for i, e := range []struct {
		name, src string
		st        status.Status
	}{{"failed", c.Failed, status.FailedStatus}, {"current", c.Current, status.CurrentStatus}, {"inProgress", c.InProgress, status.InProgressStatus}} {
		r.exprs[i] = ruleExpr{name: e.name, source: e.src, status: e.st}
		if strings.TrimSpace(e.src) == "" {
			continue
		}
		ast, iss := env.Compile(e.src)
		if iss.Err() != nil {
			return nil, fmt.Errorf("%s expression %q: %w", e.name, e.src, iss.Err())
		}
		if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
			return nil, fmt.Errorf("%s expression %q yields %s, not a bool", e.name, e.src, t)
		}
		prg, err := env.Program(ast, cel.CostLimit(HealthExprCostLimit), cel.InterruptCheckFrequency(healthExprInterruptEvery))
		if err != nil {
			return nil, fmt.Errorf("%s expression %q: %w", e.name, e.src, err)
		}
		r.exprs[i].prg = prg
	}
	return r, nil
}

// find returns the rule for an object of apiVersion and kind, or nil.
func (hc *HealthChecks) find(apiVersion, kind string) *rule {
	if hc == nil {
		return nil
	}
	g, v, ok := strings.Cut(apiVersion, "/")
	if !ok {
		g, v = "", apiVersion
	}
	for _, r := range hc.rules {
		if r.check.Kind == kind && r.group == g && (r.version == v || r.version == "*") {
			return r
		}
	}
	return nil
}

// covers reports whether a rule names group and kind in any version: such a kind is polled even
// when ferry would otherwise count it healthy once applied.
func (hc *HealthChecks) covers(group, kind string) bool {
	if hc == nil {
		return false
	}
	for _, r := range hc.rules {
		if r.group == group && r.check.Kind == kind {
			return true
		}
	}
	return false
}

// HealthExprError is a health expression that could not be evaluated on an object: a field it
// reads is missing, a type is wrong, or it ran out of its cost or time budget. It fails the
// health wait at once, since waiting cannot make the expression right.
type HealthExprError struct {
	// Kind and APIVersion name the rule; Expr is the expression and Name which one it is.
	APIVersion, Kind, Name, Expr string
	Err                          error
}

func (e *HealthExprError) Error() string {
	return fmt.Sprintf("health check %s of %s %s: expression %q: %v", e.Name, e.APIVersion, e.Kind, e.Expr, e.Err)
}

func (e *HealthExprError) Unwrap() error { return e.Err }

// evaluate returns the rule's verdict on u. An object being deleted, or whose status speaks of an
// older generation, is in progress whatever the expressions say: its controller has not caught up.
func (r *rule) evaluate(u *unstructured.Unstructured) (status.Status, string, error) {
	obj := u.Object
	if u.GetDeletionTimestamp() != nil {
		return status.InProgressStatus, "being deleted", nil
	}
	if og, found, _ := unstructured.NestedInt64(obj, "status", "observedGeneration"); found && og != u.GetGeneration() {
		return status.InProgressStatus, fmt.Sprintf("status is of generation %d, the object is at %d", og, u.GetGeneration()), nil
	}
	vars := map[string]any{"self": obj}
	for _, v := range healthVars {
		if x, ok := obj[v]; ok && x != nil {
			vars[v] = x
		} else {
			vars[v] = map[string]any{}
		}
	}
	for _, e := range r.exprs {
		if e.prg == nil {
			continue
		}
		ok, err := evalBool(e.prg, vars)
		if err != nil {
			return status.UnknownStatus, "", &HealthExprError{APIVersion: r.check.APIVersion, Kind: r.check.Kind, Name: e.name, Expr: e.source, Err: err}
		}
		if ok {
			return e.status, fmt.Sprintf("health check %s is true: %s", e.name, e.source), nil
		}
	}
	return status.InProgressStatus, "no health check is true yet (current: " + r.exprs[1].source + ")", nil
}

// evalBool runs prg within HealthExprTimeout and insists on a bool.
func evalBool(prg cel.Program, vars map[string]any) (bool, error) {
	// The evaluation is pure CPU on a copy-free view of the object; its own context bounds it,
	// independent of the sync's, so that a slow expression is reported as such.
	ctx, cancel := context.WithTimeout(context.Background(), HealthExprTimeout)
	defer cancel()
	out, _, err := prg.ContextEval(ctx, vars)
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("took longer than %s: %w", HealthExprTimeout, err)
		}
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("yields %s, not a bool", out.Type().TypeName())
	}
	return b, nil
}

// BuiltinHealthChecks are the rules ferry applies, unless configuration names the same group and
// kind, to popular kinds that kstatus misjudges: until their controller first writes a status they
// carry neither status.observedGeneration nor conditions, and kstatus calls them Current at once;
// and a failure they report as a condition reason is waited out to the timeout rather than shown.
func BuiltinHealthChecks() []HealthCheck {
	ready := func(s string) string {
		return "has(status.conditions) && status.conditions.exists(c, c.type == 'Ready' && c.status == '" + s + "')"
	}
	readyReason := func(reasons ...string) string {
		return "has(status.conditions) && status.conditions.exists(c, c.type == 'Ready' && c.status == 'False' && has(c.reason) && c.reason in ['" +
			strings.Join(reasons, "', '") + "'])"
	}
	return []HealthCheck{
		// cert-manager: a Certificate is issued when Ready; an issuance that failed says so in
		// its Issuing condition (reason Failed) and is retried later with backoff.
		{APIVersion: "cert-manager.io/*", Kind: "Certificate", Current: ready("True"),
			Failed: "has(status.conditions) && status.conditions.exists(c, c.type == 'Issuing' && c.status == 'False' && has(c.reason) && c.reason == 'Failed')"},
		{APIVersion: "cert-manager.io/*", Kind: "Issuer", Current: ready("True")},
		{APIVersion: "cert-manager.io/*", Kind: "ClusterIssuer", Current: ready("True")},
		// External Secrets Operator: Ready with reason SecretSyncedError or an invalid store
		// configuration will not pass by waiting.
		{APIVersion: "external-secrets.io/*", Kind: "ExternalSecret", Current: ready("True"), Failed: readyReason("SecretSyncedError")},
		{APIVersion: "external-secrets.io/*", Kind: "SecretStore", Current: ready("True"), Failed: readyReason("InvalidProviderConfig")},
		{APIVersion: "external-secrets.io/*", Kind: "ClusterSecretStore", Current: ready("True"), Failed: readyReason("InvalidProviderConfig")},
	}
}
