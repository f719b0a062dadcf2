package sops

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzNames are the file names a fuzzed input is read as: one per store.
var fuzzNames = []string{"f.yaml", "f.json", "f.env", "f.ini", "f.bin"}

// FuzzDecrypt feeds arbitrary content through the detection and, when it looks encrypted,
// the stores, the data key and the MAC check, as every file of a pull request goes: no input
// may panic, a plain file must come back unchanged, and a failure must be a *DecryptError that
// holds no key material. The seeds (testdata/seed.*) were encrypted by the sops CLI for
// testdata/fuzz-identity.txt, a throwaway key, so mutations reach decryption too.
func FuzzDecrypt(f *testing.F) {
	idFile, err := os.ReadFile(filepath.Join("testdata", "fuzz-identity.txt"))
	if err != nil {
		f.Fatal(err)
	}
	keys, err := ParseAgeIdentities(idFile)
	if err != nil {
		f.Fatal(err)
	}
	seeds, err := filepath.Glob(filepath.Join("testdata", "seed.*"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		for i, n := range fuzzNames {
			if filepath.Ext(n) == filepath.Ext(s) {
				f.Add(uint8(i), data)
			}
		}
	}
	f.Add(uint8(0), []byte("mac: ENC[AES256_GCM,data:,iv:,tag:,type:str]\nsops: {}\n"))
	f.Add(uint8(1), []byte(`{"sops": {"mac": "ENC[AES256_GCM,data:x]", "age": [{}]}}`))
	f.Add(uint8(2), []byte("sops_mac=ENC[AES256_GCM,data:x]\nsops_age__list_0__map_enc=x\n"))
	secret := strings.TrimSpace(string(idFile[bytes.Index(idFile, []byte("AGE-SECRET-KEY-1")):]))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := fuzzNames[int(which)%len(fuzzNames)]
		for _, k := range []*Keys{keys, nil} {
			out, encrypted, err := decrypt(name, data, k)
			if err != nil {
				var de *DecryptError
				if !errors.As(err, &de) || !encrypted {
					t.Fatalf("%s: error %v is not a *DecryptError of an encrypted file", name, err)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("%s: error holds the identity: %v", name, err)
				}
				continue
			}
			if !encrypted && !bytes.Equal(out, data) {
				t.Fatalf("%s: a file taken as plain came back changed", name)
			}
		}
	})
}
