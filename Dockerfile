# Tollgate's container image: the gateway and mockllm, built static, on distroless.
#   docker build --build-arg VERSION=v1 -t tollgate:v1 .
#   docker run --rm -p 8080:8080 tollgate:v1           # the default config (mock backends)
# Mount your own config over /etc/tollgate (deploy/kubernetes/ does, from a ConfigMap).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tollgate ./cmd/tollgate && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mockllm ./cmd/mockllm

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tollgate /out/mockllm /usr/local/bin/
COPY configs/tollgate.yaml /etc/tollgate/tollgate.yaml
# API and admin (/healthz, /readyz, /metrics). The default config's admin listens on
# loopback only: a config for a cluster listens on :9090 with server.admin_token set.
EXPOSE 8080 9090
# distroless's nonroot user, by number: Kubernetes' runAsNonRoot cannot check a name.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["serve", "--config", "/etc/tollgate/tollgate.yaml"]
