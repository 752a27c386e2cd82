"""Export a retrained network for deployment: ONNX, TorchScript or a ``torch.export`` program, beside a sidecar JSON
(``model.onnx.json``, ...) with its genotype, input shape, classes and preprocessing.

The network is the retraining run's last checkpoint, in eval mode, with drop path off and without the auxiliary
head: its one output is the logits.
"""
from __future__ import annotations

import json
import os
import warnings

import torch
import torch.nn as nn

from .config import resolve_saved_retrain
from .data import CIFAR_MEAN, CIFAR_STD, DATA_SHAPES, IMAGENET_MEAN, IMAGENET_STD, load_digits
from .errors import CheckpointError, ConfigError
from .run.checkpoint import CHECKPOINT_FORMAT, atomic_write_text, load_checkpoint, restoring
from .run.rundir import CHECKPOINT, RunDir

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "exported": "model.pt2"}


class LogitsOnly(nn.Module):
    """A network returning ``(logits, aux)`` as one returning ``logits`` (what deployment runtimes expect)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        out = self.net(x)
        return out[0] if isinstance(out, tuple) else out


def preprocessing(dataset: str, imagenet_layout: bool = False) -> dict:
    """How the run's data set turned images into the network's input."""
    if dataset == "digits":
        x, _ = load_digits()
        return {"input": "8x8 grey digits, pixel values 0..16", "scale": 1 / 16, "mean": [float(x.mean())],
                "std": [float(x.std())]}
    if dataset in ("cifar10", "cifar100"):
        return {"input": "RGB 32x32, values in [0, 1]", "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD)}
    if dataset == "folder":
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet_layout else (CIFAR_MEAN, CIFAR_STD)
        return {"input": "RGB, values in [0, 1], resized", "mean": list(mean), "std": list(std)}
    return {"input": f"as the data set {dataset!r} was given (no transform applied)"}


def load_retrained(run_dir: str):
    """``(network in eval mode, setup, input shape (C, H, W), classes)`` of a finished or interrupted retraining run
    (its last checkpoint)."""
    rd = RunDir.open_existing(run_dir)
    saved = rd.read_config()
    setup = resolve_saved_retrain(saved, {}, rd.file("config.json"), rd.file("genotype.json"))
    cfg = setup.cfg
    path = rd.file(CHECKPOINT)
    state = load_checkpoint(path, kind="final")
    if state.get("genotype") != setup.genotype.to_dict():
        raise CheckpointError(f"{path} trained another genotype than {rd.file('genotype.json')}")
    model_state = state.get("model")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{path} holds no model weights")
    if cfg.dataset in DATA_SHAPES:
        classes, channels, size = DATA_SHAPES[cfg.dataset]
    else:  # a folder or the user's data: read off the trained weights
        classes = int(model_state["classifier.weight"].shape[0]) if "classifier.weight" in model_state else None
        channels = int(model_state["stem.0.weight"].shape[1]) if "stem.0.weight" in model_state else 3
        size = cfg.image_size or 32
        if classes is None:
            raise CheckpointError(f"{path}: cannot tell the number of classes from the weights")
    net = setup.space.build_network(setup.genotype, cfg, classes, channels, size)
    with restoring(path):
        net.load_state_dict(model_state)
    net.drop_path_prob = 0.0
    return net.eval(), setup, (channels, size, size), classes


def export_run(run_dir: str, fmt: str = "onnx", out: str | None = None, batch_size: int = 1) -> dict:
    """Write the retrained network of ``run_dir`` as ``fmt`` (``onnx``, ``torchscript`` or ``exported``) into
    ``out`` (default ``RUN_DIR/export``) with its sidecar ``<file>.json`` beside it; returns the sidecar's contents (with the
    ``file`` written). ONNX needs the ``onnx`` and ``onnxscript`` packages (``pip install 'darts-forge[export]'``)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    net, setup, shape, classes = load_retrained(run_dir)
    module = LogitsOnly(net).eval()
    out = out or os.path.join(run_dir, "export")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, FORMATS[fmt])
    example = torch.zeros((max(batch_size, 2), *shape))  # batch 2: a batch of 1 would be specialised as a constant
    batch = {"x": {0: torch.export.Dim("batch", min=1, max=1 << 16)}}
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.tmp{ext}"  # torch.export wants its own suffix
    try:
        with torch.no_grad():
            if fmt == "onnx":
                _onnx(module, example, batch, tmp)
            elif fmt == "torchscript":
                with warnings.catch_warnings():  # PyTorch deprecates TorchScript; it still runs everywhere
                    warnings.simplefilter("ignore", FutureWarning)
                    torch.jit.save(torch.jit.trace(module, example), tmp)
            else:
                torch.export.save(torch.export.export(module, (example,), dynamic_shapes=batch), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    sidecar = {"format": fmt, "file": os.path.basename(path), "input_shape": [batch_size, *shape],
               "dynamic_batch": fmt != "torchscript",
               "num_classes": classes, "output": "logits", "genotype": setup.genotype.to_dict(),
               "space": setup.space.name, "network": type(net).__name__,
               "init_channels": setup.cfg.init_channels, "layers": setup.cfg.layers,
               "preprocessing": preprocessing(setup.cfg.dataset, setup.cfg.imagenet_layout),
               "torch": torch.__version__, "checkpoint_format": CHECKPOINT_FORMAT}
    atomic_write_text(path + ".json", json.dumps(sidecar, indent=1) + "\n")
    return {**sidecar, "path": path, "sidecar": path + ".json"}


def _onnx(module, example, batch, path):
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401  (the torch.export-based exporter's)
    except ImportError:
        raise ConfigError("--format onnx needs the onnx and onnxscript packages: pip install 'darts-forge[export]'") \
            from None
    program = torch.onnx.export(module, (example,), dynamo=True, dynamic_shapes=batch, input_names=["images"],
                                output_names=["logits"], verbose=False)
    program.save(path)
