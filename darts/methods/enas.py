"""ENAS (Pham et al., "Efficient Neural Architecture Search via Parameter Sharing", ICML 2018): an LSTM controller
samples cells; the shared weights train on its samples, and the controller trains by REINFORCE on their accuracy.

Each epoch, as the authors' ``main.py`` runs it: one pass of weight steps, each on a cell the controller samples,
then ``steps`` controller updates, each averaging ``aggregate`` sampled cells' REINFORCE gradients. A cell's reward
is its accuracy on one validation batch with the shared weights (BatchNorm on the batch's own statistics, as the
micro search's ``build_valid_rl``), plus ``entropy_weight`` times the sample's entropy. The baseline is a moving
average ``b ← b − (1 − decay)(b − R)``, updated before the advantage ``R − b`` is taken, and the loss
``−log p(cell)·(R − b)`` (Williams' REINFORCE). The final cell is the best of ``samples`` sampled cells by the
accuracy on one validation batch each (Sec. 2.2 of the paper: "sample several models ... on a single minibatch").

Two controllers, each its authors' code:

* DARTS space, :class:`MicroController` (``src/cifar10/micro_controller.py`` and ``cifar10_micro_search.sh``): per
  node, two inputs by attention over the earlier nodes' anchors, then their two ops; the reduction cell continues
  from the normal cell's state. The paper's text gives 100 hidden units, tanh constant 2.5 and temperature 5; the
  micro script (whose defaults are used) runs a one-layer LSTM of 64, ``1.1·tanh`` on the input logits and
  ``(1.1/2.5)·tanh`` on the op logits, no temperature, Adam lr 0.0035 with β1 = 0 and ε = 1e-3, and biases the
  op logits towards the separable convolutions (learnt bias initialised to 10; a fixed ±0.25 in the normal cell).
* NAS-Bench-201 and any other space with a cell encoding, :class:`EncodingController` (AutoDL-Projects'
  ``search_model_enas_utils.Controller``): one choice per encoding position (NB201: the op of each edge) from a
  two-layer LSTM of 32, ``2.5·tanh(logits / 5)``, Adam lr 0.001, β1 = 0, ε = 1e-3, gradient clipped to 5.
  AutoDL-Projects' loop leaves its baseline at the previous epoch's value within an epoch; here it is updated
  every sample, as the ENAS paper and code do.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..genotype import Genotype
from ..options import option
from .registry import register_method
from .single_path import SinglePathMethod, batch_accuracy

log = logging.getLogger(__name__)


def _draw(logits: torch.Tensor, rng, greedy: bool) -> int:
    """One index from ``softmax(logits)`` with ``rng`` (a ``random.Random``: the same draw on every rank)."""
    if greedy:
        return int(logits.detach().argmax())
    probs = F.softmax(logits.detach().double().flatten(), 0).tolist()
    u, acc = rng.random(), 0.0
    for k, p in enumerate(probs):
        acc += p
        if u < acc:
            return k
    return len(probs) - 1


class Sample:
    """A sampled cell's choices, their summed log-probability and entropy (tensors with gradients).

    ``forced``: the choices to take instead of drawing them (the log-probability of a given cell)."""

    def __init__(self, forced=None):
        self.choices: list[int] = []
        self.log_prob = 0.0
        self.entropy = 0.0
        self.forced = forced

    def choose(self, logits: torch.Tensor, rng, greedy: bool) -> int:
        if self.forced is not None:
            return int(self.forced[len(self.choices)])
        return _draw(logits, rng, greedy)

    def add(self, logits: torch.Tensor, k: int, entropy: torch.Tensor) -> None:
        self.choices.append(k)
        self.log_prob = self.log_prob + F.log_softmax(logits.flatten(), 0)[k]
        self.entropy = self.entropy + entropy


class _Controller(nn.Module):
    def __init__(self, lstm_size: int, lstm_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(lstm_size, lstm_size, lstm_layers)
        self.register_buffer("baseline", torch.zeros((), dtype=torch.float64))

    def reset_uniform(self) -> None:
        for p in self.parameters():  # both codes: U(-0.1, 0.1)
            nn.init.uniform_(p, -0.1, 0.1)

    def step(self, inputs: torch.Tensor, state):
        out, state = self.lstm(inputs.view(1, 1, -1), state)
        return out.view(1, -1), state


class MicroController(_Controller):
    """ENAS's micro-search controller over a DARTS cell of ``steps`` nodes with ``ops`` (``none`` excluded)."""

    def __init__(self, ops: tuple[str, ...], steps: int, lstm_size: int, lstm_layers: int, tanh_constant,
                 op_tanh_reduce: float, temperature):
        super().__init__(lstm_size, lstm_layers)
        self.ops, self.steps = ops, steps
        self.tanh_constant, self.op_tanh_reduce, self.temperature = tanh_constant, op_tanh_reduce, temperature
        H, n = lstm_size, len(ops)
        self.g_emb = nn.Parameter(torch.empty(1, H))
        self.w_emb = nn.Embedding(n, H)
        self.w_soft = nn.Linear(H, n, bias=False)
        self.w_attn_1 = nn.Linear(H, H, bias=False)
        self.w_attn_2 = nn.Linear(H, H, bias=False)
        self.v_attn = nn.Linear(H, 1, bias=False)
        self.reset_uniform()
        sep = torch.tensor([op.startswith("sep_conv") for op in ops])
        # the authors' op order starts with the two separable convolutions: b_soft = [10, 10, 0, 0, 0] (learnt)
        # and b_soft_no_learn = [0.25, 0.25, -0.25, -0.25, -0.25] (normal cell only)
        self.b_soft = nn.Parameter(torch.where(sep, 10.0, 0.0).view(1, n))
        self.register_buffer("b_soft_no_learn", torch.where(sep, 0.25, -0.25).view(1, n))

    def _shape(self, logits, tanh_constant):
        if self.temperature is not None:
            logits = logits / self.temperature
        if tanh_constant is not None:
            logits = tanh_constant * torch.tanh(logits)
        return logits

    def _cell(self, sample: Sample, state, rng, greedy: bool, use_bias: bool):
        inputs = self.g_emb
        anchors, anchors_w1 = [], []
        for _ in range(2):  # the two cell inputs: zero anchors, attention keys from two LSTM steps
            h, state = self.step(inputs, state)
            anchors.append(torch.zeros_like(h))
            anchors_w1.append(self.w_attn_1(h))
        op_tanh = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
        for node in range(self.steps):
            for _ in range(2):  # its two inputs, by attention over the earlier nodes
                h, state = self.step(inputs, state)
                query = torch.tanh(torch.cat(anchors_w1[: node + 2]) + self.w_attn_2(h))
                logits = self._shape(self.v_attn(query).view(1, -1), self.tanh_constant)
                k = sample.choose(logits, rng, greedy)
                sample.add(logits, k, self._entropy(logits, k))
                inputs = anchors[k]
            for _ in range(2):  # and their two ops
                h, state = self.step(inputs, state)
                logits = self._shape(self.w_soft(h) + self.b_soft, op_tanh)
                if use_bias:
                    logits = logits + self.b_soft_no_learn
                k = sample.choose(logits, rng, greedy)
                sample.add(logits, k, self._entropy(logits, k))
                inputs = self.w_emb.weight[k].view(1, -1)
            h, state = self.step(inputs, state)
            anchors.append(h)
            anchors_w1.append(self.w_attn_1(h))
            inputs = self.g_emb
        return state

    @staticmethod
    def _entropy(logits, k):
        # ENAS: stop_gradient(−log p_k · p_k), the chosen value's term of the entropy
        lp = F.log_softmax(logits.detach().flatten(), 0)[k]
        return -lp * lp.exp()

    def sample(self, rng, greedy: bool = False, forced=None) -> Sample:
        """A cell drawn with ``rng`` (or the most likely choice at each step, or the ``forced`` choices)."""
        s = Sample(forced)
        state = self._cell(s, None, rng, greedy, use_bias=True)  # normal cell
        self._cell(s, state, rng, greedy, use_bias=False)  # the reduction cell continues from its state
        return s

    def genotype(self, choices, primitives):
        cells, at = [], 0
        for _ in range(2):
            edges = []
            for _node in range(self.steps):
                a, b, op_a, op_b = choices[at: at + 4]
                edges += [(self.ops[op_a], a), (self.ops[op_b], b)]
                at += 4
            cells.append(tuple(edges))
        concat = tuple(range(2, 2 + self.steps))
        return Genotype(cells[0], concat, cells[1], concat, tuple(primitives)).validate()


class EncodingController(_Controller):
    """AutoDL-Projects' ENAS controller: one choice per position of a cell encoding, ``tanh_constant ·
    tanh(logits / temperature)``, the embedding of each choice feeding the next step."""

    def __init__(self, encoding, lstm_size: int, lstm_layers: int, tanh_constant, temperature):
        super().__init__(lstm_size, lstm_layers)
        self.encoding, self.tanh_constant, self.temperature = encoding, tanh_constant, temperature
        sizes = encoding.sizes
        self.shared = len(set(sizes)) == 1  # NB201: one prediction layer and embedding for every edge
        self.input_vars = nn.Parameter(torch.empty(1, lstm_size))
        heads = [sizes[0]] if self.shared else list(sizes)
        self.w_pred = nn.ModuleList(nn.Linear(lstm_size, s) for s in heads)
        self.w_embd = nn.ModuleList(nn.Embedding(s, lstm_size) for s in heads)
        self.reset_uniform()

    def sample(self, rng, greedy: bool = False, forced=None) -> Sample:
        """A cell drawn with ``rng`` (or the most likely choice at each step, or the ``forced`` choices)."""
        s, inputs, state = Sample(forced), self.input_vars, None
        for i in range(len(self.encoding.sizes)):
            h, state = self.step(inputs, state)
            j = 0 if self.shared else i
            logits = self.w_pred[j](h)
            if self.temperature is not None:
                logits = logits / self.temperature
            if self.tanh_constant is not None:
                logits = self.tanh_constant * torch.tanh(logits)
            k = s.choose(logits, rng, greedy)
            p = F.softmax(logits.flatten(), 0)
            s.add(logits, k, -(p * F.log_softmax(logits.flatten(), 0)).sum())  # Categorical entropy, as AutoDL's
            inputs = self.w_embd[j].weight[k].view(1, -1)
        return s

    def genotype(self, choices, primitives):
        return self.encoding.decode(choices)


@register_method
class ENAS(SinglePathMethod):
    """ENAS's controller, REINFORCE and weight sharing on the supernet (see the module docstring).

    Options:
        lstm_size, lstm_layers: the controller's LSTM (DARTS space: 64 x 1, the micro script's; nb201: 32 x 2).
        tanh_constant: ``c·tanh`` on the logits (input choices in the DARTS space; 0: none).
        op_tanh_reduce: the op logits' constant is ``tanh_constant / op_tanh_reduce`` (DARTS space).
        temperature: logits divided by it before the tanh (0: none; nb201: 5).
        entropy_weight: the entropy bonus in the reward.
        baseline_decay: the moving average's decay.
        steps, aggregate: controller updates per epoch, and sampled cells averaged into each.
        grad_clip: the controller's gradient norm clip (0: none; AutoDL-Projects' 5 in nb201).
        adam_eps: ε of the controller's Adam (both codes: 1e-3).
        samples: cells sampled at the end, each scored on one validation batch; the best is the result.
        eval_samples: the same after every epoch, for the epoch's cell in the log.
    """

    name = "enas"
    paper = "Pham et al., Efficient Neural Architecture Search via Parameter Sharing, ICML 2018"
    flag_prefix = "enas"

    @dataclass
    class Options:
        lstm_size: int = option(64, "controller LSTM hidden units (the paper: 100; the micro script: 64; nb201: 32)",
                                positive=True, max=65536)
        lstm_layers: int = option(1, "controller LSTM layers (nb201: 2)", positive=True, max=64)
        tanh_constant: float = option(1.1, "c in c·tanh(logits) (paper: 2.5; micro script: 1.1; 0: none)",
                                      nonneg=True)
        op_tanh_reduce: float = option(2.5, "DARTS space: the op logits use tanh_constant / this", positive=True)
        temperature: float = option(0.0, "logits / temperature before the tanh (paper and nb201: 5; micro script: "
                                    "none = 0)", nonneg=True)
        entropy_weight: float = option(1e-4, "weight of the sample entropy in the reward", nonneg=True)
        baseline_decay: float = option(0.99, "decay of the reward's moving-average baseline", min=0, max=1,
                                       max_exclusive=True)
        steps: int = option(30, "controller updates per epoch (nb201: 50)", nonneg=True, max=10**6)
        aggregate: int = option(10, "sampled cells averaged into each controller update (nb201: 20)", positive=True,
                                max=10**6)
        grad_clip: float = option(0.0, "clip the controller's gradient to this norm (0: none; nb201: 5)",
                                  nonneg=True)
        adam_eps: float = option(1e-3, "epsilon of the controller's Adam", positive=True)
        samples: int = option(10, "cells sampled at the end, each scored on one validation batch (nb201: 100)",
                              positive=True, max=10**6)
        eval_samples: int = option(10, "cells sampled after each epoch for the epoch's cell", positive=True,
                                   max=10**6)

    presets = {
        # cifar10_micro_search.sh: 150 epochs, batch 160, lr 0.05 -> 0.0005, l2 1e-4; controller Adam 0.0035, β1 0
        "paper": dict(epochs=150, batch_size=160, lr=0.05, lr_min=0.0005, weight_decay=1e-4),
        "small": dict(enas_steps=6, enas_aggregate=5, enas_samples=10, enas_eval_samples=4),
        "darts": dict(arch_lr=0.0035, arch_beta1=0.0, arch_weight_decay=0.0),
        # AutoDL-Projects' ENAS.config and ENAS.sh
        "nb201": dict(arch_lr=0.001, arch_beta1=0.0, arch_weight_decay=0.0, enas_lstm_size=32, enas_lstm_layers=2,
                      enas_tanh_constant=2.5, enas_temperature=5.0, enas_steps=50, enas_aggregate=20,
                      enas_grad_clip=5.0, enas_samples=100),
        "nb201/paper": dict(epochs=250, batch_size=128, lr=0.05, lr_min=0.0005, weight_decay=2.5e-4, nesterov=True),
        "nb201/small": dict(enas_steps=6, enas_aggregate=5, enas_samples=20, enas_eval_samples=4),
    }

    def bind(self, space, primitives, seed):
        super().bind(space, primitives, seed)
        self.micro = space.name == "darts"

    def build_controller(self):
        o = self.options
        tanh = o.tanh_constant or None
        temp = o.temperature or None
        if self.micro:
            ops = tuple(p for p in self.primitives if p != "none")
            if not ops:
                raise ConfigError("--method enas in the DARTS space needs an op other than none in --primitives")
            steps = self.space.options.nodes
            self.controller = MicroController(ops, steps, o.lstm_size, o.lstm_layers, tanh, o.op_tanh_reduce, temp)
        else:
            self.controller = EncodingController(self.encoding, o.lstm_size, o.lstm_layers, tanh, temp)
        return self.controller

    def arch_optimizer_options(self):
        return {"eps": self.options.adam_eps}

    def draw(self, rng, greedy: bool = False):
        """``(genotype, Sample)`` from the controller (with the graph of its log-probability)."""
        s = self.controller.sample(rng, greedy)
        return self.controller.genotype(s.choices, self.primitives), s

    def sample(self, model, rng):
        with torch.no_grad():
            return self.draw(rng)[0]

    def reward(self, model, cell, batch, ctx) -> float:
        """Accuracy of ``cell`` on one validation batch, BatchNorm on the batch's own statistics."""
        with self.showing(cell):
            return batch_accuracy(model, [batch], ctx, batch_stats=True)

    def controller_loss(self, sample: Sample, reward: float) -> torch.Tensor:
        """Update the baseline with ``reward`` (R, entropy bonus included), then ``−log p · (R − b)``."""
        c, decay = self.controller, self.options.baseline_decay
        c.baseline.sub_((1 - decay) * (c.baseline - reward))
        return -sample.log_prob * (reward - float(c.baseline))

    def after_epoch(self, model, ctx):
        o, c = self.options, self.controller
        opt = ctx.arch_optimizer
        rewards, n = [], 0
        for step in range(o.steps):
            opt.zero_grad(set_to_none=True)
            for _ in range(o.aggregate):
                cell, s = self.draw(self.rng("controller", self.epoch, n))
                n += 1
                acc = self.reward(model, cell, next(ctx.val_stream), ctx)
                r = acc + o.entropy_weight * float(s.entropy)
                (self.controller_loss(s, r) / o.aggregate).backward()
                rewards.append(acc)
            params = [p for p in c.parameters() if p.grad is not None]
            grads = ctx.reduce([p.grad for p in params])  # equal on every rank already; kept exact under DDP
            for p, g in zip(params, grads):
                p.grad = g
            if o.grad_clip:
                nn.utils.clip_grad_norm_(params, o.grad_clip)
            opt.step()
        self.shown = self.best_of(model, o.eval_samples, ctx, ("epoch-cells", self.epoch))[0]
        out = {"controller_baseline": float(c.baseline), **super().after_epoch(model, ctx)}
        if rewards:
            out["controller_reward"] = sum(rewards) / len(rewards)
        return out

    def best_of(self, model, n: int, ctx, tag: tuple):
        """The best of ``n`` controller samples by accuracy on one validation batch each, and that accuracy."""
        best = None
        for i in range(n):
            with torch.no_grad():
                cell = self.draw(self.rng(*tag, i))[0]
            acc = self.reward(model, cell, next(ctx.val_stream), ctx)
            if best is None or acc > best[1]:
                best = (cell, acc)
        return best

    def final_genotype(self, model, ctx):
        cell, acc = self.best_of(model, self.options.samples, ctx, ("final",))  # not the epoch: a resume may skip it
        log.info("enas: best of %d sampled cells, %.2f%% on one validation batch", self.options.samples, 100 * acc)
        return cell

    def epoch_metrics(self, model):
        with torch.no_grad():
            s = self.controller.sample(self.rng("entropy", self.epoch))
        return {"controller_entropy": float(s.entropy)}

    def describe(self):
        o = self.options
        kind = "micro controller (attention over inputs)" if getattr(self, "micro", True) else "encoding controller"
        return (f"enas ({kind}, LSTM {o.lstm_size} x {o.lstm_layers}; {o.steps} updates of {o.aggregate} samples "
                f"per epoch; best of {o.samples} at the end)")
