package cli

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteBenchSection(t *testing.T) {
	for _, tc := range []struct {
		name, old, want string
	}{
		{"new file", "", benchSection + "\n\nbody\n"},
		{"before the first section", "# Benchmarks\n\nintro\n\n## Old\n\nold\n",
			"# Benchmarks\n\nintro\n\n" + benchSection + "\n\nbody\n\n## Old\n\nold\n"},
		{"replaces its own section", "# B\n\n" + benchSection + "\n\nstale\nlines\n\n## Old\n\nold\n",
			"# B\n\n" + benchSection + "\n\nbody\n\n## Old\n\nold\n"},
		{"its section last", "# B\n\n## Old\n\nold\n\n" + benchSection + "\n\nstale\n",
			"# B\n\n## Old\n\nold\n\n" + benchSection + "\n\nbody\n"},
		{"no sections", "# B\n", "# B\n" + benchSection + "\n\nbody\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := writeBenchSection(path, "\nbody\n\n"); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}
