"""Cross-encoder ranker: (user-context text, item text) → click probability, tuned on clicks.

The ranking stage after retrieval. A pretrained transformer (the packaged all-MiniLM-L6-v2 by
default, or any local Hugging Face folder; never a hub) reads the two texts as one pair
(``[CLS] query [SEP] item [SEP]``, so attention crosses between them), the token states are
mean-pooled over the attention mask, and a dropout + ``Linear(hidden, 1)`` head gives a click
logit. Mean pooling, not [CLS]: MiniLM was trained as a sentence encoder with mean pooling, so
its pooled vector is already meaningful when the encoder is frozen (``mode="head"``).

Three ways to fine-tune, chosen by :attr:`CrossEncoderConfig.mode`:

* ``"lora"`` (default): low-rank adapters (peft) on the attention projections plus the head;
  about 0.3 % of MiniLM's weights train, the base weights stay untouched.
* ``"head"``: the encoder is a frozen feature extractor (run without gradients and without
  dropout); only the head trains. Cheapest, weakest.
* ``"last_n"``: the last ``last_n`` transformer layers and the head train.

Training runs through the project's one loop (:func:`clrec.training.loop.run_training`):
pos-weighted binary cross-entropy on logits (class balance), AdamW, linear warm-up then
linear decay, gradient clipping, seeded shuffling; validation AUC every ``eval_every`` steps
and at each epoch end drives early stopping, and the best state is restored at the end.
Persistence writes only what training changed (head, adapter or unfrozen layers); the base
model is re-read from ``config.model`` at load and must have the same content digest.

Modules: :mod:`.config` (settings), :mod:`.network` (transformer + LoRA + head),
:mod:`.train` (the loop's closures), :mod:`.ranker` (fit / predict / evaluate),
:mod:`.persistence` (save / load / int8). Torch is imported only where a network is built.
"""

from clrec.ranking.cross_encoder.config import (
    DEFAULT_LEARNING_RATES,
    MODES,
    CrossEncoderConfig,
    Mode,
)
from clrec.ranking.cross_encoder.network import INSTALL_HINT
from clrec.ranking.cross_encoder.persistence import (
    ADAPTER_DIR,
    ENCODER_FILE,
    FORMAT,
    FORMAT_VERSION,
    HEAD_FILE,
    RANKER_FILE,
)
from clrec.ranking.cross_encoder.ranker import CrossEncoderRanker

__all__ = [
    "ADAPTER_DIR",
    "DEFAULT_LEARNING_RATES",
    "ENCODER_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "HEAD_FILE",
    "INSTALL_HINT",
    "MODES",
    "RANKER_FILE",
    "CrossEncoderConfig",
    "CrossEncoderRanker",
    "Mode",
]
