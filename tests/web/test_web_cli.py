"""``ie-web`` on the generated corpus: build, info, search in process; serve as a real subprocess (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from ie_env.web.cli import main

pytestmark = pytest.mark.model


def test_build_info_and_search(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--corpus", "generated", "--target", "gen-4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "corpus generated: 320 images" in out
    assert "target gen-4: 4 classes, 64 train, 32 test, 64 stay on the web" in out

    assert main(["info", "--corpus", "generated", "--target", "gen-4", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["images"] == 320 and info["sites"] == {"generated": 320}
    assert info["target"]["excluded_from_index"] == 96

    assert main(["info", "--target", "gen-4"]) == 0
    assert "generated" in capsys.readouterr().out

    assert main(["search", "polka dots", "-n", "5", "--target", "gen-4", "--no-progress"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and all("generated/dots" in line for line in lines)


def test_unknown_target_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", "owl", "--corpus", "generated", "--target", "nope", "--no-progress"]) == 2
    assert "unknown target set 'nope'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_subprocess_answers_over_http() -> None:
    command = [
        sys.executable,
        "-m",
        "ie_env.web.cli",
        "serve",
        "--port",
        "0",
        "--target",
        "gen-4",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        line = ""
        for line in process.stdout:
            if line.startswith("ie-web serving "):
                break
        base = line.split()[2].split("/v1/")[0]
        assert base.startswith("http://127.0.0.1:")
        body = httpx.get(f"{base}/v1/images/", params={"q": "triangle", "page_size": 5}, timeout=30).json()
        assert len(body["results"]) == 5 and all("triangle" in r["title"] for r in body["results"])
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_serve_preloads_a_cached_concept_query_table(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from ie_env.concepts.vocabulary import Vocabulary
    from ie_env.web.cli import _preload_concept_queries
    from ie_env.web.server import build_index

    index = build_index("generated", "gen-4", progress=False)
    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))  # an empty embedding cache from here on
    assert _preload_concept_queries(index, "none") == 0
    subset = "words:owl,triangle"
    assert _preload_concept_queries(index, subset) == 0  # nothing cached yet: live, and said so
    assert "no cached query embeddings for vocabulary 'words:owl,triangle'" in capsys.readouterr().err
    vocabulary = Vocabulary(subset)
    table = vocabulary.query_embeddings(show_progress=False)
    assert _preload_concept_queries(index, subset) == len(vocabulary) == index.embedder.known
    np.testing.assert_array_equal(index.embedder.embed([vocabulary.query_text(0)])[0], table[0])


def test_build_ranks_a_vocabulary_on_the_web_for_frozen_worlds(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from ie_env.concepts.vocabulary import Vocabulary
    from ie_env.web.server import build_index
    from ie_env.worlds.frozen_tables import WEB_DEPTH, concept_results

    monkeypatch.setenv("IE_ENV_HOME", str(tmp_path))
    subset = "words:owl,triangle,dot"
    build = ["build", "--corpus", "generated", "--vocabulary", subset, "--no-progress"]
    assert main(build) == 2  # no query embeddings yet: a clean error naming the fix
    assert f"ie-vocab embed --subset {subset}" in capsys.readouterr().err
    vocabulary = Vocabulary(subset)
    vocabulary.query_embeddings(show_progress=False)
    assert main(build) == 0
    assert f"search results of vocabulary {subset}" in capsys.readouterr().out
    (web_table,) = (tmp_path / "web" / "concept-results").glob("*.npy")
    assert np.load(web_table).shape == (len(vocabulary), WEB_DEPTH)
    index = build_index("generated", "gen-4", progress=False)  # a target's table starts from it
    vectors = vocabulary.query_embeddings(show_progress=False)
    table = concept_results(
        index, vocabulary.query_texts, 5, vocabulary.cache_name(), False, vectors=lambda: vectors
    )
    for j, query in enumerate(vocabulary.query_texts):
        assert table[j].tolist() == [hit.row for hit in index.rank(query, vectors[j], 5)]
