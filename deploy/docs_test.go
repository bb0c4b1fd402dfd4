package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// shellFences are the info strings of blocks meant to be pasted into a
// shell. Output samples use another (text, console) and are not run.
var shellFences = []string{"sh", "bash", "shell"}

// shellBlock is one fenced shell block of a Markdown file.
type shellBlock struct {
	where string // file:line of the opening fence
	body  string
}

// shellBlocks extracts the shell blocks of a Markdown file, indented ones
// (inside list items) included, their indentation removed.
func shellBlocks(t *testing.T, path string) []shellBlock {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		blocks []shellBlock
		cur    *shellBlock
		indent string
		fence  string
		lines  []string
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if fence == "" {
			if !strings.HasPrefix(trimmed, "```") && !strings.HasPrefix(trimmed, "~~~") {
				continue
			}
			indent = line[:len(line)-len(trimmed)]
			fence = trimmed[:3]
			info := strings.Fields(strings.TrimLeft(trimmed, fence[:1]))
			if len(info) > 0 && slices.Contains(shellFences, info[0]) {
				cur = &shellBlock{where: fmt.Sprintf("%s:%d", path, n)}
				lines = nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
			if cur != nil {
				cur.body = strings.Join(lines, "\n") + "\n"
				blocks = append(blocks, *cur)
			}
			cur, fence = nil, ""
			continue
		}
		if cur != nil {
			lines = append(lines, strings.TrimPrefix(line, indent))
		}
	}
	if fence != "" {
		t.Errorf("%s: a fence is never closed", path)
	}
	return blocks
}

// The stubbed tools, and the real programs a pasted block may use as they
// are. Anything else is "command not found": a block never runs a program
// this test did not choose.
var (
	stubbed     = []string{"kubectl", "docker", "helm", "go", "git", "slo-canary", "curl", "kcat", "promtool"}
	passThrough = []string{"cat", "mkdir", "ls", "grep", "sed", "head", "tail", "tr", "tee"}
)

// What the git stub answers, so the recorded docker calls can be checked.
const (
	stubGitVersion  = "v9.8.7-test"
	stubGitRevision = "0123456789abcdef0123456789abcdef01234567"
)

// call is one recorded invocation of a stub.
type call struct {
	where string // the block
	args  []string
}

func (c call) String() string { return c.where + ": " + strings.Join(c.args, " ") }

// stubBin writes the stubs and pass-through links into a directory that is
// the blocks' whole PATH. Each stub appends its name and arguments to
// $STUB_LOG (fields split by 0x1f, calls ended by 0x1e).
func stubBin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	stub := "#!" + bash + `
{ printf '%s' "${0##*/}"; for a in "$@"; do printf '\x1f%s' "$a"; done; printf '\x1e'; } >>"$STUB_LOG"
case "${0##*/} $1" in
"git describe") echo ` + stubGitVersion + ` ;;
"git rev-parse") echo ` + stubGitRevision + ` ;;
esac
exit 0
`
	for _, name := range stubbed {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(stub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range passThrough {
		if p, err := exec.LookPath(name); err == nil {
			if err := os.Symlink(p, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// runBlock runs b with bash as if pasted, in an empty directory, with only
// bin on PATH, stopping at the first failing command (a pasted line that
// fails is lost in the output), and returns the calls the stubs recorded.
func runBlock(t *testing.T, bin string, b shellBlock) ([]call, error) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	logFile := filepath.Join(work, ".stub-log")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "--noprofile", "--norc", "-e", "-o", "pipefail", "-s")
	cmd.Stdin = strings.NewReader(b.body)
	cmd.Dir = work
	cmd.Env = []string{"PATH=" + bin, "HOME=" + work, "STUB_LOG=" + logFile, "LANG=C"}
	out, runErr := cmd.CombinedOutput()
	if runErr != nil {
		runErr = fmt.Errorf("%s does not run as pasted: %v\n%s\nblock:\n%s", b.where, runErr, out, b.body)
	}
	data, err := os.ReadFile(logFile)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var calls []call
	for _, rec := range strings.Split(string(data), "\x1e") {
		if rec != "" {
			calls = append(calls, call{where: b.where, args: strings.Split(rec, "\x1f")})
		}
	}
	return calls, runErr
}

// flagValue returns the values of --name=v and --name v in args.
func flagValues(args []string, name string) []string {
	var vs []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			vs = append(vs, v)
		} else if a == name && i+1 < len(args) {
			vs = append(vs, args[i+1])
		}
	}
	return vs
}

// TestDocShellBlocks runs every shell block of the READMEs (and docs/) as a
// user would paste it, with the cluster and build tools replaced by stubs,
// and checks what they were asked to do: the Secret gets every key the
// StatefulSet reads under its real name, kubectl applies directories that
// exist, the image is built with the Dockerfile's version stamp and pushed
// under the same tag, and every slo-canary command line (go run included)
// is one the real binary accepts.
func TestDocShellBlocks(t *testing.T) {
	files := []string{filepath.Join(repoRoot, "README.md"), "README.md"}
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, docs...)
	bin := stubBin(t)
	var all, deployCalls []call
	for _, f := range files {
		for _, b := range shellBlocks(t, f) {
			calls, err := runBlock(t, bin, b)
			if err != nil {
				t.Error(err)
			}
			all = append(all, calls...)
			if f == "README.md" {
				deployCalls = append(deployCalls, calls...)
			}
		}
	}

	m := build(t, "overlays/slo-scout")
	secretKeys := map[string]bool{} // key -> required
	for _, e := range m.statefulSet.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			secretKeys[ref.Key] = ref.Optional == nil || !*ref.Optional
		}
	}
	df := parseDockerfile(t)
	image := strings.SplitN(m.statefulSet.Spec.Template.Spec.Containers[0].Image, ":", 2)[0]
	const module = "github.com/slo-scout/slo-canary"

	var canaryArgs [][]string // slo-canary command lines, for the binary
	for _, c := range all {
		args := c.args
		switch {
		case args[0] == "kubectl" && slices.Contains(args, "secret"):
			if !slices.Contains(args, "slo-canary-secrets") {
				t.Errorf("%s: the StatefulSet reads the Secret slo-canary-secrets", c)
			}
			if ns := flagValues(args, "-n"); !slices.Equal(ns, []string{"slo-scout"}) {
				t.Errorf("%s: namespace %v, want the overlay's slo-scout", c, ns)
			}
			got := map[string]bool{}
			for _, kv := range flagValues(args, "--from-literal") {
				k, v, _ := strings.Cut(kv, "=")
				got[k] = true
				if _, ok := secretKeys[k]; !ok {
					t.Errorf("%s: key %q is not one the StatefulSet reads (%v)", c, k, secretKeys)
				}
				if v == "" {
					t.Errorf("%s: key %q without a value", c, k)
				}
			}
			for k, required := range secretKeys {
				if required && !got[k] {
					t.Errorf("%s: lacks the required key %s", c, k)
				}
			}
		case args[0] == "kubectl" && (slices.Contains(args, "-k") || slices.Contains(args, "kustomize")):
			for _, dir := range append(flagValues(args, "-k"), flagValues(args, "kustomize")...) {
				if _, err := os.Stat(filepath.Join(repoRoot, dir, "kustomization.yaml")); err != nil {
					t.Errorf("%s: %s is not a kustomization of this repository", c, dir)
				}
			}
		case args[0] == "kubectl" && len(args) > 3 && args[3] == "rolebinding":
			if roles := flagValues(args, "--role"); len(roles) != 1 || !slices.ContainsFunc(all, func(o call) bool {
				return o.where == c.where && slices.Contains(o.args, "role") && slices.Contains(o.args, roles[0])
			}) {
				t.Errorf("%s: binds a role the same block does not create", c)
			}
		case args[0] == "docker" && len(args) > 1 && args[1] == "build":
			var stamped []string
			for _, ba := range flagValues(args, "--build-arg") {
				k, v, _ := strings.Cut(ba, "=")
				if _, ok := df.args[k]; !ok {
					t.Errorf("%s: the Dockerfile has no ARG %s", c, k)
				}
				if want := map[string]string{"VERSION": stubGitVersion, "REVISION": stubGitRevision}[k]; want != "" && v != want {
					t.Errorf("%s: %s=%q, want git's %q", c, k, v, want)
				}
				stamped = append(stamped, k)
			}
			if !slices.Contains(stamped, "VERSION") || !slices.Contains(stamped, "REVISION") {
				t.Errorf("%s: the version stamp (VERSION, REVISION) is not passed", c)
			}
			if tags := flagValues(args, "-t"); !slices.Equal(tags, []string{image + ":" + stubGitVersion}) {
				t.Errorf("%s: tags %v, want %s:<version>", c, tags, image)
			}
			if args[len(args)-1] != "." {
				t.Errorf("%s: the context must be the top of the checkout (.)", c)
			}
		case args[0] == "docker" && len(args) > 1 && args[1] == "push":
			if args[len(args)-1] != image+":"+stubGitVersion {
				t.Errorf("%s: pushes something other than the image built", c)
			}
		case args[0] == "go" && len(args) > 1 && args[1] == "install":
			pkg, _, _ := strings.Cut(args[len(args)-1], "@")
			if pkg != module+"/cmd/slo-canary" {
				t.Errorf("%s: installs %s, not the command %s/cmd/slo-canary", c, pkg, module)
			}
		case args[0] == "go" && len(args) > 2 && args[1] == "run":
			if args[2] != "./cmd/slo-canary" {
				t.Errorf("%s: go run %s, want ./cmd/slo-canary", c, args[2])
				continue
			}
			canaryArgs = append(canaryArgs, args[3:])
		case args[0] == "slo-canary":
			canaryArgs = append(canaryArgs, args[1:])
		}
	}

	// deploy/README.md says how to install, build and push, and install the
	// binary.
	for _, want := range [][]string{
		{"kubectl", "create", "secret"}, {"kubectl", "apply", "-k"},
		{"docker", "build"}, {"docker", "push"}, {"go", "install"},
	} {
		if !slices.ContainsFunc(deployCalls, func(c call) bool {
			return c.args[0] == want[0] && !slices.ContainsFunc(want[1:], func(w string) bool { return !slices.Contains(c.args, w) })
		}) {
			t.Errorf("deploy/README.md runs no %s", strings.Join(want, " "))
		}
	}

	// Every slo-canary command line parses: the subcommand exists and takes
	// those flags (--help stops it before it does anything).
	canary := canaryBinary(t)
	for _, args := range canaryArgs {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, canary, append(slices.Clone(args), "--help")...)
		cmd.Dir = t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("slo-canary %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		cancel()
	}
}

// TestShellBlocksCatchBrokenPaste: the harness records a continued command
// as one call, and fails on a continuation after a line that ends in a
// comment, as deploy/README.md's install snippet once had.
func TestShellBlocksCatchBrokenPaste(t *testing.T) {
	bin := stubBin(t)
	good := shellBlock{where: "good", body: "kubectl create secret generic s \\\n  --from-literal=a=1 \\\n  --from-literal=b=2\n"}
	calls, err := runBlock(t, bin, good)
	if err != nil || len(calls) != 1 || !slices.Equal(calls[0].args, []string{"kubectl", "create", "secret", "generic", "s", "--from-literal=a=1", "--from-literal=b=2"}) {
		t.Errorf("recorded %v, %v", calls, err)
	}
	bad := shellBlock{where: "bad", body: "kubectl create secret generic s \\\n  --from-literal=a=1   # a comment\n  --from-literal=b=2\n"}
	if calls, err := runBlock(t, bin, bad); err == nil {
		t.Errorf("a broken continuation ran cleanly, recording %v", calls)
	}
}
