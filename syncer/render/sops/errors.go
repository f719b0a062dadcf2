package sops

import (
	"errors"
	"fmt"
	"strings"
)

// ErrDecrypt marks a SOPS-encrypted file that cannot be decrypted. Such an error is permanent:
// the same commit with the same keys fails the same way, so retrying cannot help; the user has
// to add a key or fix the file.
var ErrDecrypt = errors.New("cannot decrypt SOPS file")

// DecryptError says which file could not be decrypted, why, and for whom it is encrypted, so
// the user knows which key the app lacks. It never holds key material nor any value of the file.
type DecryptError struct {
	// File is the repository-relative path of the encrypted file.
	File string
	// Recipients are the age public keys the file's data key is encrypted for (empty when it is
	// encrypted for other kinds of keys only, which Reason then names).
	Recipients []string
	// Reason says what failed.
	Reason string
}

// Error implements error.
func (e *DecryptError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s: %s", e.File, ErrDecrypt, e.Reason)
	if len(e.Recipients) > 0 {
		fmt.Fprintf(&b, " (encrypted for age recipients %s)", strings.Join(e.Recipients, ", "))
	}
	return b.String()
}

// Is lets callers test errors.Is(err, ErrDecrypt).
func (e *DecryptError) Is(target error) bool { return target == ErrDecrypt }

// The reasons a DecryptError gives, shared by the code that makes them and the tests that
// check them.
const (
	reasonNoKeys        = "encrypted with SOPS, but no decryption keys are configured for this app"
	reasonNoMatchingKey = "none of the app's age identities (%s) is a recipient of this file"
	reasonMAC           = "MAC mismatch: the file was changed after it was encrypted (tampered with, or edited without sops)"
	reasonBadValue      = "a value does not decrypt with the file's data key: the file was tampered with or is corrupt"
	reasonMetadata      = "the sops metadata is missing or corrupt"
	reasonTooLarge      = "the file is larger than MaxEncryptedFileSize"
)
