"""``squeezebert serve`` of an exported ONNX folder (``squeezebert export --format onnx``): onnxruntime, no torch.

The command runs in a subprocess where importing torch (or transformers) fails, on 127.0.0.1, and its answers are
compared with the PyTorch pipeline on the checkpoint the folder was exported from (within the export's fp32
tolerance, which the export itself checks).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the server needs the serve extra (pip install -e '.[serve]')")
httpx = pytest.importorskip("httpx", reason="the server tests need httpx")
pytest.importorskip("onnxruntime", reason="the ONNX backend needs onnxruntime")

from test_serve import checkpoints, client  # noqa: E402,F401 (checkpoints: a fixture)

from squeezebert.checkpoint import load_model  # noqa: E402
from squeezebert.export import FP32_TOLERANCE, export_onnx_folder  # noqa: E402
from squeezebert.pipelines import pipeline  # noqa: E402

# run a module the way ``python -m`` does, with torch and transformers unimportable (an edge box without them)
NO_TORCH = """
import importlib.abc, runpy, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, NoTorch())
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""
TEXTS = ["the movie was good", "a dog sat on the mat"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exported(checkpoint: Path, out: Path) -> Path:
    export_onnx_folder(load_model(checkpoint), out, source=checkpoint)
    return out


def approx(x):
    return pytest.approx(x, abs=FP32_TOLERANCE)


def test_serve_an_onnx_export_without_torch(checkpoints, tmp_path):
    source = checkpoints["sequence_classification"]
    folder = exported(source, tmp_path / "onnx")
    want = pipeline("text-classification", source).run(TEXTS)
    (tmp_path / "no_torch.py").write_text(NO_TORCH)
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "no_torch.py"), "squeezebert.cli", "serve", str(folder),
                             "--port", str(port), "--threads", "1"], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the ONNX server never became ready"
            time.sleep(0.2)
        ours = httpx.post(url + "/v1/classify", json={"inputs": TEXTS}, timeout=30).json()["results"]
        tei = httpx.post(url + "/predict", json={"inputs": TEXTS[0]}, timeout=30).json()
        info = httpx.get(url + "/v1/info", timeout=30).json()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        log.close()
    for got, expected in zip(ours, want):
        assert got["label"] == expected["label"] and got["scores"] == approx(expected["scores"])
    assert {p["label"]: p["score"] for p in tei} == approx(want[0]["scores"])
    assert info["endpoints"] == {"text-classification": "/v1/classify"}  # an export has its head's outputs only
    assert "is not installed here" not in (tmp_path / "server.log").read_text()  # nothing tried to import torch


def test_an_encoder_export_serves_embeddings(checkpoints, tmp_path):
    source = checkpoints["base"]
    folder = exported(source, tmp_path / "onnx")
    want = [r["embedding"] for r in pipeline("feature-extraction", source).run(TEXTS, normalize=True)]
    with client(folder) as c:  # backend chosen from the folder
        ours = c.post("/v1/embeddings", json={"inputs": TEXTS, "normalize": True}).json()["results"]
        openai = c.post("/v1/embeddings", json={"input": TEXTS, "model": "m"}).json()["data"]
    assert [r["embedding"] for r in ours] == [approx(w) for w in want]
    assert [d["embedding"] for d in openai] == [approx(w) for w in want]


def test_precisions_named_in_the_server_config_are_the_engine_s():
    from squeezebert.infer.fast import PRECISIONS
    from squeezebert.serve import config

    assert config.PRECISIONS == PRECISIONS
