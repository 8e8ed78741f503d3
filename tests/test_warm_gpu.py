"""The warm worker on a CUDA GPU (through the device tool: ``pytest -m gpu tests/test_warm_gpu.py -s``): the server
imports torch, transformers and TRL without starting CUDA, so the runs it forks can use the GPU; full SFT and DPO of
the tiny model, each forked, each trained on the GPU."""

from __future__ import annotations

import json

import pytest

from tests.test_warm import SFT, lab

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from lab.home import lab_home
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("warm-gpu") / "home")
    tiny_model_path(home)
    for kind in ("sft", "preference"):
        imported = lab(home, "data", "import", f"sample:{kind}", "--name", f"warm-{kind}", "--max-rows", "64")
        assert imported.returncode == 0, imported.stderr
    started = lab(home, "warm", "--idle", "600", "--json")
    assert started.returncode == 0, started.stderr + (home.root / "logs" / "warm.log").read_text()
    yield home, json.loads(started.stdout)
    lab(home, "warm", "--stop")


@pytest.mark.parametrize("recipe", ["sft", "dpo"])
def test_a_forked_run_trains_on_the_gpu(server, recipe):
    home, state = server
    args = SFT if recipe == "sft" else [SFT[0], SFT[1].replace("tiny-sft", "tiny-dpo"), "--set", "dataset=warm-preference",
                                        *SFT[4:]]
    done = lab(home, *args, "--set", "max_steps=3", "--wait", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = json.loads(done.stdout)
    log = open(f"{run['run_dir']}/log.txt").read()
    assert f"started by the warm worker (pid {state['pid']})" in log, log[-3000:]
    summary = json.loads(open(f"{run['run_dir']}/summary.json").read())
    print(recipe, summary.get("device"), summary.get("phases"))
    assert summary["device"] != "cpu" and summary["peak_gpu_memory_gib"] > 0, summary
