package deploy

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// The version and revision the test build stamps in, as docker build
// --build-arg would; the end-to-end test finds them in slo_canary_build_info.
const (
	testVersion  = "v0.0.0-deploy-test"
	testRevision = "0123456789abcdef"
)

// dockerfile is what the tests read of ../Dockerfile.
type dockerfile struct {
	args   map[string]string // ARG defaults
	froms  []string          // FROM lines, in order
	users  []string          // USER lines
	runs   []string          // RUN commands, continuation lines joined
	copies []string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := dockerfile{args: map[string]string{}}
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if body, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		instr := cur.String()
		cur.Reset()
		kw, rest, _ := strings.Cut(instr, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(kw) {
		case "ARG":
			name, def, _ := strings.Cut(rest, "=")
			df.args[name] = def
		case "FROM":
			df.froms = append(df.froms, rest)
		case "USER":
			df.users = append(df.users, rest)
		case "RUN":
			df.runs = append(df.runs, rest)
		case "COPY":
			df.copies = append(df.copies, rest)
		}
	}
	return df
}

// goBuildLine is the Dockerfile's RUN line that builds the binary.
func (df dockerfile) goBuildLine(t *testing.T) string {
	t.Helper()
	var found []string
	for _, r := range df.runs {
		if strings.Contains(r, "go build") {
			found = append(found, r)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one RUN with go build in the Dockerfile, found %d", len(found))
	}
	return found[0]
}

// TestDockerfile checks the image's shape: a multi-stage build of a static,
// trimmed, version-stamped binary onto a minimal non-root runtime image.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	run := df.goBuildLine(t)
	for _, want := range []string{
		"CGO_ENABLED=0 ", "-trimpath", `-ldflags "-s -w `,
		"-X github.com/slo-scout/slo-canary/internal/version.Version=${VERSION}",
		"-X github.com/slo-scout/slo-canary/internal/version.Revision=${REVISION}",
		"-o /out/slo-canary ./cmd/slo-canary",
	} {
		if !strings.Contains(run, want) {
			t.Errorf("the go build line lacks %q:\n%s", want, run)
		}
	}
	for _, a := range []string{"VERSION", "REVISION"} {
		if _, ok := df.args[a]; !ok {
			t.Errorf("no ARG %s: the version is stamped from build args", a)
		}
	}
	if len(df.froms) < 2 || !strings.HasSuffix(df.froms[0], " AS build") {
		t.Fatalf("want a multi-stage build whose first stage is `AS build`, got %q", df.froms)
	}
	final := df.froms[len(df.froms)-1]
	switch {
	case strings.HasPrefix(final, "gcr.io/distroless/static") && strings.Contains(final, ":nonroot"):
	case final == "scratch":
	default:
		t.Errorf("runtime image %q: want distroless static :nonroot, or scratch", final)
	}
	if len(df.users) == 0 || regexp.MustCompile(`^(0|root)\b`).MatchString(df.users[len(df.users)-1]) {
		t.Errorf("the runtime image must end on a non-root USER, got %q", df.users)
	}
	var copied bool
	for _, c := range df.copies {
		copied = copied || c == "--from=build /out/slo-canary /usr/local/bin/slo-canary"
	}
	if !copied {
		t.Errorf("the runtime stage does not copy the built binary: %q", df.copies)
	}

	bin := canaryBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has a program interpreter: it is dynamically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("the binary links %v (%v): want none", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -s did not apply")
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), testVersion) || !strings.Contains(string(out), testRevision) {
		t.Errorf("version output %q lacks the stamped version %s and revision %s", out, testVersion, testRevision)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// canaryBinary builds slo-canary once per test process by running the
// Dockerfile's own go build line, in a copy of the build context the
// .dockerignore leaves, with the build args set as docker would pass them.
// Only the output directory (/out) is moved into a temporary directory.
func canaryBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		df := parseDockerfile(t)
		run := df.goBuildLine(t)
		dir, err := os.MkdirTemp("", "slo-canary-docker-")
		if err != nil {
			binErr = err
			return
		}
		// Removed at exit by TestMain.
		buildDirs = append(buildDirs, dir)
		ctxDir := filepath.Join(dir, "src")
		if err := copyContext(filepath.Join(repoRoot), ctxDir); err != nil {
			binErr = err
			return
		}
		out := filepath.Join(dir, "out")
		cmd := exec.Command("sh", "-c", strings.Replace(run, "/out/", out+"/", 1))
		cmd.Dir = ctxDir
		// ARGs become environment variables of RUN; CGO_ENABLED is set on
		// the line itself.
		cmd.Env = append(os.Environ(), "VERSION="+testVersion, "REVISION="+testRevision)
		if b, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("the Dockerfile's build line failed: %v\n%s\n%s", err, run, b)
			return
		}
		binPath = filepath.Join(out, "slo-canary")
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	if binPath == "" {
		t.Fatal("building slo-canary failed in an earlier test")
	}
	return binPath
}

var buildDirs []string

func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range buildDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

// dockerignore reads ../.dockerignore. Docker's patterns are anchored at the
// context root; "**" matches any number of directories.
func dockerignore(root string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return nil, err
	}
	var pats []string
	for _, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") {
			return nil, fmt.Errorf(".dockerignore: exceptions (%s) are not supported by this test", l)
		}
		pats = append(pats, strings.TrimPrefix(l, "/"))
	}
	return pats, nil
}

func ignored(pats []string, rel string) bool {
	for _, p := range pats {
		if sub, ok := strings.CutPrefix(p, "**/"); ok {
			parts := strings.Split(rel, "/")
			for i := range parts {
				if m, _ := filepath.Match(sub, strings.Join(parts[i:], "/")); m {
					return true
				}
			}
			continue
		}
		if m, _ := filepath.Match(p, rel); m {
			return true
		}
	}
	return false
}

// copyContext copies the build context: the repository minus what
// .dockerignore excludes, so that the build proves the exclusions are safe.
func copyContext(root, dst string) error {
	pats, err := dockerignore(root)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel != "." && ignored(pats, rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// TestDockerignore pins the matcher the build context copy relies on.
func TestDockerignore(t *testing.T) {
	pats, err := dockerignore(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		".git": true, "canary/service.go": false, "canary/service_test.go": true, "config/testdata": true,
		"deploy": true, "go.mod": false, "go.sum": false, "README.md": true, "canary/telemetry_event.avsc": false,
		"cmd/slo-canary/main.go": false,
	} {
		if got := ignored(pats, rel); got != want {
			t.Errorf("ignored(%s) = %v, want %v", rel, got, want)
		}
	}
}
