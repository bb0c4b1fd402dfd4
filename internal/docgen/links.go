package docgen

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

var (
	inlineLink = regexp.MustCompile(`\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	codeSpan   = regexp.MustCompile("`[^`]*`")
	hasScheme  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// BrokenLinks checks the relative links of the Markdown files (paths
// relative to root): each must name a file or directory that exists, and a
// #fragment must name a heading of the Markdown file it points into. Links
// with a scheme (https:, mailto:) are not followed. It returns one line per
// broken link, "file:line: target: why".
func BrokenLinks(root string, files []string) ([]string, error) {
	var broken []string
	anchors := map[string]map[string]bool{} // by file, relative to root
	anchorsOf := func(rel string) (map[string]bool, error) {
		if a, ok := anchors[rel]; ok {
			return a, nil
		}
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		a := Anchors(data)
		anchors[rel] = a
		return a, nil
	}
	for _, file := range files {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			return nil, err
		}
		for n, line := range proseLines(data) {
			for _, m := range inlineLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
				target := m[1]
				if hasScheme.MatchString(target) {
					continue
				}
				path, frag, _ := strings.Cut(target, "#")
				rel := file
				if path != "" {
					rel = filepath.ToSlash(filepath.Join(filepath.Dir(file), filepath.FromSlash(path)))
					if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
						broken = append(broken, fmt.Sprintf("%s:%d: %s: no such file or directory", file, n+1, target))
						continue
					}
				}
				if frag == "" {
					continue
				}
				if !strings.HasSuffix(rel, ".md") {
					broken = append(broken, fmt.Sprintf("%s:%d: %s: a fragment into a file that is not Markdown", file, n+1, target))
					continue
				}
				a, err := anchorsOf(rel)
				if err != nil {
					return nil, err
				}
				if !a[frag] {
					broken = append(broken, fmt.Sprintf("%s:%d: %s: no heading with that anchor in %s", file, n+1, target, rel))
				}
			}
		}
	}
	return broken, nil
}

// Anchors returns the anchors GitHub gives the headings of a Markdown
// document: lower case, punctuation dropped, spaces as hyphens, and -1, -2,
// ... on repeats.
func Anchors(doc []byte) map[string]bool {
	anchors := map[string]bool{}
	seen := map[string]int{}
	for _, line := range proseLines(doc) {
		text, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if !strings.HasPrefix(line, "#") || !ok {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(strings.TrimSpace(text)) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		slug := b.String()
		if k := seen[slug]; k > 0 {
			anchors[fmt.Sprintf("%s-%d", slug, k)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// proseLines returns the document's lines with those of fenced code blocks
// blanked, so that line numbers stay right.
func proseLines(doc []byte) []string {
	lines := strings.Split(string(doc), "\n")
	fenced := false
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			lines[i] = ""
			continue
		}
		if fenced {
			lines[i] = ""
		}
	}
	return lines
}
