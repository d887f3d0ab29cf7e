"""Releases: release.yaml, the Tekton pipeline (cluster and local), GitHub releases and the GitOps pull request."""
