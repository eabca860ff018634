package main

import "github.com/tollgate/tollgate/internal/buildinfo"

// buildVersion is what `tollgate version` prints (buildinfo.VersionOf): the version
// given at build time with -ldflags "-X main.version=…", else what the build recorded.
func buildVersion() string {
	buildinfo.SetGiven(version)
	return buildinfo.Version()
}
