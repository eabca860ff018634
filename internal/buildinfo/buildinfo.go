// Package buildinfo names the running build: what `tollgate version` prints and what
// spans carry as service.version, so that the two always agree.
package buildinfo

import (
	"runtime/debug"
	"sync/atomic"
)

// given is the version given at link time (-ldflags "-X main.version=…"), when the
// command has said so (SetGiven).
var given atomic.Pointer[string]

// SetGiven records the version the binary was given at link time; "dev" or "" is none.
func SetGiven(v string) { given.Store(&v) }

// Version is VersionOf this build.
func Version() string {
	set := "dev"
	if p := given.Load(); p != nil {
		set = *p
	}
	bi, ok := debug.ReadBuildInfo()
	return VersionOf(set, bi, ok)
}

// VersionOf is a build's version: set, the version given at link time, when there is
// one; else the module version the build recorded (`go install …@v1.2.3`, or for a
// build in a git checkout the pseudo-version of its commit, v0.0.0-TIME-COMMIT, +dirty
// with changes); else, where only the commit was recorded, "dev+" and the commit (12
// hex digits), with "-dirty" when the checkout had changes; else "dev" (`go run`, which
// records no commit, or a build outside git or with -buildvcs=false).
func VersionOf(set string, bi *debug.BuildInfo, ok bool) string {
	if set == "" {
		set = "dev"
	}
	if set != "dev" || !ok || bi == nil {
		return set
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return set
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	out := "dev+" + rev
	if modified == "true" {
		out += "-dirty"
	}
	return out
}
