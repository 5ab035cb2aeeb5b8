"""Models: base-model catalogue, band adaptation, network construction, artefacts."""
