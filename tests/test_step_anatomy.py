"""Where a step's time goes (lab/train/profiling.py's profile.json, bench/step_anatomy.py's table).

One real run: the bench trains the tiny Qwen2 architecture (bench/configs/test-tiny-qwen2.json) packed, through
``python -m lab train`` with LAB_PROFILE_STEPS, on whatever device the machine has (the CPU here; on the GPU machine
the same tests check CUDA kernels, and the gpu-marked one what only kernels have). The rules are checked on kernel
names seen on H100/H200 runs, and the head's backward on a tiny model profiled in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.train.profiling import (
    CATEGORIES,
    HEAD_RANGE,
    HeadRange,
    Ranges,
    anatomy,
    causal_lm,
    classify,
    idle_causes,
    kernel_pieces,
    product_flops,
    split_union,
    union_seconds,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "bench/configs/test-tiny-qwen2.json"


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """bench/step_anatomy.py at one batch size, 5 steps with steps 3-4 profiled: (its JSON, its stdout, the run)."""
    folder = tmp_path_factory.mktemp("anatomy")
    out = folder / "anatomy.json"
    done = subprocess.run([sys.executable, "bench/step_anatomy.py", "--arch", "test-tiny-qwen2", "--batches", "2",
                           "--max-length", "128", "--steps", "5", "--profile", "2:2", "--home", str(folder / "home"),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    result = document["results"][0]
    assert "error" not in result, result
    return document, done.stdout, Path(result["run_dir"])


def test_the_bench_prints_a_row_a_batch_from_the_runs_profile(bench):
    document, stdout, run_dir = bench
    result = document["results"][0]
    assert result["batch"] == 2 and result["steady_tokens_per_second"] > 0
    mfu = result["steady_tokens_per_second"] * document["flops_per_token"] / document["peak_flops"]
    assert result["mfu"] == round(mfu, 4)  # bench/common.py's arithmetic (0.0 on a CPU against an H100's peak)
    assert result["profile"] == json.loads((run_dir / "profile.json").read_text())
    header, row = stdout.split("shares are of the step's wall time\n")[1].splitlines()[:2]
    assert all(category in header for category in CATEGORIES)
    assert row.split()[0] == "2" and row.count("%") == 2 + len(CATEGORIES)  # MFU, busy, then each category
    assert "top names at batch 2" in stdout


def test_the_categories_add_up_to_the_profiled_wall_time(bench):
    _, _, run_dir = bench
    parts = json.loads((run_dir / "profile.json").read_text())
    rows = parts["categories"]
    assert list(rows) == list(CATEGORIES) and parts["steps"] == 2
    assert sum(r["seconds"] for r in rows.values()) == pytest.approx(parts["wall_seconds"], abs=1e-5 * len(rows))
    assert sum(r["share"] for r in rows.values()) == pytest.approx(1, abs=1e-3)
    assert sum(r["seconds"] for c, r in rows.items() if c != "idle") == pytest.approx(parts["busy_seconds"], abs=1e-4)
    assert [s["step"] for s in parts["per_step"]] == [3, 4]  # the steps the Trainer counts as 3 and 4
    assert all(0 < s["busy_ms"] and 0 < s["wall_ms"] for s in parts["per_step"])
    assert sum(s["wall_ms"] for s in parts["per_step"]) / 1000 <= parts["wall_seconds"]


def test_a_real_step_is_sorted_by_what_ran_and_where(bench):
    _, stdout, run_dir = bench
    parts = json.loads((run_dir / "profile.json").read_text())
    rows = parts["categories"]
    assert parts["head_range"]  # the hooks found the causal LM and marked its head
    for category in ("lm_head_loss", "attention", "other_gemm", "elementwise", "optimizer"):
        assert rows[category]["seconds"] > 0, category
    assert rows["other_gemm"]["flops"] > 0 and rows["other_gemm"]["tflops"] > 0
    assert rows["lm_head_loss"]["flops"] > 0
    # the rules name nearly everything a step runs; what they miss shows in other's top names
    assert rows["other"]["seconds"] < 0.15 * parts["busy_seconds"], rows["other"]["top"]
    idle = rows["idle"]
    assert idle["top"] and sum(seconds for _, seconds in idle["top"]) <= idle["seconds"] + 1e-5
    # each category's time also by the operator that launched it, with what it ran under (a remedy's target)
    launched = dict(rows["elementwise"]["top_ops"])
    assert launched and all(seconds > 0 for seconds in launched.values())
    assert any(name.startswith("aten::") for name in launched), launched
    assert "the operators that launched them" in stdout
    text = (run_dir / "profile.txt").read_text()
    assert text.startswith("2 step(s) in") and "lm_head_loss" in text and "Self CPU %" in text
    assert "idle a step, by cause:" in text


@pytest.mark.parametrize("own, category", [
    (("ampere_bf16_s16816gemm_bf16_128x128_ldg8_f2f_stages_64x3_tn",), "other_gemm"),
    (("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off",
      "aten::mm"), "other_gemm"),
    (("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT", "aten::addmm"), "other_gemm"),
    (("flash_fwd_kernel",), "attention"),
    ((("void pytorch_flash::flash_bwd_dq_dk_dv_loop_seqk_parallel_kernel<Flash_bwd_kernel_traits<64, 128, "
       "cutlass::bfloat16_t>>"),), "attention"),
    (("triton_red_fused__log_softmax_nll_loss_cross_entropy_0",), "lm_head_loss"),
    (("liger_cross_entropy_kernel",), "lm_head_loss"),
    (("multi_tensor_apply_kernel",), "optimizer"),
    ((("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<at::native::(anonymous namespace)::"
       "FusedOptimizerTensorListMetadata<4>>"), "aten::_fused_adamw_"), "optimizer"),
    (("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)",), "comm_memcpy"),
    (("Memcpy HtoD (Pageable -> Device)",), "comm_memcpy"),
    (("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>",
      "aten::add"), "elementwise"),
    (("_rms_norm_forward_kernel",), "elementwise"),
    (("_triton_rope",), "elementwise"),
    (("_swiglu_backward_kernel",), "elementwise"),
    (("some_kernel_no_rule_names",), "other"),
])
def test_kernel_names_sort_into_their_categories(own, category):
    assert classify(own, ()) == category


def test_where_a_kernel_ran_outranks_what_it_is():
    gemm = ("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NNT", "aten::mm")
    assert classify(gemm, ("aten::matmul", "aten::linear", HEAD_RANGE)) == "lm_head_loss"
    # backward: the node, then what its forward operator ran under (Ranges links them by sequence number)
    backward = ("autograd::engine::evaluate_function: MmBackward0", "aten::mm", "aten::linear", HEAD_RANGE)
    assert classify(gemm, ("MmBackward0",) + backward) == "lm_head_loss"
    add = ("vectorized_elementwise_kernel<4, CUDAFunctor_add>", "aten::add_")
    assert classify(add, ("Optimizer.step#AdamW.step",)) == "optimizer"
    # a cast the autocast inside aten::linear launches is elementwise work, not a matrix product
    cast = ("unrolled_elementwise_kernel<direct_copy_kernel_cuda>", "aten::copy_")
    assert classify(cast, ("aten::_to_copy", "aten::to", "aten::linear")) == "elementwise"


def test_overlapping_pieces_share_their_time_and_add_up_to_the_union():
    pieces = [(0, 2, "a"), (1, 3, "b"), (5, 6, "a"), (7, 7, "b")]
    assert split_union(pieces) == {"a": 2.5, "b": 1.5}
    assert sum(split_union(pieces).values()) == union_seconds([(s, e) for s, e, _ in pieces])


def test_without_linked_ids_kernels_are_matched_to_their_operators_in_launch_order():
    """torch 2.11's events carry no kernel-to-operator link; each operator lists its kernels (name, duration), as
    torch's profiler fills ``FunctionEvent.kernels``: two operators launching the same kernel each get their own."""
    from torch.autograd import DeviceType
    from torch.autograd.profiler_util import FunctionEvent

    def event(name, start, end, **kw):
        e = FunctionEvent(id=0, name=name, thread=0, start_us=start, end_us=end, **kw)
        if hasattr(e, "linked_correlation_id"):
            del e.linked_correlation_id  # as in torch 2.11, which has no such attribute
        return e

    first, second = event("aten::mm", 0, 5), event("aten::mm", 10, 15)
    kernels = [event("gemm", 2, 6, device_type=DeviceType.CUDA), event("gemm", 12, 16, device_type=DeviceType.CUDA),
               event("gemm", 20, 23, device_type=DeviceType.CUDA)]
    first.append_kernel("gemm", 0, 4)
    second.append_kernel("gemm", 0, 4)
    pieces = kernel_pieces(kernels, [second, first])
    assert [(start, op) for start, _, _, op in pieces] == [(2, first), (12, second), (20, None)]


def test_idle_time_is_put_down_to_the_sync_the_cpu_came_back_from_or_else_to_the_next_launch():
    """Kernels at 0-10, 30-40 and 45-50 ms: the CPU came back from an ``.item()``'s synchronisation at 25, so the
    first gap (20 ms) is that sync's; no sync ended in the second (5 ms), so it is the next kernel's launcher's. A
    sync that shows returning just before the GPU drained (the clocks' skew) still counts."""
    from torch.autograd.profiler_util import FunctionEvent

    def event(name, start, end, parent=None):
        e = FunctionEvent(id=0, name=name, thread=0, start_us=start * 1000, end_us=end * 1000)
        if parent is not None:
            e.cpu_parent = parent
            parent.append_cpu_child(e)
        return e

    item = event("aten::item", 12, 26)
    sync = event("cudaStreamSynchronize", 13, 25, item)
    linear = event("aten::linear", 41, 44)
    mm = event("aten::mm", 42, 44, linear)
    ops = [item, sync, linear, mm]
    named = [(0, 10_000, "k1", None, "other"), (30_000, 40_000, "k2", None, "other"),
             (45_000, 50_000, "gemm", mm, "other_gemm")]
    causes = idle_causes(named, ops, Ranges(ops), idle=0.030, top=8)
    assert causes == [["sync in aten::item", 0.020], ["before aten::mm < aten::linear", 0.005],
                      ["outside the pieces", 0.005]]
    early = event("cudaStreamSynchronize", 5, 9.99, event("aten::nonzero", 4, 10))
    skewed = [early, early.cpu_parent]
    assert idle_causes(named[:2], skewed, Ranges(skewed), idle=0.020, top=8) == [["sync in aten::nonzero", 0.020]]


def test_the_in_place_product_of_the_fused_lora_backward_counts_its_flops():
    """torch counts no FLOPs for ``addmm_``; the fused LoRA layer's backward runs its largest products through it."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as profiler:
        torch.zeros(8, 5).addmm_(torch.randn(8, 3), torch.randn(3, 5))
        torch.randn(8, 3) @ torch.randn(3, 5)
    ops = {e.name: e for e in profiler.events()}
    assert ops["aten::addmm_"].flops == 0 and product_flops(ops["aten::addmm_"]) == 2 * 8 * 3 * 5
    assert product_flops(ops["aten::mm"]) == ops["aten::mm"].flops == 2 * 8 * 3 * 5


def test_the_heads_backward_matrix_products_count_as_head():
    """A tiny Qwen2 profiled in-process: the head's three matrix products (forward, and the input's and weight's
    gradients, reached by autograd's sequence numbers) are all head FLOPs, not other GEMMs."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    values = json.loads(TINY.read_text())
    config = AutoConfig.for_model(**{k: v for k, v in values.items() if k != "architectures"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], with_flops=True) as profiler:
        head = HeadRange(model)
        model(input_ids=ids, labels=ids).loss.backward()
        head.remove()
    rows = anatomy(profiler.events(), wall=1.0, steps=1)["categories"]
    products = 3 * 2 * ids.numel() * config.hidden_size * config.vocab_size
    assert rows["lm_head_loss"]["flops"] == products
    assert "flops" not in rows["elementwise"]  # torch's count of adds and multiplies is left out
    assert not model._forward_hooks and not model.model._forward_hooks  # removed after the window


def test_the_causal_lm_is_found_inside_a_peft_wrapper():
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM

    values = json.loads(TINY.read_text())
    model = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(**{k: v for k, v in values.items() if k != "architectures"}))
    assert causal_lm(model) is model
    wrapped = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"]))
    assert causal_lm(wrapped) is model and causal_lm(model.model) is None


@pytest.mark.gpu
def test_on_a_gpu_kernels_reach_their_launching_operators(bench):
    """Only kernels have launchers: the FLOPs (on the operators) reach the GEMM and head categories only if every
    kernel found the operator that launched it; attention's kernels are named, not found through an operator."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    _, _, run_dir = bench
    parts = json.loads((run_dir / "profile.json").read_text())
    rows = parts["categories"]
    assert parts["device"] == "cuda" and parts["pieces"] == "kernels"
    assert rows["other_gemm"]["flops"] > 0 and rows["lm_head_loss"]["flops"] > 0
    assert rows["attention"]["seconds"] > 0 and rows["optimizer"]["seconds"] > 0
    assert 0 < parts["busy_share"] <= 1
