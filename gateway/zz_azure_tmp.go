package gateway

import "github.com/tollgate/tollgate/providers"

func setAzure(b *providers.Config, deployment, version string) {}
