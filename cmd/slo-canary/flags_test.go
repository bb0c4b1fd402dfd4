package main

import (
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/slo-scout/slo-canary/config"
)

// TestQueriesFlagsAct: `queries` lists only flags that act there. Its runs
// serve no HTTP and send no marker, so --listen, --kafka-brokers, --instance
// and --rate (markers per second) are not its flags: --help does not list
// them and giving one is a usage error.
func TestQueriesFlagsAct(t *testing.T) {
	t.Parallel()
	code, help, errs := runCLI(t, "queries", "--help")
	if code != 0 || !strings.Contains(help, "--log-level") || !strings.Contains(help, "--once") {
		t.Fatalf("queries --help: exit %d\n%s%s", code, help, errs)
	}
	for _, f := range []string{"--listen", "--kafka-brokers", "--instance", "--rate"} {
		if strings.Contains(help, f) {
			t.Errorf("queries --help lists %s, which does nothing there:\n%s", f, help)
		}
		// --run nope: were the flag taken, no run would start.
		code, _, errs := runCLI(t, "queries", "--once", "--run", "nope", f, "x")
		if code != exitConfig || !strings.Contains(errs, "unknown flag: "+f) {
			t.Errorf("queries --once --run nope %s x: exit %d, stderr %q; want 2, unknown flag", f, code, errs)
		}
	}
}

// TestConfigFlagsDocumented: docs/configuration.md's sentences "Flags of `x`
// and `y`: `--a`, `--b`." name exactly the config flags (those of
// config.BindFlags) each command has, and the commands it says take the file
// and the environment only have none.
func TestConfigFlagsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(doc)), " ")
	all := pflag.NewFlagSet("all", pflag.ContinueOnError)
	config.BindFlags(all)
	configFlags := func(cmd *cobra.Command) []string {
		var names []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			// Same name and usage: burst's --rate and the demo's --listen
			// are their own.
			if c := all.Lookup(f.Name); c != nil && c.Usage == f.Usage {
				names = append(names, "--"+f.Name)
			}
		})
		slices.Sort(names)
		return names
	}
	root := newRootCmd(io.Discard, io.Discard)
	command := func(name string) *cobra.Command {
		c, _, err := root.Find([]string{name})
		if err != nil || c == root {
			t.Fatalf("docs/configuration.md names a command %q that does not exist", name)
		}
		return c
	}
	backticked := regexp.MustCompile("`([^`]+)`")
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile(`Flags of ([^:]+): (.*?)\.(?: |$)`).FindAllStringSubmatch(text, -1) {
		var want []string
		for _, f := range backticked.FindAllStringSubmatch(m[2], -1) {
			want = append(want, f[1])
		}
		slices.Sort(want)
		for _, c := range backticked.FindAllStringSubmatch(m[1], -1) {
			documented[c[1]] = true
			if got := configFlags(command(c[1])); !slices.Equal(got, want) {
				t.Errorf("docs/configuration.md: %q: %s has config flags %v", m[0], c[1], got)
			}
		}
	}
	m := regexp.MustCompile("((?:`[a-z-]+`(?:, | and )?)+) take the file and the environment only").FindStringSubmatch(text)
	if m == nil {
		t.Fatal("docs/configuration.md no longer says which commands take the file and the environment only")
	}
	for _, c := range backticked.FindAllStringSubmatch(m[1], -1) {
		documented[c[1]] = true
		if got := configFlags(command(c[1])); len(got) > 0 {
			t.Errorf("docs/configuration.md says %s takes the file and the environment only; it has %v", c[1], got)
		}
	}
	for _, c := range root.Commands() {
		if len(configFlags(c)) > 0 && !documented[c.Name()] {
			t.Errorf("%s has config flags %v that docs/configuration.md does not list", c.Name(), configFlags(c))
		}
	}
	if len(documented) < 5 {
		t.Errorf("found only %v in docs/configuration.md", documented)
	}
}
