package status

import (
	"context"
	"errors"
)

// Tee posts every status to each of rs in turn, e.g. a merge request's commit status and then
// its note. Each is tried whatever the others did; the errors come back joined (permanent only if
// the first permanent one is what IsPermanent finds). A Retry around a tee posts to all of them
// again, so each must take a repeated post: GitLab's commit status and notes both do.
func Tee(rs ...Reporter) Reporter {
	return tee(rs)
}

type tee []Reporter

var _ Reporter = tee(nil)

// Report posts s to every reporter.
func (t tee) Report(ctx context.Context, s Status) error {
	var errs []error
	for _, r := range t {
		if err := r.Report(ctx, s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
