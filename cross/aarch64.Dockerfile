# cross's aarch64 image plus libseccomp for arm64 (libcontainer's seccomp support).
# cross passes its own image for the target as CROSS_BASE_IMAGE.
ARG CROSS_BASE_IMAGE
FROM $CROSS_BASE_IMAGE
RUN dpkg --add-architecture arm64 && apt-get update && \
    apt-get install --assume-yes --no-install-recommends libseccomp-dev:arm64 pkg-config
ENV PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig
