r"""SpikingJelly's ResNet-19 tdBN train step (PyTorch), timed for ``gpu_check``.

    python -m experiments.benchmarks.spikingjelly_resnet --time_steps=4 --batch=64

It needs PyTorch and SpikingJelly, not JAX, and runs in a process of its own
(``gpu_check`` starts it), so that PyTorch's and JAX's memory pools never
share one GPU inside a process. It prints one JSON line: ``status`` (``"ok"``,
``"skipped: not installed (...)"`` or ``"failed: ..."``), the versions, the
LIF implementation SpikingJelly selected, and one row per case with the
median step time, its spread and the peak device memory
(``torch.cuda.max_memory_allocated`` over the timed steps; model, optimizer
state and batch included, as in JAX's ``peak_bytes_in_use``).

The network is snn-jax's ``ResNet19`` (``snn_jax/models/resnet.py``) written
with SpikingJelly's layers: the CIFAR stem ``conv3x3(128) -> tdBN -> LIF``,
basic blocks in stages of (3, 3, 2) blocks with 128/256/512 channels (stride 2
at the start of stages 2 and 3, tdBN with ``alpha = 1/sqrt2`` on the branches
summed before the block's last LIF, identity shortcuts without a norm), a
global average pool, ``FC(256) -> tdBN -> LIF``, and the decoder
``mean_t(M o_t)``. Images are repeated over ``T`` (direct encoding).

The LIF is SpikingJelly's ``H = V - (V - V_reset) / tau + X``
(``decay_input=False``) with ``tau = 4/3``, which is snn-jax's
``u = 0.25 u + x``; ``V_th = 0.5``, hard reset to 0, the reset kept in the
gradient. Surrogate: ATan. snn-jax's rectangular surrogate (SpikingJelly's
``Rect``) has no Triton kernel in SpikingJelly 2.0, so ``Rect`` would send
every LIF layer to its PyTorch reference loop; ATan keeps SpikingJelly on its
fastest path, and the surrogate's cost is one elementwise expression either
way. SpikingJelly 2.0 has no CuPy backend: it selects the multi-step LIF's
CUDA implementation itself (its native CUDA build if installed from source,
else Triton, else PyTorch); ``lif_implementation`` reports the choice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time


def build_resnet19(
    time_steps: int,
    *,
    width: int = 128,
    stage_sizes: tuple[int, ...] = (3, 3, 2),
    hidden_features: int = 256,
    num_classes: int = 10,
    v_th: float = 0.5,
    leak: float = 0.25,
):
    """snn-jax's ResNet-19 (tdBN + LIF) in SpikingJelly, multi-step: ``[B, 3, H, W]`` -> logits.

    The module docstring gives the layout. tdBN is SpikingJelly's
    ``ThresholdDependentBatchNorm{1,2}d``; a version without it gets a
    BatchNorm over the ``T*B`` folded batch whose scale starts at
    ``alpha * V_th``, which is the same layer.
    """
    import torch
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    residual_alpha = 1 / math.sqrt(2)

    def tdbn(channels: int, alpha: float = 1.0, dims: int = 2) -> torch.nn.Module:
        name = f"ThresholdDependentBatchNorm{dims}d"
        if hasattr(layer, name):
            return getattr(layer, name)(alpha, v_th, channels)
        bn = (torch.nn.BatchNorm2d if dims == 2 else torch.nn.BatchNorm1d)(channels)
        torch.nn.init.constant_(bn.weight, alpha * v_th)
        return layer.SeqToANNContainer(bn)

    def conv(cin: int, cout: int, k: int, stride: int = 1) -> torch.nn.Module:
        return layer.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=False)

    def lif() -> torch.nn.Module:
        return neuron.LIFNode(
            tau=1 / (1 - leak),
            decay_input=False,
            v_threshold=v_th,
            v_reset=0.0,
            surrogate_function=surrogate.ATan(),
            detach_reset=False,
        )

    class Block(torch.nn.Module):
        def __init__(self, cin: int, cout: int, stride: int):
            super().__init__()
            self.branch = torch.nn.Sequential(
                conv(cin, cout, 3, stride),
                tdbn(cout),
                lif(),
                conv(cout, cout, 3),
                tdbn(cout, residual_alpha),
            )
            self.shortcut = (
                torch.nn.Identity()
                if stride == 1 and cin == cout
                else torch.nn.Sequential(conv(cin, cout, 1, stride), tdbn(cout, residual_alpha))
            )
            self.lif = lif()

        def forward(self, x):
            return self.lif(self.branch(x) + self.shortcut(x))

    class ResNet19(torch.nn.Module):
        def __init__(self):
            super().__init__()
            blocks, cin = [conv(3, width, 3), tdbn(width), lif()], width
            for i, num_blocks in enumerate(stage_sizes):
                for j in range(num_blocks):
                    cout = width * 2**i
                    blocks.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
                    cin = cout
            self.features = torch.nn.Sequential(*blocks)
            self.pool = torch.nn.Sequential(layer.AdaptiveAvgPool2d((1, 1)), layer.Flatten())
            self.fc = torch.nn.Sequential(
                layer.Linear(cin, hidden_features, bias=False), tdbn(hidden_features, dims=1), lif()
            )
            self.decoder = layer.Linear(hidden_features, num_classes)

        def forward(self, images):
            x = images.unsqueeze(0).repeat(time_steps, 1, 1, 1, 1)  # [T, B, C, H, W]
            x = self.fc(self.pool(self.features(x)))
            return self.decoder(x).mean(0)

    net = ResNet19()
    functional.set_step_mode(net, "m")
    return net


def _lif_selections(records: list[str]) -> list[str]:
    """SpikingJelly's log lines that name the implementation its LIF operators selected."""
    return sorted({r.strip() for r in records if "sj_lif" in r and "implementation" in r})


def bench(
    time_steps: int,
    batch: int,
    dtype: str,
    repeats: int,
    device: str,
    image_size: int = 32,
    **net_kwargs,
) -> dict:
    """One SGD-momentum step (lr 0.1, momentum 0.9, cross-entropy), timed after two warm-ups.

    ``dtype``: ``"float32"`` (PyTorch's defaults: TF32 convolutions on Ampere
    and later) or ``"bfloat16"`` (``torch.autocast``, parameters and tdBN
    statistics in float32).
    """
    import torch
    import torch.nn.functional as F
    from spikingjelly.activation_based import functional

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    net = build_resnet19(time_steps, **net_kwargs).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    images = torch.randn(batch, 3, image_size, image_size, device=dev)
    labels = torch.randint(0, 10, (batch,), device=dev)
    autocast = dtype == "bfloat16"

    def step():
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
            loss = F.cross_entropy(net(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        functional.reset_net(net)
        return loss

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    t0 = time.perf_counter()
    step()
    sync()
    first = time.perf_counter() - t0
    step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        loss = step()
        sync()
        times.append(time.perf_counter() - t0)
    return {
        "T": time_steps,
        "B": batch,
        "dtype": dtype,
        "step_s": statistics.median(times),
        "spread_s": [min(times), max(times)],
        "first_step_s": first,
        "peak_bytes": int(torch.cuda.max_memory_allocated(dev)) if cuda else None,
        "loss": float(loss.detach()),
    }


def run(
    time_steps: list[int],
    dtypes: list[str],
    batch: int,
    repeats: int,
    budget_s: float,
    smoke: bool,
) -> dict:
    """Every (T, dtype) case in order while ``budget_s`` lasts; never raises."""
    missing = [m for m in ("torch", "spikingjelly") if importlib.util.find_spec(m) is None]
    if missing:
        return {"status": f"skipped: not installed ({', '.join(missing)})"}
    start = time.perf_counter()
    try:
        import spikingjelly
        import torch
        from spikingjelly.logger import logger

        records: list[str] = []
        logger.enable("spikingjelly")
        logger.remove()
        logger.add(records.append, level="INFO", format="{message}")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        out = {
            "status": "ok",
            "versions": {
                "torch": torch.__version__,
                "spikingjelly": getattr(spikingjelly, "__version__", _version("spikingjelly")),
                "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if device == "cuda" else None,
                "triton": _version("triton"),
            },
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "tf32": {
                "cudnn": torch.backends.cudnn.allow_tf32,
                "matmul": torch.backends.cuda.matmul.allow_tf32,
            },
            "has_tdbn": hasattr(
                __import__("spikingjelly.activation_based.layer", fromlist=["layer"]),
                "ThresholdDependentBatchNorm2d",
            ),
            "rows": [],
        }
        net_kwargs = {"width": 4, "stage_sizes": (1, 1, 1), "hidden_features": 8} if smoke else {}
        size = 8 if smoke else 32
        for t in time_steps:
            for dtype in dtypes:
                if time.perf_counter() - start > budget_s:
                    out["rows"].append({"T": t, "B": batch, "dtype": dtype, "skipped": "budget"})
                    continue
                try:
                    row = bench(t, batch, dtype, repeats, device, size, **net_kwargs)
                except Exception as e:
                    row = {"T": t, "B": batch, "dtype": dtype, "error": f"{type(e).__name__}: {e}"}
                out["rows"].append(row)
                if device == "cuda":
                    torch.cuda.empty_cache()
        out["lif_implementation"] = _lif_selections(records) or ["not logged"]
        return out
    except Exception as e:
        return {"status": f"failed: {type(e).__name__}: {e}"}


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--time_steps", default="4,2,6", help="T values, in order of priority.")
    p.add_argument("--dtypes", default="float32,bfloat16", help="float32 and/or bfloat16.")
    p.add_argument("--batch", type=int, default=64, help="Batch size B.")
    p.add_argument("--repeats", type=int, default=20, help="Timed steps per case.")
    p.add_argument("--budget_s", type=float, default=300.0, help="Start no case after this.")
    p.add_argument("--smoke", action="store_true", help="A width-4 net on 8x8 images.")
    a = p.parse_args(argv)
    ts = [int(t) for t in a.time_steps.split(",")]
    dtypes = a.dtypes.split(",")
    result = run(ts, dtypes, a.batch, a.repeats, a.budget_s, a.smoke)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
