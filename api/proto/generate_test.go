// Package proto_test checks that the generated Go code under api/proto is what
// `make proto` produces from the .proto files today.
package proto_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratedCodeIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go is not on PATH; cannot run buf through go tool")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	cmd := exec.Command("go", "tool", "buf", "generate", "--output", out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool buf generate: %v\n%s", err, b)
	}

	checkedIn := goFiles(t, filepath.Join(root, "api", "proto"))
	generated := goFiles(t, filepath.Join(out, "api", "proto"))
	if len(generated) == 0 {
		t.Fatal("buf generated no Go files")
	}
	for name, want := range generated {
		got, ok := checkedIn[name]
		if !ok {
			t.Errorf("%s is generated but not checked in: run make proto", name)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what make proto generates: run make proto", name)
		}
	}
	for name := range checkedIn {
		if _, ok := generated[name]; !ok {
			t.Errorf("%s is checked in but no longer generated: remove it", name)
		}
	}
}

// goFiles returns the generated Go files below dir by path relative to dir.
func goFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".pb.go") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[rel] = b
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return files
}
