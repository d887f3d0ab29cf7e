"""JupyterHub for data scientists: `pitlane hub serve` on a laptop or CI box (this package), and the NUC's hub
with KubeSpawner (argocd/overlays/nuc-sim/hub). Both give each user a home seeded with pitlane's notebooks,
JupyterLab with pitlane's locked environment, and the twin, registry and MLflow of that machine."""
