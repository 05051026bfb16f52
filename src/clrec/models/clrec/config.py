"""Every hyper-parameter of the clrec model, typed, checked and saved with it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import ConfigDict, TypeAdapter, ValidationError

from clrec.encoders.featurizer import ContentConfig
from clrec.errors import ClrecError, validation_error
from clrec.losses.objective import LossWeights
from clrec.models.embedding import Similarity
from clrec.models.fusion import FusionKind
from clrec.training.adversarial import check_adversarial

Supervised = Literal["softmax", "sampled_softmax", "cosine_contrastive", "bpr", "bce", "mse"]
# the objectives that score every batch user against shared sampled items
SAMPLED = ("sampled_softmax", "cosine_contrastive")
# settings that do not change a fit's result: a checkpoint resumes across them
NOT_DECISIVE = (
    "progress",
    "num_threads",
    "log_dir",
    "checkpoint_dir",
    "device",
    "time_limit_minutes",
)


@dataclass(frozen=True)
class ClrecConfig:
    """Every hyper-parameter of :class:`ClrecRecommender` (all saved with the model)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    embedding_size: int = 64
    # representation
    content: ContentConfig = field(default_factory=ContentConfig)
    fusion: FusionKind = "attention"
    fusion_hidden: int = 0
    modality_dropout: float = 0.1
    id_dropout: float = 0.1
    use_history: bool = True
    # the k-th most recent training item of a user weighs 0.5 ** (k / half-life) in the
    # user's pooled history (needs timestamps or sequence positions; None: all weigh the same)
    history_half_life: float | None = None
    # a training step pools at most this many of a user's items, a fresh uniform sample each
    # step (their weights renormalised): a heavy user then costs the cap, not their whole
    # history (None: every item, exact; serving always pools the whole history)
    history_cap: int | None = None
    n_layers: int = 0
    similarity: Similarity = "cosine"
    # collaborative prior: a closed-form item-item model (EASE, λ = prior_reg) fused with the
    # embedding scores after training: score = sim / τ + w · prior / σ(prior). λ (from
    # PRIOR_REGS) and w (from PRIOR_WEIGHTS) are chosen on validation NDCG@10 unless given;
    # "none": the pure embedding model (needed beyond MAX_PRIOR_ITEMS items)
    prior: Literal["none", "ease"] = "ease"
    prior_reg: float | None = None
    prior_weight: float | None = None
    # objective
    supervised: Supervised = "softmax"
    # sampled_softmax: the softmax against this many items drawn uniformly once per batch (with
    # the log(I / K) correction), for catalogues where B × I scores per step cost too much;
    # cosine_contrastive's negatives are the same samples
    softmax_samples: int = 2048
    # cosine_contrastive (SimpleX's CCL, cosine similarity only): relu(1 − s⁺) +
    # negative_weight · mean over the sampled items of relu(s⁻ − margin)
    margin: float = 0.9
    negative_weight: float = 150.0
    # how those items are drawn: uniformly, by popularity (count ** popularity_exponent), or
    # half and half ("mixed", as large two-tower systems do); each sample's logit is corrected
    # by −log(K · q) for its probability q, so the estimate stays the catalogue softmax (the
    # cosine contrastive loss takes the samples as drawn: a margin needs no correction)
    negative_sampling: Literal["uniform", "popularity", "mixed"] = "uniform"
    popularity_exponent: float = 0.75
    # look the step's rows up with sparse gradients and update the ID tables lazily (only the
    # rows a step touched; AdamW for the rest), so a step costs what its batch touches
    # (with sampled_softmax: independent of the catalogue's size)
    sparse_updates: bool = False
    temperature: float = 0.2  # on cosine similarities; 0.2 beat 0.1 on ML-1M, Office, Scientific
    contrast_temperature: float = 0.2
    # intra / cross-user contrast at 0.5 (α 0.5) and content–behaviour alignment at 0.1 (which
    # carries cold items); the pair contrast moves Amazon Office / Scientific by ±2 % and costs
    # on ML-1M and Gowalla, whose presets turn it off (BENCHMARKS.md, issue 18's ablation).
    # A config naming some weights keeps the other defaults
    weights: LossWeights = field(default_factory=LossWeights)
    l2_weight: float = 0.0
    noise_eps: float = 0.1
    # APR adversarial training (clrec.training.adversarial): the supervised loss is also paid
    # at the scored vectors moved eps (per row) the worst way, times the weight; 0 = off
    adversarial_eps: float = 0.0
    adversarial_weight: float = 1.0
    # truncated loss against noisy positives (clrec.losses.softmax.truncated_mean; softmax
    # objective): each batch leaves out this share of its positive pairs with the largest
    # loss, the share rising linearly from 0 over the first denoise_warmup_epochs epochs
    denoise_drop_rate: float = 0.0
    denoise_warmup_epochs: int = 5
    contrastive_mode: Literal["joint", "separate"] = "joint"
    contrastive_share: float = 0.3
    # optimisation
    lr: float = 1e-2
    weight_decay: float = 0.0
    batch_size: int = 128  # users per step (each brings all of their training items)
    contrastive_batch_size: int = 1024
    epochs: int = 100
    eval_every: int = 1
    patience: int = 8
    # wall-clock cap on training: stop after the first epoch that ends past it (None: no cap)
    time_limit_minutes: float | None = None
    init_std: float = 0.1
    seed: int = 2020
    device: str | None = None
    num_threads: int | None = None
    progress: bool = True
    checkpoint_dir: str | None = None
    log_dir: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.embedding_size >= 1, "embedding_size must be at least 1"),
            (0 <= self.id_dropout < 1, "id_dropout must be in [0, 1)"),
            (self.n_layers >= 0, "n_layers must be ≥ 0"),
            (
                self.history_half_life is None or self.history_half_life > 0,
                "history_half_life must be positive",
            ),
            (self.history_cap is None or self.history_cap >= 1, "history_cap must be ≥ 1"),
            (self.temperature > 0, "temperature must be positive"),
            (self.contrast_temperature > 0, "contrast_temperature must be positive"),
            (self.l2_weight >= 0, "l2_weight must be ≥ 0"),
            (self.noise_eps >= 0, "noise_eps must be ≥ 0"),
            (0 <= self.contrastive_share < 1, "contrastive_share must be in [0, 1)"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
            (self.contrastive_batch_size >= 2, "contrastive_batch_size must be at least 2"),
            (self.init_std > 0, "init_std must be positive"),
            (
                self.time_limit_minutes is None
                or (math.isfinite(self.time_limit_minutes) and self.time_limit_minutes > 0),
                "time_limit_minutes must be positive and finite",
            ),
            (self.prior_reg is None or self.prior_reg > 0, "prior_reg must be positive"),
            (
                self.supervised in get_args(Supervised),
                "unknown supervised loss",
            ),
            (-1 <= self.margin < 1, "margin must be in [-1, 1)"),
            (self.negative_weight >= 0, "negative_weight must be ≥ 0"),
            (
                self.supervised != "cosine_contrastive" or self.similarity == "cosine",
                "supervised 'cosine_contrastive' needs similarity 'cosine'",
            ),
            (self.softmax_samples >= 1, "softmax_samples must be at least 1"),
            (
                self.negative_sampling in ("uniform", "popularity", "mixed"),
                "negative_sampling must be 'uniform', 'popularity' or 'mixed'",
            ),
            (self.popularity_exponent >= 0, "popularity_exponent must be ≥ 0"),
            (0 <= self.denoise_drop_rate < 1, "denoise_drop_rate must be in [0, 1)"),
            (self.denoise_warmup_epochs >= 0, "denoise_warmup_epochs must be ≥ 0"),
            (
                self.denoise_drop_rate == 0 or self.supervised in ("softmax", *SAMPLED),
                "denoise_drop_rate needs a softmax or cosine_contrastive objective",
            ),
            (self.similarity in ("cosine", "dot"), "similarity must be 'cosine' or 'dot'"),
            (self.contrastive_mode in ("joint", "separate"), "unknown contrastive_mode"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClrecError(f"clrec model: {message}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ClrecError(f"num_threads must be at least 1, got {self.num_threads}")
        check_adversarial(self.adversarial_eps, self.adversarial_weight)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ClrecError(f"seed must be an integer ≥ 0, got {self.seed!r}")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ClrecConfig:
        """From a config's ``model.params`` (``content`` and ``weights`` as nested mappings);
        values are coerced as a YAML user expects (``"1e-2"`` → 0.01, lists → tuples)."""
        try:
            config: ClrecConfig = TypeAdapter(cls).validate_python(params)
        except ValidationError as err:
            raise validation_error(err, "clrec model parameters") from None
        return config

    def to_params(self) -> dict[str, Any]:
        """JSON-ready form that :meth:`from_params` reads back."""
        plain: dict[str, Any] = TypeAdapter(type(self)).dump_python(self, mode="json")
        return plain
