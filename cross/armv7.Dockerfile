# cross's armv7 image plus libseccomp for armhf (libcontainer's seccomp support).
# cross passes its own image for the target as CROSS_BASE_IMAGE.
ARG CROSS_BASE_IMAGE
FROM $CROSS_BASE_IMAGE
RUN dpkg --add-architecture armhf && apt-get update && \
    apt-get install --assume-yes --no-install-recommends libseccomp-dev:armhf pkg-config
ENV PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_PATH=/usr/lib/arm-linux-gnueabihf/pkgconfig
