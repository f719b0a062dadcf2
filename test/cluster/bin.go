package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferrygitops/ferry/test/toolbin"
)

// buildScript is the script, relative to the repository root, that builds the control plane from
// the Go module proxy into a cache and prints the cache directory.
const buildScript = "test/k8sbin/build.sh"

// ensureBinaries returns the directory holding tools: binDir itself when set (after checking
// that every tool is there), else whatever build.sh prints after building the missing ones. A
// cold build takes about 20 minutes on 2 cores; it is bounded by ctx.
func ensureBinaries(ctx context.Context, binDir string, tools []string, logf func(string, ...any)) (string, error) {
	if binDir == "" {
		script, err := toolbin.Find(buildScript)
		if err != nil {
			return "", fmt.Errorf("%w; set Options.BinDir", err)
		}
		if binDir, err = toolbin.Build(ctx, script, tools, logf); err != nil {
			return "", fmt.Errorf("build control plane: %w", err)
		}
	}
	for _, t := range tools {
		st, err := os.Stat(filepath.Join(binDir, t))
		if err != nil {
			return "", fmt.Errorf("control plane binary: %w", err)
		}
		if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("control plane binary %s is not an executable file", filepath.Join(binDir, t))
		}
	}
	return binDir, nil
}
