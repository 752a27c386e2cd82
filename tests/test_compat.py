"""Original-DARTS checkpoints: a state dict laid out as quark0/darts cnn/model.py + cnn/operations.py would save it
(key names and shapes derived here from that layout, not from our model) loads strictly, and our network then
computes what the reference computes (a functional re-implementation of the reference forward, below)."""
from __future__ import annotations

import pickle
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darts.compat import convert_reference_state_dict, load_reference_checkpoint
from darts.errors import CheckpointError, DartsError
from darts.final import NetworkCIFAR, NetworkImageNet
from darts.zoo import get_genotype

SEP = {"sep_conv_3x3": (3, 1), "sep_conv_5x5": (5, 2), "sep_conv_7x7": (7, 3)}  # kernel, padding
DIL = {"dil_conv_3x3": (3, 2), "dil_conv_5x5": (5, 4)}  # kernel, padding (dilation 2)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------------------
# The reference layout: parameter and buffer names with shapes, as PyTorch 0.3 saved them (no
# num_batches_tracked)


def _bn_keys(prefix, C):
    return {f"{prefix}.{n}": (C,) for n in ("weight", "bias", "running_mean", "running_var")}


def _relu_conv_bn_keys(prefix, C_in, C_out):  # ReLUConvBN: op = Sequential(ReLU, Conv 1x1, BN)
    return {f"{prefix}.op.1.weight": (C_out, C_in, 1, 1), **_bn_keys(f"{prefix}.op.2", C_out)}


def _fact_reduce_keys(prefix, C_in, C_out):  # FactorizedReduce: relu, conv_1, conv_2, bn
    half = (C_out // 2, C_in, 1, 1)
    return {f"{prefix}.conv_1.weight": half, f"{prefix}.conv_2.weight": half, **_bn_keys(f"{prefix}.bn", C_out)}


def _op_keys(prefix, name, C, stride):
    if name in SEP:  # op = Sequential(ReLU, dw, pw, BN, ReLU, dw, pw, BN)
        k = SEP[name][0]
        return {f"{prefix}.op.1.weight": (C, 1, k, k), f"{prefix}.op.2.weight": (C, C, 1, 1),
                **_bn_keys(f"{prefix}.op.3", C),
                f"{prefix}.op.5.weight": (C, 1, k, k), f"{prefix}.op.6.weight": (C, C, 1, 1),
                **_bn_keys(f"{prefix}.op.7", C)}
    if name in DIL:  # op = Sequential(ReLU, dw dilated, pw, BN)
        k = DIL[name][0]
        return {f"{prefix}.op.1.weight": (C, 1, k, k), f"{prefix}.op.2.weight": (C, C, 1, 1),
                **_bn_keys(f"{prefix}.op.3", C)}
    if name == "conv_7x1_1x7":  # a bare Sequential(ReLU, Conv 1x7, Conv 7x1, BN) in the reference
        return {f"{prefix}.1.weight": (C, C, 1, 7), f"{prefix}.2.weight": (C, C, 7, 1), **_bn_keys(f"{prefix}.3", C)}
    if name == "skip_connect" and stride == 2:
        return _fact_reduce_keys(prefix, C, C)
    return {}  # identity, pooling, none


def _cell_stack_keys(g, layers, C_pp, C_p, C, reduction_prev):
    keys, C_aux = {}, None
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        C = 2 * C if reduction else C
        p = f"cells.{i}"
        if reduction_prev:
            keys.update(_fact_reduce_keys(f"{p}.preprocess0", C_pp, C))
        else:
            keys.update(_relu_conv_bn_keys(f"{p}.preprocess0", C_pp, C))
        keys.update(_relu_conv_bn_keys(f"{p}.preprocess1", C_p, C))
        edges, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
        for k, (op, j) in enumerate(edges):
            keys.update(_op_keys(f"{p}._ops.{k}", op, C, 2 if reduction and j < 2 else 1))
        C_pp, C_p, reduction_prev = C_p, len(concat) * C, reduction
        if i == 2 * layers // 3:
            C_aux = C_p
    return keys, C_p, C_aux


def reference_keys_cifar(g, C, num_classes, layers, auxiliary):
    keys = {"stem.0.weight": (3 * C, 3, 3, 3), **_bn_keys("stem.1", 3 * C)}
    cells, C_prev, C_aux = _cell_stack_keys(g, layers, 3 * C, 3 * C, C, False)
    keys.update(cells)
    if auxiliary:  # features = Sequential(ReLU, AvgPool, Conv, BN, ReLU, Conv, BN, ReLU)
        keys.update({"auxiliary_head.features.2.weight": (128, C_aux, 1, 1),
                     **_bn_keys("auxiliary_head.features.3", 128),
                     "auxiliary_head.features.5.weight": (768, 128, 2, 2),
                     **_bn_keys("auxiliary_head.features.6", 768),
                     "auxiliary_head.classifier.weight": (num_classes, 768),
                     "auxiliary_head.classifier.bias": (num_classes,)})
    keys.update({"classifier.weight": (num_classes, C_prev), "classifier.bias": (num_classes,)})
    return keys


def reference_keys_imagenet(g, C, num_classes, layers, auxiliary):
    keys = {"stem0.0.weight": (C // 2, 3, 3, 3), **_bn_keys("stem0.1", C // 2),
            "stem0.3.weight": (C, C // 2, 3, 3), **_bn_keys("stem0.4", C),
            "stem1.1.weight": (C, C, 3, 3), **_bn_keys("stem1.2", C)}
    cells, C_prev, C_aux = _cell_stack_keys(g, layers, C, C, C, True)
    keys.update(cells)
    if auxiliary:  # no BN after the 2x2 conv (commented out in the reference)
        keys.update({"auxiliary_head.features.2.weight": (128, C_aux, 1, 1),
                     **_bn_keys("auxiliary_head.features.3", 128),
                     "auxiliary_head.features.5.weight": (768, 128, 2, 2),
                     "auxiliary_head.classifier.weight": (num_classes, 768),
                     "auxiliary_head.classifier.bias": (num_classes,)})
    keys.update({"classifier.weight": (num_classes, C_prev), "classifier.bias": (num_classes,)})
    return keys


def random_state_dict(keys, seed=0):
    """Random weights and BN statistics for the layout (running_var positive, BN weights near 1)."""
    gen = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for name, shape in keys.items():
        t = torch.randn(shape, generator=gen)
        if name.endswith("running_var"):
            t = t.abs() + 0.5
        elif name.endswith("running_mean") or name.endswith(".bias"):
            t = 0.1 * t
        elif len(shape) == 1:  # BN weight
            t = 1.0 + 0.1 * t
        else:  # conv / linear weight, scaled by fan-in to keep activations O(1) through the cells
            t = t / (torch.tensor(shape[1:]).prod().item() ** 0.5)
        sd[name] = t
    return sd


# ---------------------------------------------------------------------------------------------------------
# The reference forward in evaluation mode, written with torch.nn.functional straight from the reference layout


def _bn(x, sd, p):
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=1e-5)


def _fact_reduce(x, sd, p):
    x = F.relu(x)
    a = F.conv2d(x, sd[f"{p}.conv_1.weight"], stride=2)
    b = F.conv2d(x[:, :, 1:, 1:], sd[f"{p}.conv_2.weight"], stride=2)  # the grid offset by one pixel
    return _bn(torch.cat([a, b], dim=1), sd, f"{p}.bn")


def _relu_conv_bn(x, sd, p):
    return _bn(F.conv2d(F.relu(x), sd[f"{p}.op.1.weight"]), sd, f"{p}.op.2")


def _op(x, sd, p, name, stride):
    C = x.shape[1]
    if name in SEP:
        k, pad = SEP[name]
        x = F.conv2d(F.relu(x), sd[f"{p}.op.1.weight"], stride=stride, padding=pad, groups=C)
        x = _bn(F.conv2d(x, sd[f"{p}.op.2.weight"]), sd, f"{p}.op.3")
        x = F.conv2d(F.relu(x), sd[f"{p}.op.5.weight"], padding=pad, groups=C)
        return _bn(F.conv2d(x, sd[f"{p}.op.6.weight"]), sd, f"{p}.op.7")
    if name in DIL:
        k, pad = DIL[name]
        x = F.conv2d(F.relu(x), sd[f"{p}.op.1.weight"], stride=stride, padding=pad, dilation=2, groups=C)
        return _bn(F.conv2d(x, sd[f"{p}.op.2.weight"]), sd, f"{p}.op.3")
    if name == "conv_7x1_1x7":
        x = F.conv2d(F.relu(x), sd[f"{p}.1.weight"], stride=(1, stride), padding=(0, 3))
        return _bn(F.conv2d(x, sd[f"{p}.2.weight"], stride=(stride, 1), padding=(3, 0)), sd, f"{p}.3")
    if name == "skip_connect":
        return x if stride == 1 else _fact_reduce(x, sd, p)
    if name == "max_pool_3x3":
        return F.max_pool2d(x, 3, stride, 1)
    if name == "avg_pool_3x3":
        return F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)
    raise AssertionError(name)


def _cells_forward(g, sd, layers, s0, s1, reduction_prev):
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        p = f"cells.{i}"
        h0 = _fact_reduce(s0, sd, f"{p}.preprocess0") if reduction_prev else _relu_conv_bn(s0, sd, f"{p}.preprocess0")
        states = [h0, _relu_conv_bn(s1, sd, f"{p}.preprocess1")]
        edges, concat = (g.reduce, g.reduce_concat) if reduction else (g.normal, g.normal_concat)
        for n in range(len(edges) // 2):
            states.append(sum(
                _op(states[j], sd, f"{p}._ops.{k}", op, 2 if reduction and j < 2 else 1)
                for k, (op, j) in ((k, edges[k]) for k in (2 * n, 2 * n + 1))
            ))
        s0, s1, reduction_prev = s1, torch.cat([states[j] for j in concat], dim=1), reduction
    return s1


def reference_forward_cifar(g, sd, layers, x):
    s = _bn(F.conv2d(x, sd["stem.0.weight"], padding=1), sd, "stem.1")
    out = _cells_forward(g, sd, layers, s, s, False)
    return F.linear(out.mean((2, 3)), sd["classifier.weight"], sd["classifier.bias"])


def reference_forward_imagenet(g, sd, layers, x):
    s0 = _bn(F.conv2d(x, sd["stem0.0.weight"], stride=2, padding=1), sd, "stem0.1")
    s0 = _bn(F.conv2d(F.relu(s0), sd["stem0.3.weight"], stride=2, padding=1), sd, "stem0.4")
    s1 = _bn(F.conv2d(F.relu(s0), sd["stem1.1.weight"], stride=2, padding=1), sd, "stem1.2")
    out = _cells_forward(g, sd, layers, s0, s1, True)
    return F.linear(out.mean((2, 3)), sd["classifier.weight"], sd["classifier.bias"])


# ---------------------------------------------------------------------------------------------------------


def _save_like_the_original(sd, path, data_parallel=True, wrap=True, legacy=False):
    """Save as the reference scripts did: optionally under DataParallel's ``module.``, inside a dict, or in the
    pre-1.6 (non-zip) serialization format."""
    saved = OrderedDict((("module." + k) if data_parallel else k, v) for k, v in sd.items())
    obj = {"state_dict": saved, "epoch": 599} if wrap else saved
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize("name", ["DARTS_V2", "AmoebaNet"])
def test_cifar_checkpoint_loads_strictly_and_computes_the_reference(tmp_path, name):
    g = get_genotype(name)
    C, layers, classes = 8, 5, 10
    keys = reference_keys_cifar(g, C, classes, layers, auxiliary=True)
    sd = random_state_dict(keys)
    path = str(tmp_path / "weights.pt")
    _save_like_the_original(sd, path)

    model = load_reference_checkpoint(NetworkCIFAR(C, classes, layers, True, g), path).eval()
    own = model.state_dict()
    counters = {k for k in own if k.endswith("num_batches_tracked")}
    assert counters and all(own[k].item() == 0 for k in counters)  # added as zeros
    assert len(own) - len(counters) == len(keys)  # every reference tensor, no more
    converted = convert_reference_state_dict(sd)
    assert set(converted) == set(own)
    assert all(torch.equal(own[k], v) for k, v in converted.items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, _ = model(x)
        expected = reference_forward_cifar(g, sd, layers, x)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-5)

    # a second instance loaded from the same dict through the public converter agrees exactly
    twin = NetworkCIFAR(C, classes, layers, True, g)
    twin.load_state_dict(convert_reference_state_dict(torch.load(path, weights_only=True)), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(twin.eval()(x)[0], logits, rtol=0, atol=0)


def test_cifar_keys_are_exactly_the_reference_layout():
    g = get_genotype("DARTS_V2")
    keys = reference_keys_cifar(g, 8, 10, 5, auxiliary=True)
    own = {k: tuple(v.shape) for k, v in NetworkCIFAR(8, 10, 5, True, g).state_dict().items()
           if not k.endswith("num_batches_tracked")}
    assert own == keys


def test_imagenet_checkpoint_loads_strictly_and_computes_the_reference(tmp_path):
    g = get_genotype("DARTS_V2")
    C, layers, classes = 8, 5, 20
    keys = reference_keys_imagenet(g, C, classes, layers, auxiliary=True)
    sd = random_state_dict(keys, seed=1)
    path = str(tmp_path / "imagenet.pt")
    _save_like_the_original(sd, path, data_parallel=True, wrap=False, legacy=True)

    model = load_reference_checkpoint(NetworkImageNet(C, classes, layers, True, g), path).eval()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert own == keys
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference_forward_imagenet(g, sd, layers, x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The converter on its own


def test_converter_unwraps_strips_and_adds_counters():
    bn = {"bn.weight": torch.ones(3), "bn.bias": torch.zeros(3), "bn.running_mean": torch.zeros(3),
          "bn.running_var": torch.ones(3)}
    out = convert_reference_state_dict({"state_dict": {"module." + k: v for k, v in bn.items()}})
    assert set(out) == set(bn) | {"bn.num_batches_tracked"}
    assert out["bn.num_batches_tracked"].dtype == torch.long and out["bn.num_batches_tracked"].item() == 0
    # an existing counter is kept, and plain dicts pass through
    kept = convert_reference_state_dict({**bn, "bn.num_batches_tracked": torch.tensor(7)})
    assert kept["bn.num_batches_tracked"].item() == 7
    with pytest.raises(CheckpointError):
        convert_reference_state_dict({"epoch": 3, "optimizer": {}})
    with pytest.raises(CheckpointError):
        convert_reference_state_dict({"module.a": torch.zeros(1), "a": torch.zeros(1)})


def test_loader_errors_are_checkpoint_errors(tmp_path):
    g = get_genotype("DARTS_V2")
    model = NetworkCIFAR(8, 10, 5, True, g)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference_checkpoint(model, str(tmp_path / "missing.pt"))

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError):
        load_reference_checkpoint(model, str(garbage))

    # a pickled module is refused by the safe loader, never unpickled
    whole = tmp_path / "whole_model.pt"
    torch.save(nn.Linear(2, 2), whole)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_reference_checkpoint(model, str(whole))

    # weights of another genotype: a readable list of mismatches, not a RuntimeError
    other = tmp_path / "v1.pt"
    _save_like_the_original(random_state_dict(reference_keys_cifar(get_genotype("DARTS_V1"), 8, 10, 5, True)), other)
    with pytest.raises(CheckpointError, match="does not fit") as info:
        load_reference_checkpoint(model, str(other))
    assert isinstance(info.value, DartsError)
    # ... and without the auxiliary head the model rejects the head's weights
    good = tmp_path / "v2.pt"
    _save_like_the_original(random_state_dict(reference_keys_cifar(g, 8, 10, 5, True)), good)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_reference_checkpoint(NetworkCIFAR(8, 10, 5, False, g), str(good))


def test_pickle_error_type_is_what_torch_raises(tmp_path):
    # load_reference_checkpoint maps the safe loader's refusal to CheckpointError by this exception type
    path = tmp_path / "m.pt"
    torch.save(nn.Linear(2, 2), path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
