"""Training the text-image alignment heads and the image category classifier (build time, torch).

The image and text backbones were trained apart, so their vectors are not comparable. Every
catalog is a set of image-text pairs (a product's photos and its title/description), so the
project trains small projection heads on the catalog itself, with the backbones frozen and
their features cached: retraining then takes seconds, not an hour of re-encoding.

Modules, in the order data flows through them:

- :mod:`.catalog`   minimal JSONL catalog reader (ingest format) -> :class:`TrainingProduct`
- :mod:`.augment`   random views of a photo (crop, flip, colour, blur), a function of photo + seed
- :mod:`.features`  encode each image / text / augmented view once (through the space), cached on disk
- :mod:`.progress`  progress lines for every long phase, for terminals and log files alike
- :mod:`.pairs`     products + features -> :class:`PairData`, product splits, refusals
- :mod:`.trainer`   projection heads, symmetric multi-positive InfoNCE, early stopping (torch)
- :mod:`.classifier` linear category classifier on image features (torch)
- :mod:`.export`    heads and classifier -> small ONNX graphs + the heads manifest
- :mod:`.metrics`   recall@k / precision@k / MRR on similarity matrices (numpy)
- :mod:`.int8`      int8 image tower calibrated on the catalog's photos, used only if it keeps the bar
- :mod:`.train_catalog` the whole `cmsearch train` run as one function (train, choose epochs, refit)
- :mod:`.models_manifest` record the heads in the models manifest (``heads`` slot)

Only this package imports torch; the run-time side (:mod:`models.heads`) needs onnxruntime only.
"""
