r"""NIR interoperability: snn-jax exports, snnTorch and Norse import and run (not in CI).

    python -m experiments.nir_interop --out=nir_interop_out

It trains the digits CNN (the default job's model, a few hundred steps) and a
small ResNet-19 (width 8, on the same digits, 300 steps), exports each with
``snn_jax.nir.to_nir`` (``dt = 1e-4``) to a NIR file, and runs the file

- with ``snn_jax.nir.from_nir`` (the round trip),
- with snnTorch's ``import_from_nir`` (which discretises ``nir.LIF`` as
  ``Leaky(beta = 1 - dt / tau)`` with ``dt = 1e-4``, wants ``r dt / tau = 1``
  and resets to zero: the export's convention),
- with Norse's ``from_nir`` (reported as it comes: its LIF integrates another
  way and expects ``r = 1``; the export is not tuned to it),

on test digits, one at a time (snnTorch's ``Flatten`` would flatten the
batch axis too). For each importer it reports the fraction of spikes of every
LIF layer equal to the model's (``spikes_equal``: all layers together;
``output_spikes_equal``: the last LIF layer) and the largest difference of the
logits ``mean_t(M o_t + b)``. It needs torch, snntorch and norse (a separate
virtual environment: ``pip install torch snntorch norse nir`` and
``pip install -e '.[nir]'``). Measured figures are in the README.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "nir_interop_out", "where the NIR files and results.json go")
flags.DEFINE_integer("examples", 64, "test digits run through every importer")
flags.DEFINE_integer("digits_steps", 300, "training steps of the digits CNN")
flags.DEFINE_integer("resnet_steps", 300, "training steps of the ResNet-19")


def _train(model_overrides: dict, steps: int, workdir: str):
    from experiments.configs import digits
    from snn_jax.training import train_and_evaluate
    from snn_jax.training.loop import build_model

    config = digits.get_config()
    config.num_train_steps = steps
    config.progress = False
    config.log_every_steps = steps
    config.eval_every_steps = steps
    config.checkpoint_every_steps = steps
    config.optimizer.warmup_steps = min(20, steps // 4)
    config.model.update(model_overrides)
    state, summary = train_and_evaluate(config, workdir)
    model = build_model(config, num_classes=10)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return model, variables, summary


def _ours(model, variables, images):
    """Logits and every LIF layer's spikes (node name -> [T, B, C, H, W] or [T, B, N])."""
    import jax.numpy as jnp
    import numpy as np

    from snn_jax.inspect import capture_calls, is_neuron

    calls, logits = capture_calls(
        model, variables, jnp.asarray(images), is_neuron, train=False, compiled=True
    )
    spikes = {}
    for c in calls:
        s = np.asarray(c.output)
        spikes[c.name.replace("/", ".")] = np.moveaxis(s, -1, 2) if s.ndim == 5 else s
    return np.asarray(logits), spikes


def _compare(name, ref_logits, ref_spikes, logits, spikes):
    import numpy as np

    layers = list(ref_spikes)
    equal = sum(int(np.sum(ref_spikes[k] == spikes[k])) for k in layers if k in spikes)
    total = sum(ref_spikes[k].size for k in layers if k in spikes)
    last = layers[-1]
    out = {
        "importer": name,
        "layers_compared": sum(k in spikes for k in layers),
        "spikes_compared": total,
        "spikes_equal": equal / max(total, 1),
        "output_spikes_equal": float(np.mean(ref_spikes[last] == spikes[last]))
        if last in spikes
        else None,
        "max_logit_diff": float(np.max(np.abs(ref_logits - logits))),
        "model_spikes": int(sum(ref_spikes[k].sum() for k in layers)),
    }
    print(json.dumps(out))
    return out


def _run_torch(net, graph, frames, reset, batched):
    """Runs an imported torch module one example at a time; records its LIF layers' spikes."""
    import numpy as np
    import torch

    lif_names = [n for n, node in graph.nodes.items() if type(node).__name__ in ("LIF", "IF")]
    modules = dict(net.named_modules())
    records: dict[str, list] = {}

    def hook(name):
        def record(_module, _args, output):
            spk = output[0] if isinstance(output, tuple) else output
            records.setdefault(name, []).append(spk.detach().numpy().copy())

        return record

    handles = []
    for name in lif_names:
        key = name.replace(".", "_")
        module = modules.get(key) or modules.get(name)
        if module is not None:
            handles.append(module.register_forward_hook(hook(name)))
    t, b = frames.shape[:2]
    logits, spikes = [], {}
    with torch.no_grad():
        for i in range(b):
            reset(net)
            records.clear()
            state, outs = None, []
            for step in range(t):
                x = torch.from_numpy(np.ascontiguousarray(frames[step, i]))
                x = x[None] if batched else x
                result = net(x) if state is None else net(x, state)
                y, state = result if isinstance(result, tuple) else (result, None)
                outs.append(y.numpy().reshape(-1))
            logits.append(np.mean(outs, axis=0))
            for name, steps in records.items():
                spikes.setdefault(name, []).append(
                    np.stack(
                        [s.reshape(s.shape[-3:] if s.ndim >= 3 else s.shape[-1:]) for s in steps]
                    )
                )
    for h in handles:
        h.remove()
    return np.stack(logits), {k: np.stack(v, axis=1) for k, v in spikes.items()}


def _snntorch(graph, frames):
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(graph)
    # unbatched examples: snnTorch passes NIR's Flatten start_dim (which excludes the batch)
    # to torch.nn.Flatten (which counts it)
    return _run_torch(net, graph, frames, snntorch.utils.reset, batched=False)


def _norse(graph, frames):
    import norse.torch as norse

    net = norse.from_nir(graph, ignore_warnings=True, dt=1e-4)  # its default dt is 1e-3
    return _run_torch(net, graph, frames, lambda _net: None, batched=True)


def _lif_layer(out):
    """One exported LIF layer (``tau = 0.25``, ``V_th = 0.5``) behind an identity ``Affine``,
    fed random currents: every importer against a loop of the iterative LIF (METHOD.md
    section 1). It isolates the neuron dynamics from the layers an importer may lack."""
    import jax.numpy as jnp
    import nir
    import numpy as np

    from snn_jax.nir import from_nir, lif_parameters

    n, t, tau, v_th = 256, 20, 0.25, 0.5
    graph = nir.NIRGraph.from_list(
        nir.Affine(np.eye(n), np.zeros(n)), nir.LIF(**lif_parameters(np.full(n, tau), v_th))
    )
    currents = np.random.default_rng(0).uniform(0.0, 0.6, (t, 1, n)).astype(np.float32)
    u, o, ref = np.zeros(n), np.zeros(n), []
    for x in currents[:, 0]:
        u = tau * u * (1 - o) + x
        o = (u >= v_th).astype(np.float32)
        ref.append(o)
    ref = {"lif": np.stack(ref)[:, None]}
    results = []
    module, variables = from_nir(graph)
    y = np.asarray(module.apply(variables, jnp.asarray(currents)))
    runs = {"snn_jax.from_nir": lambda: (None, {"lif": y})}
    runs["snntorch"] = lambda: _snntorch(graph, currents)
    runs["norse"] = lambda: _norse(graph, currents)
    for importer, run in runs.items():
        try:
            _, spikes = run()
            equal = float(np.mean(spikes["lif"].reshape(t, -1) == ref["lif"].reshape(t, -1)))
            row = {"model": "lif_layer", "importer": importer, "spikes_equal": equal}
            row["reference_spikes"] = int(ref["lif"].sum())
            row["importer_spikes"] = int(spikes["lif"].sum())
        except Exception as error:
            row = {"model": "lif_layer", "importer": importer, "error": repr(error)}
        print(json.dumps(row))
        results.append(row)
    return results


def main(argv):
    del argv
    import jax.numpy as jnp
    import nir
    import numpy as np

    from snn_jax.data import load_digits_split
    from snn_jax.nir import from_nir, to_nir

    out = pathlib.Path(FLAGS.out)
    out.mkdir(parents=True, exist_ok=True)
    images = load_digits_split().test_images[: FLAGS.examples]
    jobs = {
        "digits_cnn": ({}, FLAGS.digits_steps),
        "resnet19_w8": (
            {"name": "resnet19", "width": 8, "hidden_features": 32},
            FLAGS.resnet_steps,
        ),
    }
    results = _lif_layer(out)
    for name, (overrides, steps) in jobs.items():
        start = time.time()
        with tempfile.TemporaryDirectory() as workdir:
            model, variables, summary = _train(overrides, steps, workdir)
        print(f"{name}: trained {steps} steps in {time.time() - start:.0f} s")
        path = os.fspath(out / f"{name}.nir")
        nir.write(path, to_nir(model, variables, images[:1], dt=1e-4))
        graph = nir.read(path)
        ref_logits, ref_spikes = _ours(model, variables, images)
        t = model.time_steps
        frames = np.broadcast_to(np.moveaxis(images, -1, 1), (t, *np.moveaxis(images, -1, 1).shape))
        frames = np.ascontiguousarray(frames, np.float32)
        module, nvars = from_nir(graph, dt=1e-4)
        y, state = module.apply(nvars, jnp.asarray(frames), mutable=["intermediates"])
        spikes = {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}
        spikes = {k: np.moveaxis(v, -1, 2) if v.ndim == 5 else v for k, v in spikes.items()}
        row = {"model": name, "steps": steps, "test_accuracy": summary.get("final_test_accuracy")}
        results.append(
            row
            | _compare("snn_jax.from_nir", ref_logits, ref_spikes, np.asarray(y).mean(0), spikes)
        )
        for importer, run in (("snntorch", _snntorch), ("norse", _norse)):
            try:
                logits, spikes = run(graph, frames)
                results.append(row | _compare(importer, ref_logits, ref_spikes, logits, spikes))
            except Exception as error:  # report what the importer says, do not hide it
                print(f"{importer} on {name}: {type(error).__name__}: {error}")
                results.append(
                    row | {"importer": importer, "error": f"{type(error).__name__}: {error}"}
                )
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
