package references

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReferencesExist scans every .go and .md file of the tree for
//
//   - relative markdown links in .md files, [text](path#anchor): the path must exist
//     relative to the file and, for a .md target, the anchor must be one of its headings;
//   - repository paths in any text, such as docs/sst-protocol.md or cmd/sstemu/serve.go:
//     a path under cmd/, pkg/, e2e/, docs/, scripts/ or .ci/ naming a file (its last part
//     has an extension, or it is under scripts/ or .ci/) must exist from the repository
//     root. Directories are not checked, so a doc may name a package that is being added;
//   - bare markdown file names, such as protocol.md: the file must exist next to the file
//     that names it, in docs/ or at the root.
//
// A line that names the upstream repository (twhpcedu/acalsim) cites that repository's
// files, not this one's, and is skipped for repository paths and .md names; so are files
// under a testdata directory, whose READMEs describe third-party data by its source
// repository's paths (their markdown links are still checked). This file is skipped too:
// its test cases name missing files on purpose.

// repoRoot is the repository root, seen from this package's directory.
const repoRoot = "../.."

var (
	// mdLink matches a markdown link or image target, with an optional title.
	mdLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// repoPath matches a path from the repository root, not inside a longer path or URL.
	repoPath = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])((?:cmd|pkg|e2e|docs|scripts|\.ci)/[A-Za-z0-9_./-]*[A-Za-z0-9_])`)
	// bareMD matches a markdown file name that is not part of a path.
	bareMD = regexp.MustCompile(`(?:^|[^A-Za-z0-9_./-])([A-Za-z0-9_-]+\.md)\b`)
	// heading matches an ATX markdown heading.
	heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	// inlineLink matches [text](target) inside a heading, which renders as text.
	inlineLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// selfName is this file, relative to the root; its test cases are not references.
const selfName = "internal/references/references_test.go"

// upstreamRepos are repositories whose files the tree cites by their own paths.
var upstreamRepos = []string{"twhpcedu/acalsim"}

// skipDirs are directories that hold no source or docs of the project.
var skipDirs = map[string]bool{".git": true, "bin": true, "node_modules": true}

// brokenRef is one reference that leads nowhere.
type brokenRef struct {
	file   string // relative to the root
	line   int
	ref    string
	reason string
}

func (b brokenRef) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", b.file, b.line, b.ref, b.reason)
}

// anchors returns the heading anchors of a markdown file as GitHub renders them.
func anchors(path string) (map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	seen := map[string]int{}
	fenced := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		m := heading.FindStringSubmatch(line)
		if fenced || m == nil {
			continue
		}
		slug := slugify(inlineLink.ReplaceAllString(m[1], "$1"))
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out, sc.Err()
}

// slugify is GitHub's heading anchor: lower case, letters, digits, '-' and '_' kept,
// spaces turned into '-', everything else dropped.
func slugify(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// isFilePath reports whether a repository path names a file rather than a directory.
func isFilePath(p string) bool {
	return strings.Contains(filepath.Base(p), ".") || strings.HasPrefix(p, "scripts/") || strings.HasPrefix(p, ".ci/")
}

// checkReferences scans the .go and .md files under root and returns every reference that
// leads nowhere.
func checkReferences(root string) ([]brokenRef, error) {
	var broken []brokenRef
	anchorCache := map[string]map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDirs[d.Name()] {
				return filepath.SkipDir
			}
			return nil
		}
		ext := filepath.Ext(path)
		if ext != ".go" && ext != ".md" {
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if filepath.ToSlash(rel) == selfName {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		thirdParty := slices.Contains(strings.Split(filepath.ToSlash(rel), "/"), "testdata")
		for i, line := range strings.Split(string(data), "\n") {
			add := func(ref, reason string) {
				broken = append(broken, brokenRef{file: filepath.ToSlash(rel), line: i + 1, ref: ref, reason: reason})
			}
			if ext == ".md" {
				for _, m := range mdLink.FindAllStringSubmatch(line, -1) {
					if reason := checkLink(path, m[1], anchorCache); reason != "" {
						add(m[1], reason)
					}
				}
				line = mdLink.ReplaceAllString(line, "]()") // checked as links, not again below
			}
			if upstream(line) || thirdParty {
				continue
			}
			for _, m := range repoPath.FindAllStringSubmatch(line, -1) {
				p := strings.TrimRight(m[1], ".")
				if !isFilePath(p) {
					continue
				}
				if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
					add(p, "no such file in the repository")
				}
			}
			for _, m := range bareMD.FindAllStringSubmatch(line, -1) {
				if !existsAny(m[1], filepath.Dir(path), filepath.Join(root, "docs"), root) {
					add(m[1], "no such file next to it, in docs/ or at the root")
				}
			}
		}
		return nil
	})
	return broken, err
}

// existsAny reports whether a file called name exists in one of dirs.
func existsAny(name string, dirs ...string) bool {
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return true
		}
	}
	return false
}

// upstream reports whether line cites another repository.
func upstream(line string) bool {
	for _, r := range upstreamRepos {
		if strings.Contains(strings.ToLower(line), r) {
			return true
		}
	}
	return false
}

// checkLink checks one markdown link target of the file at from and returns why it is
// broken, or "" when it is not (or is not a relative link).
func checkLink(from, target string, cache map[string]map[string]bool) string {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return ""
	}
	file, anchor, _ := strings.Cut(target, "#")
	dest := from
	if file != "" {
		dest = filepath.Join(filepath.Dir(from), filepath.FromSlash(file))
		if _, err := os.Stat(dest); err != nil {
			return "no such file"
		}
	}
	if anchor == "" || filepath.Ext(dest) != ".md" {
		return ""
	}
	as, ok := cache[dest]
	if !ok {
		var err error
		if as, err = anchors(dest); err != nil {
			return err.Error()
		}
		cache[dest] = as
	}
	if !as[anchor] {
		return "no heading with anchor #" + anchor
	}
	return ""
}

func TestReferencesExist(t *testing.T) {
	_, err := os.Stat(filepath.Join(repoRoot, "go.mod"))
	require.NoError(t, err, "the repository root holds go.mod")
	broken, err := checkReferences(repoRoot)
	require.NoError(t, err)
	for _, b := range broken {
		t.Error(b)
	}
}

// TestCheckReferences runs the checker on small trees with one reference each, to show it
// finds what it must and accepts what it may.
func TestCheckReferences(t *testing.T) {
	tests := []struct {
		name string
		file string // path of the referring file
		text string
		want []string // broken references, as ref
	}{
		{"link to an existing doc", "docs/a.md", "see [b](b.md)", nil},
		{"link to a missing doc", "docs/a.md", "see [c](c.md)", []string{"c.md"}},
		{"link to an existing heading", "docs/a.md", "see [b](b.md#the-driver-devsstn-layer-3)", nil},
		{"link to a missing heading", "docs/a.md", "see [b](b.md#nope)", []string{"b.md#nope"}},
		{"anchor in the same file", "docs/a.md", "# Top\n[up](#top)", nil},
		{"missing anchor in the same file", "docs/a.md", "# Top\n[up](#bottom)", []string{"#bottom"}},
		{"link up to a source file", "docs/a.md", "[code](../pkg/x/x.go)", nil},
		{"URL", "docs/a.md", "[web](https://example.com/docs/nope.md)", nil},
		{"mention in Go", "pkg/x/x.go", "// see docs/b.md §The driver", nil},
		{"missing mention in Go", "pkg/x/x.go", "// see docs/protocol.md", []string{"docs/protocol.md"}},
		{"missing source file in a doc", "README.md", "start at `cmd/tool/serve.go`", []string{"cmd/tool/serve.go"}},
		{"directory, not checked", "README.md", "then `pkg/stack`", nil},
		{"upstream citation", "pkg/x/x.go", "// ACALSim's docs/CUSTOM_SST_OPERATORS.md in twhpcedu/acalsim", nil},
		{"trailing full stop", "pkg/x/x.go", "// see docs/b.md.", nil},
		{"bare name of a doc", "pkg/x/x.go", "// the layout of b.md", nil},
		{"bare name of a missing doc", "pkg/x/x.go", "// the layout of protocol.md", []string{"protocol.md"}},
		{"bare name next to the file", "docs/a.md", "as in a.md", nil},
		{"root-relative link reported once", "README.md", "[c](docs/c.md)", []string{"docs/c.md"}},
		{"third-party data's source paths", "pkg/x/testdata/d/README.md", "from `scripts/other/data.csv` of their repository", nil},
		{"third-party data's broken link", "pkg/x/testdata/d/README.md", "see [data](data.csv)", []string{"data.csv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			write := func(rel, text string) {
				p := filepath.Join(root, filepath.FromSlash(rel))
				require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
				require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
			}
			write("docs/b.md", "# B\n\n## The driver: /dev/sstN (layer 3)\n")
			write("pkg/x/x.go", "package x\n")
			write(tt.file, tt.text)
			broken, err := checkReferences(root)
			require.NoError(t, err)
			var got []string
			for _, b := range broken {
				got = append(got, b.ref)
			}
			assert.Equal(t, tt.want, got)
		})
	}
}
