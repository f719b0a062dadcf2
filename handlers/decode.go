package handlers

import (
	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// decodePayload decodes a webhook body into v in one pass. Members v has no field for are
// skipped without being materialised, which is most of a push payload (repository and user
// detail); names match exactly, as forges spell them, and a name repeated in one object keeps
// its last value, as encoding/json does. Every payload ferry reads itself (GitHub and Gitea
// pushes, Gitea pull requests) goes through it.
func decodePayload(body []byte, v any) error {
	return jsonv2.Unmarshal(body, v, jsontext.AllowDuplicateNames(true))
}
