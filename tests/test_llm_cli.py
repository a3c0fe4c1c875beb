"""``lrpgraph explain --text PROMPT --model llama-tiny --generate N`` end to end: a tiny
KerasHub Llama with random weights (built offline), greedy generation, the relevance
matrix printed, the token heatmap written as HTML and PNG."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

pytest.importorskip("keras_hub")

from lrpgraph.cli import main  # noqa: E402
from lrpgraph.tiny_llm import CharTokenizer, tiny_causal_lm  # noqa: E402


def test_cli_generate_prints_matrix_and_writes_heatmaps(tmp_path):
    out = io.StringIO()
    rc = main(["explain", "--text", "ab c", "--model", "llama-tiny", "--generate", "3", "--method", "cp_lrp",
               "--param", "epsilon=1e-12", "--out", str(tmp_path)], out=out)
    text = out.getvalue()
    assert rc == 0, text
    assert "RANDOM weights" in text and "prompt 4 tokens, generated 3" in text
    rows = [line for line in text.splitlines() if re.match(r"^\s+[4-6] ", line)]
    assert len(rows) == 3
    # causality: generated token 4 + g is explained at position 3 + g; columns 4 + g.. are zero
    for g, line in enumerate(rows):
        cells = line[10:].split()
        assert len(cells) == 7 and cells[4 + g:] == ["·"] * (3 - g)
    sums = re.search(r"row sums: (.*); explained logits: (.*)", text)
    got = np.array([float(v) for v in sums.group(1).split(",")])
    want = np.array([float(v) for v in sums.group(2).split(",")])
    # bias-free Llama: cp_lrp conserves each explained logit; both printed to 3 significant digits
    np.testing.assert_allclose(got, want, rtol=5e-3)
    html = (tmp_path / "generation_cp_lrp.html").read_text()
    assert html.count("<span") == 7 * 4 and "RANDOM weights" in html  # the span, then one line per token
    assert (tmp_path / "generation_cp_lrp.png").stat().st_size > 1000


def test_cli_generate_errors(tmp_path, capsys):
    assert main(["explain", "--text", "hi", "--model", "shapes", "--generate", "2", "--out", str(tmp_path)],
                out=io.StringIO()) == 1
    assert "a .keras file or a tiny config name" in capsys.readouterr().err
    assert main(["explain", "--text", "hé", "--model", "llama-tiny", "--generate", "2", "--out", str(tmp_path)],
                out=io.StringIO()) == 1
    assert "cannot be tokenized" in capsys.readouterr().err


def test_char_tokenizer_round_trip():
    tok = CharTokenizer()
    ids = tok("Hi there!")
    assert ids.dtype == np.int32 and "".join(tok.id_to_token(i) for i in ids) == "Hi there!"
    assert tok.token_to_id(" ") == 1 and tok.vocabulary_size() == 96
    with pytest.raises(ValueError, match="printable ASCII"):
        tok("é")
    with pytest.raises(ValueError, match="unknown tiny model 'nope-tiny'; the tiny configs are llama-tiny"):
        tiny_causal_lm("nope-tiny")
