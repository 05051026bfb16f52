"""Pretrained content encoders: item / user content → vectors, cached by content hash.

* :mod:`~clrec.encoders.text` — language model (packaged all-MiniLM-L6-v2 or a local model),
  text templates per data set; :mod:`~clrec.encoders.onnx_text` — its int8 ONNX fast path.
* :mod:`~clrec.encoders.image` — image model (packaged EfficientNet-Lite0 or a local one).
* :mod:`~clrec.encoders.cache` — on-disk vectors keyed by (encoder identity, content hash).
* :mod:`~clrec.encoders.modalities` — encode every item of a data set, per modality.
* :mod:`~clrec.encoders.featurizer` — the fitted item featuriser: item fields → content matrices.
* :mod:`~clrec.encoders.privacy` — personal-data masking.

Nothing heavy is imported here: torch, transformers and onnxruntime load only in the module
that uses them, so ``import clrec.encoders`` stays fast.
"""
