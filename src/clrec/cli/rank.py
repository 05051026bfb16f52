"""The ``clrec rank`` group: train and evaluate the ranking stage (learning to rank)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from clrec.cli.common import print_json, user_errors
from clrec.errors import ClrecError

if TYPE_CHECKING:
    from clrec.ranking.candidates import RetrieverName
    from clrec.ranking.cross_encoder import Mode

app = typer.Typer(
    help="Train and evaluate the ranking stage (retrieve → learn to rank).",
    no_args_is_help=True,
)


@app.command("train")
@user_errors
def rank_train_command(
    run: Annotated[Path, typer.Argument(help="A run folder (clrec train) whose model retrieves.")],
    out: Annotated[Path, typer.Option(help="Folder for the ranker and its report.")],
    retrievers: Annotated[
        str,
        typer.Option(help="Candidate retrievers, comma-separated: model,itemknn,popular,recent."),
    ] = "model,itemknn,popular,recent",
    depth: Annotated[int, typer.Option(min=1, help="Candidates each retriever proposes.")] = 50,
    rounds: Annotated[int, typer.Option(min=1, help="LambdaRank boosting rounds at most.")] = 500,
    ablation: Annotated[
        bool, typer.Option(help="Refit without each feature group and retriever.")
    ] = True,
    click_model: Annotated[
        str,
        typer.Option(help="The click-model feature: off | head | lora | last_n (fine-tuning)."),
    ] = "off",
    model: Annotated[
        str, typer.Option(help="Click model: 'minilm' (packaged) or a local Hugging Face folder.")
    ] = "minilm",
    max_users: Annotated[int, typer.Option(min=1, help="Click model: users sampled.")] = 600,
    max_positives: Annotated[
        int, typer.Option(min=1, help="Click model: positives kept per user.")
    ] = 4,
    hard_negatives: Annotated[int, typer.Option(min=0, help="Click model: per user.")] = 4,
    random_negatives: Annotated[int, typer.Option(min=0, help="Click model: per user.")] = 2,
    epochs: Annotated[int, typer.Option(min=1, help="Click model: epochs.")] = 2,
    batch_size: Annotated[int, typer.Option(min=1, help="Click model: pairs a step.")] = 32,
    max_length: Annotated[int, typer.Option(min=8, help="Click model: tokens.")] = 128,
    time_limit: Annotated[
        float | None, typer.Option(min=0.0, help="Click model: training budget in minutes.")
    ] = None,
    cache_dir: Annotated[
        Path, typer.Option(help="Where the items' encoded text vectors are cached.")
    ] = Path("~/.cache/clrec/embeddings"),
    threads: Annotated[int | None, typer.Option(min=1, help="CPU threads.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    progress: Annotated[bool, typer.Option(help="Progress bars.")] = True,
) -> None:
    """Learn to rank the union of several retrievers' candidates (LightGBM LambdaRank over
    retrieval, behaviour and language-model features) and evaluate it on every test user."""
    from clrec.ranking.candidates import CandidateConfig
    from clrec.ranking.click import ClickSettings
    from clrec.ranking.cross_encoder import CrossEncoderConfig
    from clrec.ranking.folds import RankerSettings
    from clrec.ranking.ltr import LambdaRankConfig
    from clrec.ranking.pairs import PairConfig
    from clrec.ranking.pipeline import train_ranker

    if click_model not in ("off", "lora", "head", "last_n"):
        raise ClrecError(f"unknown click model {click_model!r}; known: off, head, lora, last_n")
    click = None
    if click_model != "off":
        click = ClickSettings(
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
                mode=cast("Mode", click_model),  # checked above
                epochs=epochs,
                batch_size=batch_size,
                max_length=max_length,
                threads=threads,
                seed=seed,
                time_limit_minutes=time_limit,
                progress=progress,
            ),
        )
    names = tuple(name.strip() for name in retrievers.split(",") if name.strip())
    settings = RankerSettings(
        candidates=CandidateConfig(
            retrievers=cast("tuple[RetrieverName, ...]", names), per_retriever=depth
        ),
        lambdarank=LambdaRankConfig(rounds=rounds, threads=threads or 1, seed=seed),
        click=click,
        ks=tuple(k for k in (10, 20) if k <= depth) or (depth,),
        ablation=ablation,
        cache_dir=str(cache_dir),
        progress=progress,
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
    """The report's end-to-end, latency, ablation and click-model sections as JSON."""
    shown = ("end_to_end", "latency", "ablation", "click_test_pairs")
    print_json({key: report[key] for key in shown if key in report})
