package component

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name    string
		files   []string
		want    int64
		ok, err bool
	}{
		{"v2 limit", []string{write("v2", "1073741824\n")}, 1 << 30, true, false},
		{"v2 unlimited", []string{write("v2max", "max\n")}, 0, false, false},
		{"v1 after a missing v2", []string{missing, write("v1", "536870912\n")}, 512 << 20, true, false},
		{"v1 unlimited", []string{write("v1max", "9223372036854771712\n")}, 0, false, false},
		{"no cgroup", []string{missing}, 0, false, false},
		{"garbage", []string{write("bad", "lots\n")}, 0, false, true},
	} {
		got, ok, err := cgroupMemoryLimit(tc.files)
		if got != tc.want || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%s: got %d %v %v, want %d %v err=%v", tc.name, got, ok, err, tc.want, tc.ok, tc.err)
		}
	}
}

func TestAutoGoMemLimitRatioValidated(t *testing.T) {
	app, f := NewApp("test", "", false)
	if _, err := app.Parse([]string{"--auto-gomemlimit.ratio=1.5"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err == nil {
		t.Fatal("a ratio above 1 must be refused")
	}
	if _, err := app.Parse([]string{"--no-auto-gomemlimit", "--auto-gomemlimit.ratio=1.5"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Validate(); err != nil {
		t.Fatalf("with --no-auto-gomemlimit the ratio does not matter: %v", err)
	}
}
