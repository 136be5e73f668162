// Package references holds the test that every reference in the tree leads somewhere: a
// reader who follows a markdown link, a repository path or a .md name in a comment or a doc
// has to find the file (and, for a link with an anchor, the heading). The package has no
// code of its own.
package references
