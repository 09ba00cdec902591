"""NVlabs EDM and EDM2 architectures, rebuilt as edgediff's own torch modules (written
from the papers and the published architecture description; NVlabs' code, CC BY-NC-SA,
was read for facts only). Their parameter names match the snapshots' so that weights
load strictly."""
