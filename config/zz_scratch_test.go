package config

import ("testing";"os";"path/filepath";"time";"strings";"strconv")

func TestScratch(t *testing.T) {
	files, _ := filepath.Glob(os.Getenv("CORPUS")+"/*")
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		lines := strings.SplitN(string(raw), "\n", 3)
		s := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
		data, err := strconv.Unquote(s)
		if err != nil { t.Log(err); continue }
		p := filepath.Join(t.TempDir(), "x.yaml")
		os.WriteFile(p, []byte(data), 0o600)
		start := time.Now()
		Load(p, nil)
		if d := time.Since(start); d > 20*time.Millisecond { t.Logf("%v %q", d, data) }
	}
}
