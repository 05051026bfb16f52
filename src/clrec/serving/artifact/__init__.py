"""A self-contained, versioned, checksummed serving artifact exported from a training run.

:func:`~clrec.serving.artifact.export.export_artifact` turns a run folder (see
:mod:`clrec.experiment`) into one folder a recommendation service can load without the
training code paths, the data set or the run::

    artifact.json        manifest, written last: format, version, model, shapes, content
                         modalities, test metrics, sha256 of every other file
    users.json           external user id at each internal index (U,)
    items.json           external item id at each internal index (I,)
    catalogue.parquet    the run's item table: ``id`` + every content field (display)
    seen.npz             (U, I) CSR of every interaction the run's data set holds (train, valid
                         and test): what "exclude seen" means when serving
    model/               the run's saved model: its vectors, training history, fitted item
                         featuriser and prior — everything its EmbeddingModel contract needs
    config.yaml          the run's config
    report.html          the run's evaluation report, when the run wrote one
    ranker/              the optional language-model ranking stage

Only embedding models (:class:`~clrec.models.embedding.EmbeddingModel`: ``bpr``,
``lightgcn``, ``clrec``) can be exported. :func:`~clrec.serving.artifact.load.load_artifact`
checks the format and version, every file's sha256, every shape and that every vector is
finite, and returns an :class:`~clrec.serving.artifact.load.Artifact` whose ``model`` the
service scores, embeds and builds users through — the artifact holds no formula of its own.
"""

from clrec.serving.artifact.export import export_artifact
from clrec.serving.artifact.layout import FORMAT, FORMAT_VERSION, REPORT_FILE
from clrec.serving.artifact.load import Artifact, load_artifact

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "REPORT_FILE",
    "Artifact",
    "export_artifact",
    "load_artifact",
]
