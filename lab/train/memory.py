"""Training in less GPU memory than gradient checkpointing alone: the layers' saved inputs kept in the CPU's
memory (:func:`offloaded_checkpoint`), and MLPs run over the sequence in tiles (:func:`tile_mlps`).

With checkpointing, what a run keeps per token is each layer's input (layers × hidden width × 2 bytes) plus, for
the one layer being recomputed, that layer's activations, of which the MLP's intermediate-width tensors are the
largest part. Offloading removes the first term from the GPU; tiling bounds the second to one tile of the MLP.
Both trade compute or PCIe traffic for memory, so ``lab.train.speed`` turns them on only when the estimate says
a batch does not fit without them (``offload_activations`` and ``tiled_mlp`` in the config).

Both recompute in the backward pass what the forward pass computed without saving it; the random-number state
of each recomputed piece is restored first, so dropout (LoRA's) draws the same masks both times.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lab.errors import LabError
from lab.train.estimate import GIB, TILE_TOKENS, host_memory_available  # TILE_TOKENS: the estimate counts with it

DEVICE_TYPES = ("cuda", "cpu")


def autocast_state() -> list[tuple[str, bool, Any]]:
    return [(kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)) for kind in DEVICE_TYPES]


@contextlib.contextmanager
def replayed(autocast: list[tuple[str, bool, Any]], rng: Any, device: Any) -> Iterator[None]:
    """Gradients on, the forward's autocast settings and random-number state, the caller's state kept outside."""
    devices = [device] if device.type == "cuda" else []
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.random.fork_rng(devices=devices))
        set_rng_state(rng, device)
        stack.enter_context(torch.enable_grad())
        for kind, enabled, dtype in autocast:
            stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled))
        yield


def rng_state(device: Any) -> tuple[Any, Any]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_rng_state(state: tuple[Any, Any], device: Any) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


# --------------------------------------------------------------------------- offloaded checkpoints


class HostBuffers:
    """Page-locked CPU buffers for the offloaded layer inputs, kept for the next step.

    torch's pinned-memory allocator rounds each request up to a power of two, so a 2.8 GB layer input (344k tokens
    of an 8B model) takes 4 GiB and 32 layers ask for more than the host has. These buffers are allocated at the
    size asked (rounded up by at most 1/8, so that batches of similar lengths share them) and page-locked once
    (``cudaHostRegister``). A request takes the smallest free buffer that holds it.
    A buffer never given back (a backward pass that did not run) is only left out of the pool. Free buffers too
    small for a request are released first, so the pool stays near one step's inputs even when the batches'
    lengths vary."""

    def __init__(self) -> None:
        self.free: list[torch.Tensor] = []

    def take(self, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(the buffer to give back, or None; a CPU tensor of ``like``'s shape and dtype in it). Page-locked when
        ``like`` is on a GPU; a plain CPU tensor otherwise."""
        if not like.is_cuda:
            return None, torch.empty(like.shape, dtype=like.dtype)
        size = like.numel() * like.element_size()
        fitting = [b for b in self.free if b.numel() >= size]
        if fitting:
            buffer = min(fitting, key=torch.Tensor.numel)
            self.free.remove(buffer)
        else:
            self.release()
            capacity = -(-size // (granule := 1 << max(size.bit_length() - 4, 12))) * granule
            available = host_memory_available()
            if available is not None and capacity > available:  # page-locked memory cannot be swapped out
                raise LabError(f"Activation offloading needs {capacity / GIB:.1f} GiB more CPU memory for one "
                               f"layer's input, and the machine has {available / GIB:.1f} GiB available: lower "
                               "max_length or batch_size, or turn offload_activations off")
            buffer = torch.empty(capacity, dtype=torch.uint8)
            status = int(torch.cuda.cudart().cudaHostRegister(buffer.data_ptr(), capacity, 0))
            if status != 0:
                raise LabError(f"Could not page-lock {capacity / GIB:.1f} GiB of CPU memory for activation "
                               f"offloading (CUDA error {status}): lower max_length or batch_size, or turn "
                               "offload_activations off")
        return buffer, buffer[:size].view(like.dtype).view(like.shape)

    def give_back(self, buffer: torch.Tensor | None) -> None:
        if buffer is not None:
            self.free.append(buffer)

    def release(self) -> None:
        """Unlock and free the buffers not in use."""
        if self.free:
            torch.cuda.synchronize()  # no queued copy may still read or write them
            for buffer in self.free:
                torch.cuda.cudart().cudaHostUnregister(buffer.data_ptr())
            self.free.clear()


HOST_BUFFERS = HostBuffers()


class OffloadedCheckpoint(torch.autograd.Function):
    """A checkpointed layer whose input waits in (pinned) CPU memory: the forward runs without saving anything on
    the GPU, the backward copies the input back, recomputes the layer with gradients and back-propagates through
    it. The copies go on the compute stream, so they are ordered with the kernels around them."""

    @staticmethod
    def forward(ctx: Any, function: Callable, hidden: torch.Tensor, *rest: Any) -> Any:
        ctx.function, ctx.rest, ctx.device = function, rest, hidden.device
        ctx.autocast, ctx.rng = autocast_state(), rng_state(hidden.device)
        ctx.buffer, ctx.host = HOST_BUFFERS.take(hidden)
        ctx.host.copy_(hidden, non_blocking=True)
        with torch.no_grad():
            return function(hidden, *rest)

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        hidden = ctx.host.to(ctx.device, non_blocking=True).requires_grad_(True)
        with replayed(ctx.autocast, ctx.rng, ctx.device):
            out = ctx.function(hidden, *ctx.rest)
        outs = out if isinstance(out, tuple) else (out,)
        pairs = [(o, g) for o, g in zip(outs, grads) if torch.is_tensor(o) and o.requires_grad and g is not None]
        torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        HOST_BUFFERS.give_back(ctx.buffer)  # its copy to the GPU is queued before any later copy into it
        ctx.buffer = ctx.host = None
        return (None, hidden.grad) + (None,) * len(ctx.rest)


def offloaded_checkpoint(function: Callable, *args: Any, **kwargs: Any) -> Any:
    """Drop-in for ``torch.utils.checkpoint.checkpoint`` as transformers calls it on a decoder layer
    (``function(hidden_states)`` with the rest bound as keywords). A layer called any other way, with a second
    input that needs gradients, is checkpointed the usual way instead."""
    if not args or not torch.is_tensor(args[0]) or kwargs or any(
            torch.is_tensor(a) and a.requires_grad for a in args[1:]):
        from torch.utils.checkpoint import checkpoint

        return checkpoint(function, *args, use_reentrant=False, **kwargs)
    hidden = args[0]
    if not hidden.requires_grad:  # frozen embeddings (LoRA): gradients must still flow into the layer's adapters
        hidden = hidden.detach().requires_grad_(True)
    return OffloadedCheckpoint.apply(function, hidden, *args[1:])


def offload_checkpoints(model: Any) -> int:
    """Make every checkpointed decoder layer of ``model`` offload its input; returns how many. Call it after the
    Trainer has turned checkpointing on (it sets each layer's checkpoint function then): :func:`memory_callback`."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    count = 0
    for module in model.modules():
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
            module._gradient_checkpointing_func = offloaded_checkpoint
            count += 1
    return count


def memory_callback(*, offload: bool, tile: bool) -> Any:
    """Installs the offloading checkpoint and the tiled MLPs when training starts: by then the Trainer has set
    each layer's checkpoint function and Liger has replaced the MLPs' forward, both of which would otherwise
    overwrite what is installed earlier."""
    from transformers import TrainerCallback

    class MemoryCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if tile:
                print(f"[lab] tiled MLP ({TILE_TOKENS} tokens a tile) in {tile_mlps(model)} layers", flush=True)
            if offload:
                count = offload_checkpoints(model)
                if not count:
                    raise RuntimeError("offload_activations is on but no layer is checkpointed (is gradient "
                                       "checkpointing on?)")
                print(f"[lab] activation offloading: {count} checkpointed layers keep their inputs in CPU memory",
                      flush=True)

    return MemoryCallback()


# --------------------------------------------------------------------------- tiled MLPs


class TiledMLP(torch.autograd.Function):
    """A position-wise MLP over the tokens in tiles: the forward keeps only its input; the backward recomputes
    one tile at a time with gradients, so the intermediate-width tensors exist for one tile only."""

    @staticmethod
    def forward(ctx: Any, mlp: Callable, x: torch.Tensor, tile: int) -> torch.Tensor:
        ctx.mlp, ctx.tile, ctx.autocast = mlp, tile, autocast_state()
        ctx.rng = []
        outs = []
        with torch.no_grad():
            for part in x.reshape(-1, x.shape[-1]).split(tile):
                ctx.rng.append(rng_state(x.device))
                outs.append(mlp(part))
        ctx.save_for_backward(x)
        out = torch.cat(outs)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Any:
        (x,) = ctx.saved_tensors
        flat = x.detach().reshape(-1, x.shape[-1])
        grads = grad.reshape(-1, grad.shape[-1]).split(ctx.tile)
        x_grad = torch.empty_like(flat)
        start = 0
        for part, part_grad, rng in zip(flat.split(ctx.tile), grads, ctx.rng):
            part = part.detach().requires_grad_(True)
            with replayed(ctx.autocast, rng, x.device):
                out = ctx.mlp(part)
            torch.autograd.backward(out, part_grad)
            x_grad[start:start + len(part)] = part.grad
            start += len(part)
        return None, x_grad.view_as(x), None


def tile_mlps(model: Any, tile: int = TILE_TOKENS) -> int:
    """Run every dense MLP of ``model``'s decoder layers through :class:`TiledMLP` in training (whatever forward
    it has now: Liger's, PEFT's adapters inside); returns how many. Mixture-of-experts blocks are left alone."""
    count = 0
    for module in model.modules():
        mlp = getattr(module, "mlp", None)
        if (mlp is None or not isinstance(mlp, torch.nn.Module) or hasattr(mlp, "experts")
                or "_lab_untiled_forward" in mlp.__dict__):
            continue
        forward = mlp.forward

        def tiled(x: torch.Tensor, *args: Any, _forward: Callable = forward, _mlp: Any = mlp, **kwargs: Any) -> Any:
            # Not on the grad mode: an offloaded checkpoint's forward runs without gradients and its recomputation
            # with them, and both must tile alike to draw the same dropout masks.
            if args or kwargs or not _mlp.training:
                return _forward(x, *args, **kwargs)
            return TiledMLP.apply(_forward, x, tile)

        mlp.__dict__["_lab_untiled_forward"] = forward
        mlp.forward = tiled
        count += 1
    return count
