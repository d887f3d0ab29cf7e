"""Artifacts: a local OCI registry, an OCI distribution client, model bundles, cosign-compatible signatures
and in-toto attestations. General on purpose: `images` and `release` push and sign container images with
the same client and signing code."""
