# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/ferry ./cmd/ferry

# git is not needed at run time: ferry fetches with go-git.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /ferry
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/lib/ferry"]
ENTRYPOINT ["/ferry"]
CMD ["serve", "--config", "/etc/ferry/ferry.yaml", "--data-dir", "/var/lib/ferry"]
