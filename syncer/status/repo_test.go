package status

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRepoURL(t *testing.T) {
	tests := []struct {
		url         string
		owner, name string
	}{
		{"https://github.com/acme/platform.git", "acme", "platform"},
		{"https://github.com/acme/platform", "acme", "platform"},
		{"https://github.com/acme/platform/", "acme", "platform"},
		{"https://github.com/acme/platform.git/", "acme", "platform"},
		{"http://gitea.local:3000/acme/platform.git", "acme", "platform"},
		{"https://x-access-token:abc@github.com/acme/platform.git", "acme", "platform"},
		{"git@github.com:acme/platform.git", "acme", "platform"},
		{"github.com:acme/platform", "acme", "platform"},
		{"ssh://git@github.com/acme/platform.git", "acme", "platform"},
		{"ssh://git@gitea.local:2222/acme/platform.git", "acme", "platform"},
		{"git://example.com/acme/platform.git", "acme", "platform"},
		{"https://gitlab.com/g/sub/proj.git", "g/sub", "proj"},
		{"git@gitlab.com:g/sub/deeper/proj.git", "g/sub/deeper", "proj"},
		{"  https://github.com/acme/platform.git\n", "acme", "platform"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			owner, name, err := ParseRepoURL(tt.url)
			if err != nil {
				t.Fatalf("ParseRepoURL: %v", err)
			}
			if diff := cmp.Diff([2]string{tt.owner, tt.name}, [2]string{owner, name}); diff != "" {
				t.Errorf("owner, name (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRepoURLErrors(t *testing.T) {
	const secret = "hunter2secret"
	tests := []struct {
		url     string
		mention string // the error should say this
	}{
		{"", "empty"},
		{"https://github.com/platform.git", "owner and a name"},
		{"https://github.com/", "owner and a name"},
		{"https://github.com/acme//platform", "empty or relative segment"},
		{"https://github.com/acme/../platform", "empty or relative segment"},
		{"file:///srv/git/acme/platform.git", "unsupported scheme"},
		{"/srv/git/acme/platform.git", "neither"},
		{"./acme/platform", "neither"},
		{"https:///acme/platform", "no host"},
		{"https://user:" + secret + "@github.com/platform", "owner and a name"},
		{"https://user:" + secret + "@github.com/%zz/platform", "parse repository url"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			owner, name, err := ParseRepoURL(tt.url)
			if err == nil {
				t.Fatalf("ParseRepoURL = %q, %q, want an error", owner, name)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error holds the URL's password: %v", err)
			}
		})
	}
}
