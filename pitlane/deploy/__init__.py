"""GitOps deployment: the argocd/ fleet list, image and model pins, kustomize renders, checks and diffs.

Layer: above car, below release and the CLI (release's GitOps bump calls `pitlane deploy pin`).
"""
