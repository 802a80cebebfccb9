# Multi-stage build: a static binary on a distroless base, running as
# non-root (uid 65532). docker and podman take the same arguments:
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t ferry .
#   docker run -p 8080:8080 ferry
# The base images are arguments so that a build without a registry (CI
# here, an air-gapped plant) can name local stand-ins; ./scripts/test does.
ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
# .git is not copied (.dockerignore), so the revision comes in as an
# argument for `ferry version`.
ARG REVISION=
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/ferry ./cmd/ferry \
 && mkdir -p /out/data

FROM ${BASE_IMAGE}
COPY --from=build /out/ferry /usr/local/bin/ferry
# The data directory is the non-root user's: an empty volume is created
# from it with its owner, so the spool and seq files can be written.
COPY --from=build --chown=65532:65532 /out/data /var/lib/ferry
USER 65532:65532
WORKDIR /var/lib/ferry
VOLUME ["/var/lib/ferry"]
EXPOSE 8080 1883
ENTRYPOINT ["/usr/local/bin/ferry"]
# With no config, the demo runs; mount one at /etc/ferry/ferry.yaml otherwise:
#   docker run -v $PWD/ferry.yaml:/etc/ferry/ferry.yaml ferry run -c /etc/ferry/ferry.yaml --admin-addr 0.0.0.0:8080
CMD ["run", "--admin-addr", "0.0.0.0:8080", "--data-dir", "/var/lib/ferry"]
