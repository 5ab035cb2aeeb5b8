"""Input and output: windowed raster reads, vector reads, atomic writes."""
