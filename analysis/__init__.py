"""One run's analysis: where its detections go wrong (TIDE errors, PR bands, confusion), how its
anchors score, a gallery of background false positives; written into ``<run>/analysis/`` by the
Hydra callback in analysis/callback.py. Imports the library only (detection, datasets, losses)."""
