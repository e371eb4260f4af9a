# Static ldapproxy binary on a distroless base, running as non-root. The root file system
# can be mounted read-only: the proxy writes only its store (mount a volume at
# /var/lib/ldapproxy, the store.path of the configuration below) and its logs (stderr).
# The user is distroless's nonroot, given by number (65532) so that Kubernetes can check
# runAsNonRoot without a passwd file.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ldapproxy ./cmd/ldapproxy \
 && mkdir -p /out/store

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ldapproxy /usr/local/bin/ldapproxy
COPY --from=build --chown=65532:65532 /out/store /var/lib/ldapproxy
USER 65532:65532
VOLUME /var/lib/ldapproxy
EXPOSE 3389 3636 9389
ENTRYPOINT ["/usr/local/bin/ldapproxy"]
CMD ["serve", "--config", "/etc/ldapproxy/ldapproxy.yaml"]
