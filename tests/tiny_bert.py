"""A tiny randomly initialised BERT saved as a local Hugging Face folder, for encoder tests.

A plain helper module, not a conftest: a second ``conftest`` module would shadow
``tests/conftest.py`` for the tests that import from it by name.
"""

from __future__ import annotations

from pathlib import Path

import pytest

WORDS = (  # noqa: SIM905  (a word list reads better as one string)
    "the a an of and to in is it on for with as by at from this that film movie story "
    "love war space music comedy drama action horror crime family children animation "
    "adventure fantasy mystery romance thriller western documentary robot ship city night "
    "man woman boy girl friend game world time life death star king queen dog cat contact "
    "me at email phone"
).split()


def make_tiny_bert(folder: Path) -> Path:
    """Save a 2-layer, 32-wide BERT with a word-level vocabulary to ``folder``; return it."""
    pytest.importorskip("transformers")
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz"]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    vocab += list("0123456789.,|@-:()[]")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).eval().save_pretrained(str(folder))
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    assert reloaded.convert_ids_to_tokens(reloaded("The film")["input_ids"]) == [
        "[CLS]",
        "the",
        "film",
        "[SEP]",
    ]
    return folder
