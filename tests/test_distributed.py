"""Several GPUs (lab.train.distributed and the runner's side of it): the accelerate config for each strategy, the
gpus field, GPU slots in the queue, what ranks report when they fail; and, on CPUs, real 2-process runs: one that
matches the 1-process loss curve at the same effective batch, and one whose rank is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.config import TrainConfig
from lab.errors import LabError
from lab.home import lab_home
from lab.train import distributed, runner
from lab.train.distributed import Plan

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--set", "report_to=none", "--set", "eval_split=none", "--set", "save_steps=0", "--set", "sample_prompts=0",
        "--set", "logging_steps=1", "--set", "learning_rate=1e-3"]


def accelerate_loads(config: dict, tmp_path: Path):
    """The config as accelerate itself reads it (unknown keys are refused there)."""
    from accelerate.commands.config.config_args import ClusterConfig

    path = tmp_path / "accelerate.yaml"
    path.write_text(distributed.to_yaml(config, "test"))
    return ClusterConfig.from_yaml_file(str(path))


def launch_env(config: dict, tmp_path: Path) -> dict[str, str]:
    """The environment accelerate launch gives the ranks for this config (FSDP_*, ACCELERATE_*)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = tmp_path / "accelerate.yaml"
    path.write_text(distributed.to_yaml(config, "test"))
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "lab.train.worker", "run"])
    args, _, _ = _validate_launch_command(args)
    return {k: v for k, v in prepare_multi_gpu_env(args).items() if k.startswith(("FSDP_", "ACCELERATE_"))}


def test_accelerate_config_for_one_process_and_ddp(tmp_path):
    one = distributed.accelerate_config(TrainConfig(), 1)
    assert one["distributed_type"] == "NO" and one["num_processes"] == 1 and "main_process_port" not in one
    ddp = distributed.accelerate_config(TrainConfig(gpus="4"), 4)
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["num_processes"] == 4
    assert ddp["main_process_port"] == 0  # a free port each launch: runs side by side do not collide
    cpu = distributed.accelerate_config(TrainConfig(gpus="0", cpu_processes=2), 2, on_cpu=True)
    assert cpu["distributed_type"] == "MULTI_GPU"  # accelerate starts local processes through torchrun either way
    for config in (one, ddp, cpu):
        assert accelerate_loads(config, tmp_path).num_processes == config["num_processes"]


def test_accelerate_config_for_fsdp_wraps_decoder_layers_and_qlora_uses_fsdp1(tmp_path):
    from accelerate.utils import FullyShardedDataParallelPlugin, patch_environment

    full = distributed.accelerate_config(TrainConfig(gpus="2", distributed="fsdp"), 2,
                                         layer_cls=distributed.layer_class_for("qwen2"))
    assert full["distributed_type"] == "FSDP" and full["fsdp_config"]["fsdp_version"] == 2
    assert accelerate_loads(full, tmp_path).fsdp_config["fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"
    with patch_environment(**launch_env(full, tmp_path)):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.reshard_after_forward is True  # full shard
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type) and plugin.cpu_ram_efficient_loading
    qlora = distributed.accelerate_config(TrainConfig(adapter="qlora", gpus="2", distributed="fsdp"), 2)
    env = launch_env(qlora, tmp_path)  # FSDP1's plugin needs a GPU to be built; its environment does not
    assert env["FSDP_VERSION"] == "1" and env["FSDP_USE_ORIG_PARAMS"] == "false"
    assert env["FSDP_SYNC_MODULE_STATES"] == "true" and env["FSDP_SHARDING_STRATEGY"] == "FULL_SHARD"


@pytest.mark.parametrize("stage", [2, 3])
def test_accelerate_config_for_deepspeed_zero(tmp_path, stage):
    cfg = TrainConfig(gpus="8", distributed="deepspeed", deepspeed_stage=stage, grad_accum=4, max_grad_norm=0.5)
    config = distributed.accelerate_config(cfg, 8)
    ds = accelerate_loads(config, tmp_path).deepspeed_config
    assert config["distributed_type"] == "DEEPSPEED" and ds["zero_stage"] == stage
    assert (ds["gradient_accumulation_steps"], ds["gradient_clipping"]) == (4, 0.5)  # as the Trainer will check
    assert ds["zero3_init_flag"] is ds["zero3_save_16bit_model"] is (stage == 3)


def test_config_for_several_machines_counts_every_process(tmp_path):
    config = distributed.accelerate_config(TrainConfig(gpus="8"), 16, machines=2)
    loaded = accelerate_loads(config, tmp_path)
    assert (loaded.num_machines, loaded.num_processes, loaded.main_process_port) == (2, 16, 29500)


def test_gpus_field_validation():
    assert TrainConfig().validate(cuda=False) == []  # gpus 1 falls back to the CPU on a machine without GPUs
    assert TrainConfig(gpus="all").validate(cuda=False) == []
    assert TrainConfig(gpus="0", cpu_processes=2).validate(cuda=False) == []
    assert TrainConfig(gpus="2").validate(cuda=True) == []
    for bad, message in ((dict(gpus="two"), "gpus must be a number of GPUs or 'all'"),
                         (dict(gpus="2"), "set gpus 0 and cpu_processes 2"),
                         (dict(cpu_processes=2), "set gpus 0 with it"),
                         (dict(cpu_processes=0, gpus="0"), "cpu_processes must be at least 1"),
                         (dict(gpus="0", distributed="fsdp"), "use ddp"),
                         (dict(distributed="fsdp"), "no CUDA GPU is visible"),
                         (dict(gpus="0", adapter="qlora"), "gpus 0 trains on the CPU")):
        with pytest.raises(LabError, match=message):
            TrainConfig(**bad).validate(cuda=False)
    with pytest.raises(LabError, match="gpus 0 trains on the CPU"):
        TrainConfig(gpus="0", adapter="qlora").validate(cuda=True)
    assert "shards nothing" in TrainConfig(distributed="fsdp").validate(cuda=True)[0]


def test_deepspeed_needs_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(LabError, match="needs the deepspeed package"):
        TrainConfig(gpus="2", distributed="deepspeed").validate(cuda=True)


def test_gpu_slots_side_by_side_all_and_too_many():
    one, two, every = TrainConfig(gpus="1"), TrainConfig(gpus="2"), TrainConfig(gpus="all")
    assert distributed.plan_for(one, [0, 1, 2, 3], held=[]) == Plan(1, (0,))
    assert distributed.plan_for(one, [0, 1, 2, 3], held=[0, 2]) == Plan(1, (1,))  # the lowest free GPU
    assert distributed.plan_for(two, [0, 1, 2, 3], held=[0, 2]) == Plan(2, (1, 3))
    assert distributed.plan_for(two, [0, 1, 2, 3], held=[0, 1, 2]) is None  # waits for a second free GPU
    assert distributed.plan_for(every, [0, 1], held=[]) == Plan(2, (0, 1))
    assert distributed.plan_for(every, [0, 1], held=[1]) is None
    assert distributed.plan_for(one, [], held=[]) == Plan(1, ())  # no GPU: on the CPU
    assert distributed.plan_for(TrainConfig(gpus="0", cpu_processes=2), [0, 1], held=[0, 1]) == Plan(2, ())
    with pytest.raises(LabError, match="this machine has 2 GPUs"):
        distributed.plan_for(TrainConfig(gpus="4"), [0, 1], held=[])
    assert distributed.processes(TrainConfig(gpus="all"), 8) == 8 and distributed.processes(one, 0) == 1


def test_nvidia_smi_rows_and_cuda_visible_devices():
    text = ("0, GPU-aaa, NVIDIA H200, 143771, 512\n1, GPU-bbb, NVIDIA H200, 143771, 80000\n"
            "2, GPU-ccc, NVIDIA A100-SXM4-80GB, 81920, 0\n")
    gpus = distributed.parse_nvidia_smi(text)
    assert [(g.index, g.name, g.memory_gib, g.used_gib) for g in gpus][:2] == [(0, "NVIDIA H200", 140.4, 0.5),
                                                                             (1, "NVIDIA H200", 140.4, 78.1)]
    assert [g.index for g in distributed.restrict(gpus, None)] == [0, 1, 2]
    assert [g.index for g in distributed.restrict(gpus, "2,0")] == [2, 0]
    assert [g.index for g in distributed.restrict(gpus, "GPU-bbb")] == [1]
    assert distributed.restrict(gpus, "") == [] and [g.index for g in distributed.restrict(gpus, "1,7,2")] == [1]


def test_qlora_placement_per_strategy(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    ddp, fsdp = TrainConfig(adapter="qlora", gpus="4"), TrainConfig(adapter="qlora", gpus="4", distributed="fsdp")
    zero2 = TrainConfig(adapter="qlora", gpus="4", distributed="deepspeed", deepspeed_stage=2)
    assert distributed.device_map(ddp) == {"": 3} and distributed.device_map(zero2) == {"": 3}
    assert distributed.device_map(fsdp) is None  # FSDP places the shards
    assert distributed.quant_storage(ddp, "bf16") is None and distributed.quant_storage(fsdp, "bf16") == "bfloat16"
    assert distributed.quant_storage(fsdp, "fp16") == "float32"
    from lab.train.convert import common_args, quantization_config

    assert str(quantization_config(fsdp).bnb_4bit_quant_storage) == "torch.bfloat16"
    assert str(quantization_config(ddp).bnb_4bit_quant_storage) == "torch.uint8"
    optim = {c.distributed: common_args(c, Path("/tmp"), cuda=True, bf16_supported=True)["optim"] for c in (ddp, fsdp)}
    assert optim == {"ddp": "paged_adamw_8bit", "fsdp": "adamw_torch_fused"}  # FSDP cannot checkpoint paged AdamW


def record(rank: int, t: float, message: str, secondary: bool = False) -> dict:
    return {"rank": rank, "time": t, "message": message, "secondary": secondary}


def test_failure_message_names_the_rank_that_failed_first():
    peer = "RuntimeError at step 3: Connection closed by peer"
    assert distributed.failure_message([], 2) is None
    assert distributed.failure_message([record(0, 1.0, "Out of GPU memory at step 2")], 1) == \
        "Out of GPU memory at step 2"
    oom_on_1 = [record(0, 2.0, peer, True), record(1, 1.0, "Out of GPU memory at step 3")]
    assert distributed.failure_message(oom_on_1, 2) == "Process rank 1 of 2 failed: Out of GPU memory at step 3"
    killed_1 = distributed.failure_message([record(0, 2.0, peer, True)], 2)
    assert killed_1.startswith("Process rank 1 of 2 stopped without reporting an error")
    assert "ranks 2, 3 of 4" in distributed.failure_message([record(0, 1.0, peer, True),
                                                             record(1, 1.1, peer, True)], 4)


def test_rank_error_files_and_lost_peer(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    distributed.write_rank_error(tmp_path, "ValueError at step 0: bad", secondary=False)
    assert distributed.rank_errors(tmp_path)[0]["rank"] == 1
    assert distributed.lost_peer(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:4000"))
    assert not distributed.lost_peer(ValueError("bad"))


@pytest.fixture
def fake_gpus(home, monkeypatch):
    """A machine with GPUs 0 and 1 (nvidia-smi faked); launching only records the plan, as the runner would."""
    monkeypatch.setattr(distributed, "visible_gpus",
                        lambda: [distributed.Gpu(i, f"GPU-{i}", "NVIDIA H200", 140.0, 0.0) for i in (0, 1)])
    monkeypatch.setattr("lab.config.cuda_available", lambda: True)
    monkeypatch.delenv("LAB_MAX_CONCURRENT_RUNS", raising=False)
    launched: dict[str, Plan] = {}

    def launch(run, home, plan):
        launched[run.id] = plan
        info = {"gpus": list(plan.gpus), "processes": plan.processes}
        (run.run_dir / runner.LAUNCH_FILE).write_text(json.dumps(info))
        runner.update(run.id, home, status="running", pid=os.getpgrp())  # "alive": this test's process group

    monkeypatch.setattr(runner, "launch", launch)
    return launched


def test_queue_pins_one_gpu_runs_side_by_side_and_a_two_gpu_run_waits_its_turn(home, fake_gpus):
    def queue(gpus: str):
        return runner.create_run(TrainConfig(gpus=gpus, report_to="none"), home=home, start=False)[0].id

    first, second, both, after = queue("1"), queue("1"), queue("2"), queue("1")
    assert runner.dispatch(home) == [first, second]
    assert (fake_gpus[first].gpus, fake_gpus[second].gpus) == ((0,), (1,))
    assert runner.held_gpus(home) == {0: first, 1: second}
    runner.update(first, home, status="succeeded")
    assert runner.dispatch(home) == []  # one GPU free: the 2-GPU run waits, and the run queued after it too
    runner.update(second, home, status="succeeded")
    assert runner.dispatch(home) == [both] and fake_gpus[both] == Plan(2, (0, 1))
    with pytest.raises(LabError, match="this machine has 2 GPUs"):
        runner.create_run(TrainConfig(gpus="3"), home=home, start=False)
    assert runner.get_run(after, home).status == "queued"


def test_launch_files_hold_the_command_and_no_secret(home, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRET_not_written")
    run, _ = runner.create_run(TrainConfig(gpus="0", cpu_processes=2), home=home, start=False)
    plan = Plan(2, ())
    command = runner.write_launch_files(run, plan, runner.worker_env(run, home, plan))
    script = (run.run_dir / "launch.sh").read_text()
    assert " ".join(command[-4:]) in script and "CUDA_VISIBLE_DEVICES=''" in script and "hf_SECRET" not in script
    assert "--config_file" in command and runner.launch_info(run.run_dir)["processes"] == 2
    assert "2 CPU processes" in (run.run_dir / "accelerate.yaml").read_text().splitlines()[0]


def test_a_run_prepared_for_a_cluster_is_left_to_its_job(home):
    run = runner.prepare(TrainConfig(gpus="8", distributed="fsdp"), machines=2, home=home)
    info = runner.launch_info(run.run_dir)
    assert info["external"] and info["processes"] == 16 and "CUDA_VISIBLE_DEVICES" not in info["env"]
    config = (run.run_dir / "accelerate.yaml").read_text()
    assert "num_machines: 2" in config and "num_processes: 16" in config and "LlamaDecoderLayer" in config
    assert runner.dispatch(home) == [] and runner.get_run(run.id, home).status == "queued"
    with pytest.raises(LabError, match="number of GPUs on each machine"):
        runner.prepare(TrainConfig(gpus="all"), machines=2, home=home)


def test_train_tab_lists_the_gpus_and_who_holds_them(home, monkeypatch):
    from lab.ui import train_tab

    monkeypatch.setattr(distributed, "visible_gpus", lambda: [])
    assert "no GPU: runs use the CPU" in train_tab.gpus_text(home)
    monkeypatch.setattr(distributed, "visible_gpus", lambda: [distributed.Gpu(0, "u0", "NVIDIA H200", 140.4, 30.2),
                                                              distributed.Gpu(1, "u1", "NVIDIA H200", 140.4, 0.3),
                                                              distributed.Gpu(2, "u2", "NVIDIA H200", 140.4, 9.0)])
    monkeypatch.setattr(runner, "held_gpus", lambda home: {0: "20260101-000000-sft-ab12"})
    rows = train_tab.gpus_text(home).splitlines()[2:]
    assert "| 0 | NVIDIA H200 | 30.2 of 140 GiB | held by run `20260101-000000-sft-ab12` |" == rows[0]
    assert rows[1].endswith("| free |") and rows[2].endswith("| in use by another process |")


def test_train_tab_estimate_counts_every_process_in_the_effective_batch(lab_app):
    from gradio_client import Client

    client = Client(lab_app.url, verbose=False)
    assert "no GPU: runs use the CPU" in client.predict(api_name="/train_gpus")[1]
    values = {f: getattr(TrainConfig(), f) for f in TrainConfig.__dataclass_fields__}
    text = client.predict(**{**values, "gpus": "0", "cpu_processes": 2, "grad_accum": 2},
                          api_name="/train_estimate")[1]
    assert "effective batch **16** (4 per CPU process × 2 accumulated × 2 CPU processes)" in text


def test_bench_dry_run_prints_the_runs_and_refuses_batches_that_do_not_divide(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import multi_gpu

    multi_gpu.dry_run(multi_gpu.parser().parse_args(["--dry-run", "--runs", "1:ddp,2:fsdp"]))
    shown = capsys.readouterr().out
    assert "effective batch 32" in shown and "--set gpus=2 --set distributed=fsdp" in shown
    assert "grad_accum=4" in shown and "grad_accum=2" in shown  # the same effective batch on 1 and 2 GPUs
    assert "fsdp_transformer_layer_cls_to_wrap: Qwen2DecoderLayer" in shown
    with pytest.raises(SystemExit, match="not a multiple"):
        multi_gpu.dry_run(multi_gpu.parser().parse_args(["--dry-run", "--runs", "3:ddp"]))
    with pytest.raises(SystemExit):
        multi_gpu.parser().parse_args(["--runs", "2:zero"])
    assert "GPUS:STRATEGY" in capsys.readouterr().err
    assert multi_gpu.curve_gap([(1, 2.0), (2, 1.0)], [(1, 2.0), (2, 1.1)]) == 0.1


# --- real runs of several processes on the CPU (gloo) -----------------------------------------------------------


@pytest.fixture(scope="module")
def cpu_home(tmp_path_factory):
    from lab.models import tiny_model_path

    home = lab_home(tmp_path_factory.mktemp("distributed_home"))
    tiny_model_path(home)
    return home


def lab(home, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_HOME": str(home.root),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "lab", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def train_losses(home, *sets: str) -> tuple[dict, list[tuple[int, float]]]:
    result = lab(home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=4", *sets, "--wait", "--json")
    done = json.loads(result.stdout)
    assert done["status"] == "succeeded", (done.get("error"), result.stderr[-2000:])
    rows = [json.loads(line) for line in Path(done["run_dir"], "metrics.jsonl").read_text().splitlines()]
    return done, [(r["step"], r["loss"]) for r in rows if r["split"] == "train" and "loss" in r]


def test_two_cpu_processes_follow_the_one_process_loss_curve(cpu_home):
    """2 processes × batch 2 see the same 4 rows per step as 1 × batch 4 (accelerate deals the sampler's batches
    out in turn), and the loss is averaged over all their tokens, so only float summation order differs: measured
    under 1e-6 relative; 1e-4 still tells apart any real difference (batch 2 alone differs by ~1% at step 1)."""
    _, one = train_losses(cpu_home, "--set", "batch_size=4")
    two_run, two = train_losses(cpu_home, "--set", "batch_size=2", "--set", "gpus=0", "--set", "cpu_processes=2")
    assert [s for s, _ in two] == [1, 2, 3, 4]  # one row per step: only rank 0 writes metrics
    for (step, a), (_, b) in zip(one, two):
        assert b == pytest.approx(a, rel=1e-4), (step, one, two)
    run_dir = Path(two_run["run_dir"])
    assert runner.launch_info(run_dir)["processes"] == 2
    assert "distributed_type: MULTI_GPU" in (run_dir / "accelerate.yaml").read_text()
    assert (run_dir / "final" / "model.safetensors").exists()


def rank_pid(run_id: str, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"LAB_RUN_ID={run_id}".encode() in env and f"RANK={rank}".encode() in env:
            return int(entry.name)
    return None


def test_a_killed_rank_fails_the_whole_run_and_leaves_no_process(cpu_home):
    started = lab(cpu_home, "train", "recipes/tiny-sft.yaml", *FAST, "--set", "max_steps=400", "--set", "batch_size=2",
                  "--set", "gpus=0", "--set", "cpu_processes=2", "--json")
    run_id = json.loads(started.stdout)["id"]
    deadline = time.time() + 180
    while not runner.read_metrics(run_id, cpu_home) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(rank_pid(run_id, 1), signal.SIGKILL)
    deadline = time.time() + 60
    while runner.get_run(run_id, cpu_home).status == "running" and time.time() < deadline:
        time.sleep(0.2)  # no reconcile: the ranks and the supervisor record it themselves
    run = runner.get_run(run_id, cpu_home)
    assert run.status == "failed" and run.finished_at, run
    assert "rank 1 of 2 stopped without reporting an error" in run.error
    while runner.run_processes(run) and time.time() < deadline:
        time.sleep(0.2)
    assert runner.run_processes(run) == []  # supervisor, launcher and rank 0 all gone
    assert runner.get_run(run_id, cpu_home).status == "failed"


# --- on GPUs (through the device tool: pytest -m gpu) -----------------------------------------------------------


def cuda_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@pytest.mark.gpu
@pytest.mark.skipif(cuda_count() < 1, reason="needs a CUDA GPU")
@pytest.mark.parametrize("sets", [["--set", "distributed=fsdp"], ["--set", "distributed=fsdp", "--set", "adapter=lora"]],
                         ids=["fsdp-full", "fsdp-lora"])
def test_fsdp_path_on_one_gpu_saves_a_loadable_model(cpu_home, sets):
    """FSDP's code path (sharding, rank-0 loading, the full state dict gathered for final/) with one process."""
    done, losses = train_losses(cpu_home, "--set", "batch_size=4", *sets)
    assert losses[-1][1] < losses[0][1] + 0.5
    assert "distributed_type: FSDP" in Path(done["run_dir"], "accelerate.yaml").read_text()
    from lab.models import load_for_generation

    model, _ = load_for_generation(str(Path(done["run_dir"], "final")))
    assert model.num_parameters() > 1_000_000


@pytest.mark.gpu
@pytest.mark.skipif(cuda_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_gpus_follow_the_one_gpu_loss_curve(cpu_home, strategy):
    """bf16 on GPUs: the curves agree to a few parts in a thousand, not to float32's millionths."""
    _, one = train_losses(cpu_home, "--set", "batch_size=4")
    _, two = train_losses(cpu_home, "--set", "batch_size=2", "--set", "gpus=2", "--set", f"distributed={strategy}")
    for (step, a), (_, b) in zip(one, two):
        assert b == pytest.approx(a, rel=2e-2), (step, one, two)


@pytest.mark.gpu
@pytest.mark.skipif(cuda_count() < 2, reason="needs 2 CUDA GPUs")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_qlora_over_two_gpus_saves_an_adapter(cpu_home, strategy):
    pytest.importorskip("bitsandbytes")
    done, _ = train_losses(cpu_home, "--set", "adapter=qlora", "--set", "learning_rate=2e-4", "--set", "gpus=2",
                           "--set", f"distributed={strategy}")
    assert Path(done["run_dir"], "final", "adapter_config.json").exists()
