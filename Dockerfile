# Multi-stage build: a static binary on a distroless base, running as
# non-root. docker build -t ferry . && docker run -p 8080:8080 ferry
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ferry ./cmd/ferry

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /usr/local/bin/ferry
USER nonroot:nonroot
WORKDIR /var/lib/ferry
VOLUME ["/var/lib/ferry"]
EXPOSE 8080 1883
ENTRYPOINT ["/usr/local/bin/ferry"]
# With no config, the demo runs; mount one at /etc/ferry/ferry.yaml otherwise:
#   docker run -v $PWD/ferry.yaml:/etc/ferry/ferry.yaml ferry run -c /etc/ferry/ferry.yaml --admin-addr 0.0.0.0:8080
CMD ["run", "--admin-addr", "0.0.0.0:8080", "--data-dir", "/var/lib/ferry"]
