"""The cross-encoder's network: a pretrained transformer (frozen except what ``mode`` trains,
LoRA adapters via peft) + dropout + ``Linear(hidden, 1)`` head, and its forward pass."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clrec.encoders.text import ModelFiles, load_transformer, pad_batch, pool_torch
from clrec.errors import ClrecError
from clrec.ranking.cross_encoder.config import CrossEncoderConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

INSTALL_HINT = "pip install 'clrec[rank]'"


def missing(package: str, error: ImportError) -> ClrecError:
    """The error for a missing optional dependency of the ranking stage."""
    return ClrecError(
        f"the cross-encoder ranker needs {package} ({error}); install it with {INSTALL_HINT}"
    )


def build_network(
    config: CrossEncoderConfig, files: ModelFiles, adapter: Path | None = None
) -> nn.ModuleDict:
    """Encoder (frozen except what ``mode`` trains) + dropout + head, seeded by the caller.

    ``adapter`` (lora): a saved peft adapter folder to load instead of fresh adapters.
    """
    import torch
    from torch import nn

    encoder = load_transformer(files.directory)
    hidden = int(encoder.config.hidden_size)
    limit = int(getattr(encoder.config, "max_position_embeddings", 0) or 10**9)
    if config.max_length > limit:
        raise ClrecError(
            f"cross-encoder max_length {config.max_length} exceeds what {files.label} "
            f"accepts ({limit} tokens)"
        )
    encoder.requires_grad_(False)
    if config.mode == "lora":
        encoder = _with_lora(encoder, config, adapter)
    elif config.mode == "last_n":
        layers = _encoder_layers(encoder)
        if config.last_n > len(layers):
            raise ClrecError(
                f"cross-encoder last_n {config.last_n} exceeds the {len(layers)} layers of "
                f"{files.label}"
            )
        for layer in layers[len(layers) - config.last_n :]:
            layer.requires_grad_(True)
    head = nn.Linear(hidden, 1)
    with torch.no_grad():  # small start: the first logits sit near 0 (p ≈ 0.5)
        nn.init.normal_(head.weight, std=0.02)
        head.bias.zero_()
    network = nn.ModuleDict(
        {"encoder": encoder, "dropout": nn.Dropout(config.head_dropout), "head": head}
    )
    return network.eval()


def pair_logits(network: nn.ModuleDict, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Padded pair batch (name → (B, L)) → click logits (B,)."""
    hidden = network["encoder"](**batch).last_hidden_state  # (B, L, H)
    pooled = pool_torch(hidden, batch["attention_mask"], "mean", normalize=False)  # (B, H)
    out: torch.Tensor = network["head"](network["dropout"](pooled))  # (B, 1)
    return out.squeeze(-1)  # (B,)


def device_batch(
    tokens: dict[str, list[list[int]]], positions: np.ndarray, pad_id: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """The pairs at ``positions`` (B,), padded to their longest and moved to ``device``:
    name → (B, L) tensors, ready for :func:`pair_logits`."""
    import torch

    padded = pad_batch(tokens, positions, pad_id)  # name → (B, L) int64 arrays
    return {name: torch.from_numpy(array).to(device) for name, array in padded.items()}


def _encoder_layers(encoder: Any) -> Any:
    """The transformer's block list: ``encoder.layer`` (BERT family) or the one ModuleList
    as long as ``num_hidden_layers``."""
    from torch import nn

    inner = getattr(encoder, "encoder", None)
    layers = getattr(inner, "layer", None)
    if isinstance(layers, nn.ModuleList):
        return layers
    depth = int(getattr(encoder.config, "num_hidden_layers", -1))
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList) and len(m) == depth]
    if len(lists) != 1:
        raise ClrecError(
            f"mode 'last_n': cannot find the transformer layers of {type(encoder).__name__}"
        )
    return lists[0]


def _with_lora(encoder: Any, config: CrossEncoderConfig, adapter: Path | None) -> Any:
    """Fresh LoRA adapters on ``config.lora_targets``, or the saved ones in ``adapter``."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError as err:
        raise missing("peft", err) from err
    try:
        with warnings.catch_warnings():
            # peft calls a transformers method that transformers 5 deprecated; not ours to fix.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
            if adapter is not None:
                return PeftModel.from_pretrained(encoder, str(adapter), is_trainable=True)
            lora = LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=config.lora_dropout,
                target_modules=list(config.lora_targets),
                bias="none",
            )
            return get_peft_model(encoder, lora)
    except (ValueError, OSError, KeyError) as err:
        where = (
            f"adapter {adapter}" if adapter is not None else f"lora_targets {config.lora_targets}"
        )
        raise ClrecError(f"cross-encoder {where}: {err}") from err
