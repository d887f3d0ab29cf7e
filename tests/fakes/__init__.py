"""Fakes, at the HTTP level, of services that cannot run here (GitHub, a Kubernetes API server)."""
