package cluster

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// adminUser is the identity behind the cluster's static token. Being in system:masters it passes
// RBAC for everything, as a cluster admin would.
const adminUser = "ferry-test-admin"

// serviceAccountKeyBits is the RSA size of the service account signing key. 2048 is what
// clusters use and is generated in well under a second.
const serviceAccountKeyBits = 2048

// contextName names the cluster, user and context in the kubeconfig file.
const contextName = "ferry-test"

// credentials is what the control plane is started with, written under the cluster's pki dir.
type credentials struct {
	token     string // bearer token of adminUser
	tokenFile string // --token-auth-file
	saKeyFile string // PEM RSA private key: signs and verifies service account tokens
}

// writeCredentials creates a random admin token and a service account key under dir.
func writeCredentials(dir string) (credentials, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return credentials{}, fmt.Errorf("create pki dir: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return credentials{}, fmt.Errorf("generate token: %w", err)
	}
	c := credentials{
		token:     hex.EncodeToString(raw),
		tokenFile: filepath.Join(dir, "tokens.csv"),
		saKeyFile: filepath.Join(dir, "service-account.key"),
	}
	// Format: token,user,uid,"group1,group2".
	line := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", c.token, adminUser, adminUser)
	if err := os.WriteFile(c.tokenFile, []byte(line), 0o600); err != nil {
		return credentials{}, fmt.Errorf("write token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, serviceAccountKeyBits)
	if err != nil {
		return credentials{}, fmt.Errorf("generate service account key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return credentials{}, fmt.Errorf("encode service account key: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err := os.WriteFile(c.saKeyFile, pemBytes, 0o600); err != nil {
		return credentials{}, fmt.Errorf("write service account key: %w", err)
	}
	return c, nil
}

// writeKubeconfig writes cfg (host, CA, bearer token) as a kubeconfig file at path, for
// kube-controller-manager, kubectl and programs that only take a kubeconfig.
func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters[contextName] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthorityData: cfg.CAData,
		InsecureSkipTLSVerify:    cfg.Insecure,
	}
	kc.AuthInfos[contextName] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName}
	kc.CurrentContext = contextName
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}
