package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagsToBlocks(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       func(dir string) []string
		wantBlocks int
		wantErr    string
	}{
		{
			name: "data dir, two replicas",
			args: func(dir string) []string {
				return []string{"--output.dir", dir, "--targets", "2", "--start", "2026-03-01T01:00:00Z", "--end", "2026-03-01T06:00:00Z",
					"--replicas", "2", "--external-label", "cluster=c1", "--no-native-histograms"}
			},
			wantBlocks: 6, // 01-02, 02-04, 04-06 for each replica
		},
		{
			name: "bucket",
			args: func(dir string) []string {
				return []string{"--objstore.config", "type: FILESYSTEM\nconfig:\n  directory: " + dir, "--targets", "1",
					"--end", "2026-03-01T04:00:00Z", "--duration", "4h", "--block-duration", "4h"}
			},
			wantBlocks: 1,
		},
		{
			name: "outage of replica b",
			args: func(dir string) []string {
				return []string{"--output.dir", dir, "--targets", "1", "--start", "2026-03-01T00:00:00Z", "--end", "2026-03-01T06:00:00Z",
					"--replicas", "2", "--outage", "b@2026-03-01T01:50:00Z+2h20m"}
			},
			wantBlocks: 5, // b's 02-04 block has no samples at all
		},
		{name: "outage of a missing replica", args: func(dir string) []string {
			return []string{"--output.dir", dir, "--replicas", "2", "--outage", "c@2026-03-01T01:50:00Z+1h"}
		}, wantErr: "no replica"},
		{name: "no output", args: func(string) []string { return []string{"--targets", "1"} }, wantErr: "exactly one"},
		{name: "bad end", args: func(dir string) []string { return []string{"--output.dir", dir, "--end", "yesterday"} }, wantErr: "--end"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o, err := parseFlags(tc.args(dir))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := run(context.Background(), slog.New(slog.DiscardHandler), o, &out); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != tc.wantBlocks {
				t.Fatalf("printed %d blocks, want %d:\n%s", len(lines), tc.wantBlocks, out.String())
			}
			for _, l := range lines {
				id := strings.Fields(l)[0]
				matches, _ := filepath.Glob(filepath.Join(dir, "*", id, "meta.json"))
				direct, _ := filepath.Glob(filepath.Join(dir, id, "meta.json"))
				if len(matches)+len(direct) != 1 {
					t.Fatalf("block %s printed but its meta.json is not under %s", id, dir)
				}
				if !strings.Contains(l, "samples=") || strings.Contains(l, "samples=0\t") {
					t.Fatalf("line without samples: %q", l)
				}
			}
		})
	}
}
