# syntax=docker/dockerfile:1.7
# Both kelos-hooks images from one build: static (musl) release binaries on a distroless,
# non-root base. Build from the repository root (the whole workspace is the build context):
#   docker build --target admission  -t kelos-hooks-admission .
#   docker build --target dispatcher -t kelos-hooks-dispatcher .

ARG RUST_VERSION=1.95
ARG TARGET=x86_64-unknown-linux-musl

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS builder
ARG TARGET
# musl-tools: ring's C and assembly parts are compiled with musl-gcc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "${TARGET}"
WORKDIR /src
COPY . .
# The final images have no libc: refuse a dynamically linked binary here, not at run time.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release --target "${TARGET}" \
      -p kelos-hooks-admission -p kelos-hooks-dispatcher \
 && for bin in kelos-hooks-admission kelos-hooks-dispatcher; do \
      install -D -m 0755 "target/${TARGET}/release/${bin}" "/out/${bin}" \
      && if readelf -l "/out/${bin}" | grep -q 'Requesting program interpreter'; then \
           echo "${bin} is not statically linked" >&2; exit 1; \
         fi \
      && "/out/${bin}" --version || exit 1; \
    done

FROM gcr.io/distroless/static-debian12:nonroot AS admission
COPY --from=builder /out/kelos-hooks-admission /usr/local/bin/kelos-hooks-admission
USER 65532:65532
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/kelos-hooks-admission"]
CMD ["serve"]

FROM gcr.io/distroless/static-debian12:nonroot AS dispatcher
COPY --from=builder /out/kelos-hooks-dispatcher /usr/local/bin/kelos-hooks-dispatcher
USER 65532:65532
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/kelos-hooks-dispatcher"]
CMD ["run"]
