"""What leaves the trainer: the saved folder (only what training changed) and the int8 copy.

A saved ranker is ``ranker.json`` (format, version, config, base model label and digest,
training record), the head's weights and, by mode, peft's adapter folder (lora) or the
unfrozen layers' weights (last_n). The base model is never copied: loading re-reads it from
``config.model`` and must find the same content digest.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clrec.encoders.text import ModelFiles
from clrec.errors import ClrecError
from clrec.ranking.cross_encoder.config import CrossEncoderConfig, Mode
from clrec.ranking.cross_encoder.network import missing

if TYPE_CHECKING:
    from torch import nn

FORMAT = "clrec-cross-encoder"
FORMAT_VERSION = 1
RANKER_FILE = "ranker.json"
HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder.safetensors"  # last_n: the unfrozen layers' weights only
ADAPTER_DIR = "adapter"  # lora: peft's save_pretrained of the adapter


def write_ranker(
    folder: Path, network: nn.ModuleDict, config: CrossEncoderConfig, record: dict[str, Any]
) -> None:
    """Write the head, what ``config.mode`` trained and ``ranker.json`` (format, version,
    config, then ``record``: base model, pos_weight, history, ...) into ``folder``."""
    save_file = _safetensors().save_file
    folder.mkdir(parents=True, exist_ok=True)
    head = {k: v.detach().cpu().contiguous() for k, v in network["head"].state_dict().items()}
    save_file(head, str(folder / HEAD_FILE))
    encoder: Any = network["encoder"]
    if config.mode == "lora":
        encoder.save_pretrained(str(folder / ADAPTER_DIR))
    elif config.mode == "last_n":
        unfrozen = {
            name: p.detach().cpu().contiguous()
            for name, p in encoder.named_parameters()
            if p.requires_grad
        }
        save_file(unfrozen, str(folder / ENCODER_FILE))
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "config": asdict(config), **record}
    (folder / RANKER_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(folder: Path) -> dict[str, Any]:
    """``ranker.json`` of ``folder``, checked to be a cross-encoder of this format version."""
    path = folder / RANKER_FILE
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ClrecError(f"{path}: not a readable cross-encoder ranker ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ClrecError(f"{path}: not a clrec cross-encoder ranker")
    if meta.get("version") != FORMAT_VERSION:
        raise ClrecError(
            f"{path}: format version {meta.get('version')!r}; this clrec reads {FORMAT_VERSION}"
        )
    return meta


def check_base_model(meta: dict[str, Any], files: ModelFiles, model: str, folder: Path) -> None:
    """Refuse a base model (``model``, resolved to ``files``) other than the one trained on."""
    saved = meta["model"]
    if files.digest != saved["digest"]:
        raise ClrecError(
            f"{folder / RANKER_FILE}: the ranker was trained on {saved['label']} (digest "
            f"{saved['digest']}), but {model!r} holds {files.label} (digest "
            f"{files.digest}); point model= at the original base model"
        )


def adapter_folder(folder: Path, mode: Mode) -> Path | None:
    """The saved LoRA adapter folder (lora mode; must exist), else None."""
    if mode != "lora":
        return None
    adapter = folder / ADAPTER_DIR
    if not adapter.is_dir():
        raise ClrecError(f"{folder}: the LoRA adapter folder {ADAPTER_DIR}/ is missing")
    return adapter


def read_weights(
    network: nn.ModuleDict, config: CrossEncoderConfig, label: str, folder: Path
) -> None:
    """Copy the saved head (and last_n layers) into ``network``, built from the base model
    (lora: with the saved adapter already)."""
    import torch

    load_file = _safetensors().load_file
    try:
        network["head"].load_state_dict(load_file(str(folder / HEAD_FILE)))
        if config.mode == "last_n":
            unfrozen = load_file(str(folder / ENCODER_FILE))
            expected = {k for k, p in network["encoder"].named_parameters() if p.requires_grad}
            if set(unfrozen) != expected:
                raise ClrecError(
                    f"{folder / ENCODER_FILE}: holds other layers than last_n "
                    f"{config.last_n} of {label}"
                )
            with torch.no_grad():
                for name, p in network["encoder"].named_parameters():
                    if name in unfrozen:
                        p.copy_(unfrozen[name])
    except (OSError, RuntimeError) as err:
        raise ClrecError(f"{folder}: cannot read the ranker's weights ({err})") from err


def quantize_network(network: nn.ModuleDict, mode: Mode) -> nn.ModuleDict:
    """An int8 CPU copy of ``network``: LoRA merged into the base weights, then the encoder's
    ``nn.Linear`` layers dynamically quantised (the head stays fp32)."""
    import torch
    from torch import nn

    copied: nn.ModuleDict = copy.deepcopy(network).to("cpu").eval()
    encoder: Any = copied["encoder"]  # a PeftModel or a transformers model
    if mode == "lora":
        encoder = encoder.merge_and_unload()  # W + (alpha / r)·B·A, plain Linear layers
    quantize: Any = torch.ao.quantization.quantize_dynamic  # untyped in torch
    with warnings.catch_warnings():
        # torch.ao's int8 tensors are being retired in favour of torchao; they still work.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "torch.quantize_per_tensor", UserWarning)
        copied["encoder"] = quantize(encoder, {nn.Linear}, dtype=torch.qint8)
    return copied


def _safetensors() -> Any:
    """``safetensors.torch`` (save_file / load_file), or the error naming the extra."""
    try:
        import safetensors.torch
    except ImportError as err:
        raise missing("safetensors", err) from err
    return safetensors.torch
