"""Container images of pitlane built with no daemon and no base-image pull.

`plan` says what is built and how (pure), `rootfs` makes the Debian base images with mmdebstrap, `binfmt`
makes arm64 `RUN` steps possible under qemu-user, `build` exports the locked dependencies and runs buildah,
`push` puts the images in a registry by digest, `smoke` runs them, `cli` is `pitlane images ...`.
"""
