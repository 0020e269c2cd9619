# One image with every Strata binary in /bin; the Kubernetes examples pick
# one with `command: ["/bin/<component>"]`.
#   docker build -t ghcr.io/strata-metrics/strata:latest .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/ ./cmd/sidecar ./cmd/store ./cmd/querier ./cmd/compactor ./cmd/blockgen

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /bin/
USER 65534:65534
EXPOSE 10901 10902
ENTRYPOINT ["/bin/querier"]
