//go:build !unix

package cachedir

import "io/fs"

// writeBitsMatter: outside Unix (Windows) the mode's permission bits do
// not say who may write; access lists do, and they are not checked here.
const writeBitsMatter = false

// checkOwner does nothing here: there is no owner uid to compare.
func checkOwner(string, fs.FileInfo) error { return nil }
