"""Several GPUs: the GPUs this machine has, which of them a queued run gets, the accelerate config file the
run is launched with, and what each process (rank) reports when it fails. docs/multi-gpu.md has the recipes.

A run asks for ``gpus`` (a count, 'all', or 0 for the CPU) and a ``distributed`` strategy; the runner turns
that into a ``Plan`` (how many processes, on which GPUs) with ``plan_for`` and writes
``accelerate_config(cfg, plan.processes, ...)`` into the run directory as ``accelerate.yaml``, beside
``launch.sh``, the exact command, so the run can be started again by hand. The config writer, the GPU
allocation and the failure message are pure functions (tests/test_distributed.py); ``visible_gpus`` asks
nvidia-smi, and the rank-error helpers read and write ``RUN_DIR/errors/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from lab.config import TrainConfig
from lab.errors import LabError

ERRORS_DIR = "errors"
# Messages of the collectives (gloo, NCCL) when another rank is gone: the sign of a secondary failure.
LOST_PEER_MARKERS = ("closed by peer", "reset by peer", "remote worker crashing", "NCCL communicator was aborted",
                     "Broken pipe")


@dataclass(frozen=True)
class Gpu:
    index: int  # as nvidia-smi and CUDA_VISIBLE_DEVICES number it
    uuid: str
    name: str
    memory_gib: float
    used_gib: float  # by any process, this run's or not


@dataclass(frozen=True)
class Plan:
    """How a run is launched: ``processes`` ranks, on ``gpus`` (machine indices; empty on the CPU)."""

    processes: int
    gpus: tuple[int, ...]

    @property
    def on_cpu(self) -> bool:
        return not self.gpus

    def describe(self) -> str:
        if self.on_cpu:
            return f"{self.processes} CPU process{'es' if self.processes > 1 else ''}"
        return f"GPU{'s' if len(self.gpus) > 1 else ''} {','.join(map(str, self.gpus))}"


def parse_nvidia_smi(text: str) -> list[Gpu]:
    """Rows of ``nvidia-smi --query-gpu=index,uuid,name,memory.total,memory.used --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        index, uuid, *name, total, used = parts  # a name may hold commas
        gpus.append(Gpu(int(index), uuid, ", ".join(name), round(float(total) / 1024, 1),
                        round(float(used) / 1024, 1)))
    return gpus


def restrict(gpus: list[Gpu], visible: str | None) -> list[Gpu]:
    """The GPUs a CUDA_VISIBLE_DEVICES value (indices or UUIDs) leaves, in its order; all of them when unset."""
    if visible is None:
        return gpus
    chosen = []
    for item in (v.strip() for v in visible.split(",") if v.strip()):
        match = [g for g in gpus if str(g.index) == item or g.uuid == item]
        if not match:
            break  # CUDA ignores everything after the first invalid entry
        chosen.append(match[0])
    return chosen


# nvidia-smi's last answer (monotonic time, text): a launch asks for the GPUs two or three times (the checks, the
# dispatcher), and one answer serves them all.
_last_smi: tuple[float, str] = (-1e9, "")
SMI_FRESH_S = 10.0


def visible_gpus() -> list[Gpu]:
    """This machine's NVIDIA GPUs as nvidia-smi reports them (the app's own process creates no CUDA context, which
    would hold memory on every GPU), limited to the app's CUDA_VISIBLE_DEVICES; [] without a GPU or driver."""
    global _last_smi
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    if time.monotonic() - _last_smi[0] > SMI_FRESH_S:
        try:
            out = subprocess.run([exe, "--query-gpu=index,uuid,name,memory.total,memory.used",
                                  "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if out.returncode != 0:
            return []
        _last_smi = (time.monotonic(), out.stdout)
    return restrict(parse_nvidia_smi(_last_smi[1]), os.environ.get("CUDA_VISIBLE_DEVICES"))


def gpus_needed(cfg: TrainConfig, gpu_count: int) -> int:
    """GPUs a run needs on a machine with ``gpu_count`` GPUs; 0 = it trains on the CPU."""
    if cfg.gpus == "0" or gpu_count == 0:
        return 0
    return gpu_count if cfg.gpus == "all" else int(cfg.gpus)


def processes(cfg: TrainConfig, gpu_count: int) -> int:
    """How many processes the run starts (what the effective batch is multiplied by)."""
    return gpus_needed(cfg, gpu_count) or (cfg.cpu_processes if cfg.gpus == "0" else 1)


def check_fits(cfg: TrainConfig, gpu_count: int) -> None:
    """Refuse a run this machine can never start (more GPUs asked for than it has)."""
    need = gpus_needed(cfg, gpu_count)
    if need > gpu_count:
        raise LabError(f"gpus {cfg.gpus}: this machine has {gpu_count} GPU{'s' if gpu_count != 1 else ''} "
                       f"(nvidia-smi); ask for at most {gpu_count}, or 'all'.")


def allocate(need: int, gpus: Sequence[int], held: Iterable[int]) -> tuple[int, ...] | None:
    """The lowest-numbered ``need`` GPUs of ``gpus`` that no running run holds; None while too few are free."""
    taken = set(held)
    free = [g for g in gpus if g not in taken]
    return tuple(free[:need]) if len(free) >= need else None


def plan_for(cfg: TrainConfig, gpus: Sequence[int], held: Iterable[int]) -> Plan | None:
    """The plan for a queued run on a machine with ``gpus`` while running runs hold ``held``: None = wait."""
    check_fits(cfg, len(gpus))
    need = gpus_needed(cfg, len(gpus))
    if need == 0:
        return Plan(processes(cfg, len(gpus)), ())
    chosen = allocate(need, gpus, held)
    return Plan(need, chosen) if chosen is not None else None


def shards_weights(cfg: TrainConfig) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, ZeRO-3): no ``device_map`` then, and a
    4-bit base must be stored in a float dtype so it can be sharded (bitsandbytes ``quant_storage``)."""
    return cfg.distributed == "fsdp" or (cfg.distributed == "deepspeed" and cfg.deepspeed_stage == 3)


def quant_storage(cfg: TrainConfig, precision: str) -> str | None:
    """The dtype QLoRA packs 4-bit weights in: uint8 (None) unless sharded, where it must match the model's
    other weights: bf16 under bf16, fp32 under fp16 (PEFT's advice for stable fp16 mixed precision)."""
    if cfg.adapter != "qlora" or not shards_weights(cfg):
        return None
    return "bfloat16" if precision == "bf16" else "float32"


def device_map(cfg: TrainConfig) -> dict[str, int] | None:
    """Where a 4-bit base is loaded: the process's own GPU (LOCAL_RANK counts the GPUs CUDA_VISIBLE_DEVICES
    leaves it) unless sharded, where accelerate places the shards."""
    if shards_weights(cfg):
        return None
    return {"": int(os.environ.get("LOCAL_RANK", "0"))}


def accelerate_config(cfg: TrainConfig, processes: int, *, on_cpu: bool = False, layer_cls: str | None = None,
                      machines: int = 1) -> dict[str, Any]:
    """The accelerate config (``accelerate launch --config_file``) for a run of ``processes`` ranks in all.

    One process: distributed_type NO. Several, ddp (or any strategy on the CPU): MULTI_GPU, which makes
    accelerate start them through torchrun; on the CPU each then joins a gloo group. fsdp: FSDP2 full shard
    (FSDP1 for QLoRA, whose 4-bit weights PEFT and bitsandbytes shard with use_orig_params off), wrapped per
    decoder layer (``layer_cls``; accelerate falls back to the model's ``_no_split_modules``, the same
    classes). deepspeed: ZeRO ``deepspeed_stage``. Precision is left out: the run's TrainingArguments set it.
    """
    # gpu_ids all: the runner pins a run to its GPUs with CUDA_VISIBLE_DEVICES (none for a CPU run). use_cpu
    # stays off, as it would only change accelerate's threads per process on the CPU (1, as for one process).
    config: dict[str, Any] = {"compute_environment": "LOCAL_MACHINE", "debug": False, "num_machines": machines,
                              "machine_rank": 0, "num_processes": processes, "gpu_ids": "all", "use_cpu": False,
                              "downcast_bf16": "no"}
    strategy = "ddp" if on_cpu else cfg.distributed
    if processes == 1 and strategy == "ddp":
        return {**config, "distributed_type": "NO"}
    # Port 0: accelerate picks a free one, so runs side by side on one machine do not collide.
    config.update(main_process_port=0 if machines == 1 else 29500, rdzv_backend="static", same_network=True)
    if strategy == "ddp":
        return {**config, "distributed_type": "MULTI_GPU"}
    if strategy == "fsdp":
        return {**config, "distributed_type": "FSDP", "fsdp_config": fsdp_config(cfg, layer_cls)}
    return {**config, "distributed_type": "DEEPSPEED", "deepspeed_config": deepspeed_config(cfg)}


def fsdp_config(cfg: TrainConfig, layer_cls: str | None) -> dict[str, Any]:
    common: dict[str, Any] = {
        "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        # Whole-model safetensors in final/ and the checkpoints, loadable without FSDP.
        "fsdp_state_dict_type": "FULL_STATE_DICT",
        # Rank 0 reads the weights, the others receive them: one copy in host memory instead of one per GPU.
        "fsdp_cpu_ram_efficient_loading": True,
        "fsdp_offload_params": False,
        # The run's gradient_checkpointing does this; the Trainer refuses both at once.
        "fsdp_activation_checkpointing": False,
    }
    if layer_cls:
        common["fsdp_transformer_layer_cls_to_wrap"] = layer_cls
    if cfg.adapter == "qlora":
        return {"fsdp_version": 1, **common, "fsdp_sharding_strategy": "FULL_SHARD",
                "fsdp_backward_prefetch": "BACKWARD_PRE", "fsdp_forward_prefetch": False,
                "fsdp_sync_module_states": True, "fsdp_use_orig_params": False}
    return {"fsdp_version": 2, **common, "fsdp_reshard_after_forward": True}  # True = full shard


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    stage3 = cfg.deepspeed_stage == 3
    # Accumulation and clipping as the run config has them (the Trainer checks they agree).
    return {"zero_stage": cfg.deepspeed_stage, "gradient_accumulation_steps": cfg.grad_accum,
            "gradient_clipping": cfg.max_grad_norm, "offload_optimizer_device": "none",
            "offload_param_device": "none", "zero3_init_flag": stage3, "zero3_save_16bit_model": stage3}


def decoder_layer_class(model: str, home: Any) -> str | None:
    """The decoder-layer class FSDP wraps one by one, from the model's config alone; None when it cannot be told
    (accelerate then reads the model's ``_no_split_modules`` at run time: the same classes)."""
    from lab.train.loading import model_type

    try:
        return layer_class_for(model_type(model, home))
    except Exception:  # noqa: BLE001 - a hint for the config file, never a reason to refuse a launch
        return None


def layer_class_for(model_type: str) -> str | None:
    """``llama`` → ``LlamaDecoderLayer``: the ``_no_split_modules`` of the architecture's causal-LM class."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
    return ",".join(model_class._no_split_modules or []) or None


def to_yaml(config: dict[str, Any], header: str) -> str:
    import yaml

    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + yaml.safe_dump(config, sort_keys=False)


# --- what each rank reports -------------------------------------------------------------------------------------


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another rank is gone (not this rank's own fault)."""
    import torch.distributed as dist

    return isinstance(err, dist.DistError) or any(m in str(err) for m in LOST_PEER_MARKERS)


def write_rank_error(run_dir: Path, message: str, *, secondary: bool) -> None:
    """``errors/rank-N.json``: this rank's failure, written before it exits, so the runner can name the rank that
    failed first whichever process the launcher happens to report."""
    folder = Path(run_dir) / ERRORS_DIR
    folder.mkdir(exist_ok=True)
    record = {"rank": rank(), "time": time.time(), "message": message, "secondary": secondary}
    (folder / f"rank-{rank()}.json").write_text(json.dumps(record))


def rank_errors(run_dir: Path) -> list[dict[str, Any]]:
    """The ranks' error records, earliest first."""
    records = []
    for path in sorted((Path(run_dir) / ERRORS_DIR).glob("rank-*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(records, key=lambda r: r["time"])


def failure_message(records: list[dict[str, Any]], world: int) -> str | None:
    """One sentence for a failed run of ``world`` ranks: the first rank's own error; else the ranks that died
    without a word (killed: a signal, or the kernel's out-of-memory killer) when the others only lost contact."""
    if not records:
        return None
    primary = [r for r in records if not r["secondary"]]
    if world == 1:
        return (primary or records)[0]["message"]
    if primary:
        first = primary[0]
        return f"Process rank {first['rank']} of {world} failed: {first['message']}"
    silent = sorted(set(range(world)) - {r["rank"] for r in records})
    if silent:
        names = ", ".join(map(str, silent))
        return (f"Process rank{'s' if len(silent) > 1 else ''} {names} of {world} stopped without reporting an "
                f"error (killed by a signal, or out of memory?); the other ranks then lost contact with it.")
    return f"Process rank {records[0]['rank']} of {world} failed: {records[0]['message']}"
