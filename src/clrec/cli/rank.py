"""The ``clrec rank`` group: train and evaluate the language-model ranking stage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from clrec.cli.common import print_json, user_errors
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.ranking.cross_encoder import Mode

app = typer.Typer(
    help="Train and evaluate the language-model ranking stage (retrieve → rank).",
    no_args_is_help=True,
)


@app.command("train")
@user_errors
def rank_train_command(
    run: Annotated[Path, typer.Argument(help="A run folder (clrec train) whose model retrieves.")],
    out: Annotated[Path, typer.Option(help="Folder for the ranker and its report.")],
    mode: Annotated[str, typer.Option(help="Fine-tuning: lora | head | last_n.")] = "lora",
    model: Annotated[
        str, typer.Option(help="Encoder: 'minilm' (packaged) or a local Hugging Face folder.")
    ] = "minilm",
    max_users: Annotated[int, typer.Option(min=1, help="Users sampled for pairs.")] = 600,
    max_positives: Annotated[
        int, typer.Option(min=1, help="Positives kept per user (a seeded sample).")
    ] = 4,
    hard_negatives: Annotated[int, typer.Option(min=0, help="Per user, from the top.")] = 4,
    random_negatives: Annotated[int, typer.Option(min=0, help="Per user, uniform.")] = 2,
    epochs: Annotated[int, typer.Option(min=1)] = 2,
    batch_size: Annotated[int, typer.Option(min=1)] = 32,
    max_length: Annotated[int, typer.Option(min=8, help="Tokens of query + item.")] = 128,
    depth: Annotated[int, typer.Option(min=1, help="Candidates re-ranked per user.")] = 50,
    test_users: Annotated[int, typer.Option(min=1, help="Test users sampled.")] = 300,
    time_limit: Annotated[
        float | None, typer.Option(min=0.0, help="Training budget in minutes.")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Fine-tune a cross-encoder on the run's retrieval candidates and evaluate it."""
    from clrec.ranking.cross_encoder import CrossEncoderConfig
    from clrec.ranking.pairs import PairConfig
    from clrec.ranking.pipeline import RankerSettings, train_ranker

    if mode not in ("lora", "head", "last_n"):
        raise ClrecError(f"unknown mode {mode!r}; known: lora, head, last_n")
    settings = RankerSettings(
        pairs=PairConfig(
            max_users=max_users,
            candidates=max(depth, hard_negatives),
            hard_negatives=hard_negatives,
            random_negatives=random_negatives,
            max_positives_per_user=max_positives,
            seed=seed,
        ),
        model=CrossEncoderConfig(
            model=model,
            mode=cast("Mode", mode),  # checked above
            epochs=epochs,
            batch_size=batch_size,
            max_length=max_length,
            threads=threads,
            seed=seed,
            time_limit_minutes=time_limit,
        ),
        rerank_depth=depth,
        test_users=test_users,
    )
    _print_report(train_ranker(run, out, settings))


@app.command("evaluate")
@user_errors
def rank_evaluate_command(
    ranker: Annotated[Path, typer.Argument(help="A folder written by clrec rank train.")],
) -> None:
    """Evaluate a trained ranker again on its run's test data (report.json is updated)."""
    from clrec.ranking.pipeline import evaluate_ranker

    _print_report(evaluate_ranker(ranker))


def _print_report(report: dict[str, Any]) -> None:
    """The report's test-pair, end-to-end and latency sections as JSON."""
    print_json({key: report[key] for key in ("test_pairs", "end_to_end", "latency")})
