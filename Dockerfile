# syntax=docker/dockerfile:1
#
# slo-canary: a static binary on a distroless, non-root base.
#
#   docker build \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) \
#     -t ghcr.io/slo-scout/slo-canary:$(git describe --tags --always) .
#
# VERSION and REVISION are stamped into the binary and exported as
# slo_canary_build_info{version,revision,goversion}. The test in ./deploy runs
# this file's `go build` line as it stands.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# Modules first, so that a source change reuses the download layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
# Static (no cgo, so no libc at run time), reproducible paths, no symbol
# tables, the version stamped in.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/slo-scout/slo-canary/internal/version.Version=${VERSION} -X github.com/slo-scout/slo-canary/internal/version.Revision=${REVISION}" \
      -o /out/slo-canary ./cmd/slo-canary

# distroless static: CA certificates and tzdata, no shell, no package manager;
# the :nonroot tag runs as UID/GID 65532, as the Deployment expects.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/slo-canary /usr/local/bin/slo-canary
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/slo-canary"]
CMD ["run"]
