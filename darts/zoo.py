"""The published cells of the DARTS family, as data: each genotype with the repository file it was transcribed
from, the search space it was searched in, and the figures its paper reported.

Look cells up with :func:`get_genotype` (``"DARTS_V2"``, ``"darts_v2"`` and ``"darts-v2"`` are the same name).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from .errors import DartsError, UnknownNameError
from .genotype import Edge, Genotype
from .ops import DARTS_PRIMITIVES
from .registry import Registry

__all__ = ["ZooEntry", "ZOO", "UnknownCellError", "register_cell", "list_names", "get_entry", "get_genotype"]


class UnknownCellError(UnknownNameError):
    """A cell name that is not in :data:`ZOO`."""


@dataclass(frozen=True)
class ZooEntry:
    """A published cell and what its paper reported.

    Attributes:
        name: canonical name (``DARTS_V2``).
        genotype: the cell; ``genotype.primitives`` is the search space it was found in.
        paper: short citation.
        source: ``"owner/repo · path"`` of the file the genotype was transcribed from.
        cifar_error, cifar_error_std: CIFAR-10 test error in % (mean and ± as reported; None if not reported).
        cifar_params_m: CIFAR-10 network parameters in millions (20 cells, 36 channels, auxiliary head excluded).
        search_gpu_days: reported search cost in GPU-days (per run where the paper gives both).
        imagenet_top1_error, imagenet_top5_error: ImageNet mobile setting (14 cells, 48 channels), in %.
        imagenet_params_m, imagenet_macs_m: the same network's parameters and multiply-adds, in millions.
        notes: what the reader should know (transcription choices, where a figure comes from).
    """

    name: str
    genotype: Genotype
    paper: str
    source: str
    cifar_error: float | None = None
    cifar_error_std: float | None = None
    cifar_params_m: float | None = None
    search_gpu_days: float | None = None
    imagenet_top1_error: float | None = None
    imagenet_top5_error: float | None = None
    imagenet_params_m: float | None = None
    imagenet_macs_m: float | None = None
    notes: str = ""


def _from_pairs(nodes) -> tuple[Edge, ...]:
    """Flatten AutoDL-Projects' pairs-per-node cells into the DARTS ``(op, input)`` list.

    AutoDL writes one ``((op_a, in_a), (op_b, in_b))`` tuple per intermediate node. Its ``InferCell`` indexes
    inputs exactly like DARTS (0 and 1 are the two previous cells, 2+i is node i) and applies the pair's ops in
    order, so flattening node by node gives the DARTS list; node count = number of tuples, concat unchanged.
    """
    flat = []
    for node in nodes:
        if len(node) != 2:
            raise DartsError(f"a pairs-per-node cell needs exactly two (op, input) pairs per node, got {node!r}")
        flat.extend(node)
    return tuple(flat)


_CONCAT_2_5 = (2, 3, 4, 5)  # written range(2, 6) in most of the source files

# NASNet and AmoebaNet were found by RL / evolution in spaces with ops we do not register (e.g. 5x5 and 7x7
# max pooling, 1x1 and 3x3 plain convs). Their primitives are the ops their cells use, in order of appearance.
_NASNET_OPS = ("sep_conv_5x5", "sep_conv_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_7x7", "max_pool_3x3")
_AMOEBA_OPS = (
    "avg_pool_3x3", "max_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "skip_connect", "sep_conv_7x7", "conv_7x1_1x7",
)
# DrNAS searched the DARTS space without `none` (DARTS-space/genotypes.py comments it out).
_DRNAS_PRIMITIVES = tuple(p for p in DARTS_PRIMITIVES if p != "none")

_ENTRIES = [
    ZooEntry(
        name="NASNet",
        genotype=Genotype(
            normal=[
                ("sep_conv_5x5", 1), ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 0),
                ("avg_pool_3x3", 1), ("skip_connect", 0),
                ("avg_pool_3x3", 0), ("avg_pool_3x3", 0),
                ("sep_conv_3x3", 1), ("skip_connect", 1),
            ],
            normal_concat=(2, 3, 4, 5, 6),
            reduce=[
                ("sep_conv_5x5", 1), ("sep_conv_7x7", 0),
                ("max_pool_3x3", 1), ("sep_conv_7x7", 0),
                ("avg_pool_3x3", 1), ("sep_conv_5x5", 0),
                ("skip_connect", 3), ("avg_pool_3x3", 2),
                ("sep_conv_3x3", 2), ("max_pool_3x3", 1),
            ],
            reduce_concat=(4, 5, 6),
            primitives=_NASNET_OPS,
        ),
        paper="Zoph et al., Learning Transferable Architectures for Scalable Image Recognition, CVPR 2018",
        source="quark0/darts · cnn/genotypes.py",
        cifar_error=2.65, cifar_params_m=3.3, search_gpu_days=1800,
        imagenet_top1_error=26.0, imagenet_top5_error=8.4, imagenet_params_m=5.3, imagenet_macs_m=564,
        notes="DARTS' rendering of NASNet-A (5 nodes); primitives = the ops the cells use. The paper's figures "
        "are for NASNet's own network, not for this cell in the DARTS skeleton.",
    ),
    ZooEntry(
        name="AmoebaNet",
        genotype=Genotype(
            normal=[
                ("avg_pool_3x3", 0), ("max_pool_3x3", 1),
                ("sep_conv_3x3", 0), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("avg_pool_3x3", 3),
                ("sep_conv_3x3", 1), ("skip_connect", 1),
                ("skip_connect", 0), ("avg_pool_3x3", 1),
            ],
            normal_concat=(4, 5, 6),
            reduce=[
                ("avg_pool_3x3", 0), ("sep_conv_3x3", 1),
                ("max_pool_3x3", 0), ("sep_conv_7x7", 2),
                ("sep_conv_7x7", 0), ("avg_pool_3x3", 1),
                ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                ("conv_7x1_1x7", 0), ("sep_conv_3x3", 5),
            ],
            reduce_concat=(3, 4, 6),
            primitives=_AMOEBA_OPS,
        ),
        paper="Real et al., Regularized Evolution for Image Classifier Architecture Search, AAAI 2019",
        source="quark0/darts · cnn/genotypes.py",
        cifar_error=3.34, cifar_error_std=0.06, cifar_params_m=3.2, search_gpu_days=3150,
        imagenet_top1_error=25.5, imagenet_top5_error=8.0, imagenet_params_m=5.1, imagenet_macs_m=555,
        notes="DARTS' rendering of AmoebaNet-A (5 nodes, concat lists skip nodes); primitives = the ops the cells "
        "use. The paper's figures are for AmoebaNet's own network.",
    ),
    ZooEntry(
        name="DARTS_V1",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("skip_connect", 2),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                ("skip_connect", 2), ("max_pool_3x3", 0),
                ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("avg_pool_3x3", 0),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019 (first order)",
        source="quark0/darts · cnn/genotypes.py",
        cifar_error=3.00, cifar_error_std=0.14, cifar_params_m=3.3, search_gpu_days=0.4,
        notes="Search cost per run (the paper's 1.5 GPU-days covers 4 runs).",
    ),
    ZooEntry(
        name="DARTS_V2",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0),
                ("skip_connect", 0), ("dil_conv_3x3", 2),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("max_pool_3x3", 1),
                ("skip_connect", 2), ("max_pool_3x3", 1),
                ("max_pool_3x3", 0), ("skip_connect", 2),
                ("skip_connect", 2), ("max_pool_3x3", 1),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Liu et al., DARTS: Differentiable Architecture Search, ICLR 2019 (second order)",
        source="quark0/darts · cnn/genotypes.py",
        cifar_error=2.76, cifar_error_std=0.09, cifar_params_m=3.3, search_gpu_days=1.0,
        imagenet_top1_error=26.7, imagenet_top5_error=8.7, imagenet_params_m=4.7, imagenet_macs_m=574,
        notes="Search cost per run (the paper's 4 GPU-days covers 4 runs). The same list is copied verbatim in "
        "yuhuixu1993/PC-DARTS, chenxin061/pdarts and xiangning-chen/DrNAS genotypes.py, and matches the "
        "pairs-per-node DARTS_V2 of D-X-Y/AutoDL-Projects.",
    ),
    ZooEntry(
        name="PC_DARTS_cifar",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 1), ("skip_connect", 0),
                ("sep_conv_3x3", 0), ("dil_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 1),
                ("avg_pool_3x3", 0), ("dil_conv_3x3", 1),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("sep_conv_5x5", 1), ("max_pool_3x3", 0),
                ("sep_conv_5x5", 1), ("sep_conv_5x5", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Xu et al., PC-DARTS: Partial Channel Connections for Memory-Efficient Architecture Search, "
        "ICLR 2020",
        source="yuhuixu1993/PC-DARTS · genotypes.py",
        cifar_error=2.57, cifar_error_std=0.07, cifar_params_m=3.6, search_gpu_days=0.1,
        imagenet_top1_error=25.1, imagenet_top5_error=7.8, imagenet_params_m=5.3, imagenet_macs_m=586,
        notes="ImageNet figures: the CIFAR-10 cell transferred (PC-DARTS ImageNet table); the same 74.9 / 92.2 "
        "top-1 / top-5 accuracy, 5.3 M, 586 M appear in Table 3 of the OTOv3 paper (Chen et al., 2023).",
    ),
    ZooEntry(
        name="PC_DARTS_image",
        genotype=Genotype(
            normal=[
                ("skip_connect", 1), ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 0), ("skip_connect", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 1), ("dil_conv_5x5", 4),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("sep_conv_3x3", 0), ("skip_connect", 1),
                ("dil_conv_5x5", 2), ("max_pool_3x3", 1),
                ("sep_conv_3x3", 2), ("sep_conv_3x3", 1),
                ("sep_conv_5x5", 0), ("sep_conv_3x3", 3),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Xu et al., PC-DARTS, ICLR 2020 (searched directly on ImageNet)",
        source="yuhuixu1993/PC-DARTS · genotypes.py",
        search_gpu_days=3.8,
        imagenet_top1_error=24.2, imagenet_top5_error=7.3, imagenet_params_m=5.3, imagenet_macs_m=597,
        notes="Not evaluated on CIFAR-10 by the paper.",
    ),
    ZooEntry(
        name="PDARTS",
        genotype=Genotype(
            normal=[
                ("skip_connect", 0), ("dil_conv_3x3", 1),
                ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 3),
                ("sep_conv_3x3", 0), ("dil_conv_5x5", 4),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("avg_pool_3x3", 0), ("sep_conv_5x5", 1),
                ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
                ("max_pool_3x3", 0), ("dil_conv_3x3", 1),
                ("dil_conv_3x3", 1), ("dil_conv_5x5", 3),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Chen et al., Progressive Differentiable Architecture Search, ICCV 2019",
        source="chenxin061/pdarts · genotypes.py",
        cifar_error=2.50, cifar_params_m=3.4, search_gpu_days=0.3,
        imagenet_top1_error=24.4, imagenet_top5_error=7.4, imagenet_params_m=4.9, imagenet_macs_m=557,
    ),
    ZooEntry(
        name="GDAS_V1",
        genotype=Genotype(
            # transcribed node by node from AutoDL's pairs-per-node format, then flattened (see _from_pairs)
            normal=_from_pairs([
                (("skip_connect", 0), ("skip_connect", 1)),
                (("skip_connect", 0), ("sep_conv_5x5", 2)),
                (("sep_conv_3x3", 3), ("skip_connect", 0)),
                (("sep_conv_5x5", 4), ("sep_conv_3x3", 3)),
            ]),
            normal_concat=_CONCAT_2_5,
            reduce=_from_pairs([
                (("sep_conv_5x5", 0), ("sep_conv_3x3", 1)),
                (("sep_conv_5x5", 2), ("sep_conv_5x5", 1)),
                (("dil_conv_5x5", 2), ("sep_conv_3x3", 1)),
                (("sep_conv_5x5", 0), ("sep_conv_5x5", 1)),
            ]),
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Dong & Yang, Searching for A Robust Neural Architecture in Four GPU Hours, CVPR 2019",
        source="D-X-Y/AutoDL-Projects · xautodl/nas_infer_model/DXYs/genotypes.py",
        cifar_error=2.93, cifar_params_m=3.4, search_gpu_days=0.21,
        imagenet_top1_error=26.0, imagenet_top5_error=8.5, imagenet_params_m=5.3, imagenet_macs_m=581,
        notes="Pairs-per-node source format, flattened node by node (4 nodes, concat 2..5). Primitives: the "
        "8 DARTS ops, which GDAS searched over. The ImageNet figures are the GDAS paper's; no second copy of "
        "that table was found to check them against.",
    ),
    ZooEntry(
        name="DrNAS_cifar10",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 0), ("sep_conv_5x5", 1),
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 2),
                ("skip_connect", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 2), ("dil_conv_5x5", 3),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("sep_conv_5x5", 1),
                ("dil_conv_5x5", 2), ("sep_conv_5x5", 1),
                ("sep_conv_5x5", 1), ("dil_conv_5x5", 3),
                ("skip_connect", 4), ("sep_conv_5x5", 1),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=_DRNAS_PRIMITIVES,
        ),
        paper="Chen et al., DrNAS: Dirichlet Neural Architecture Search, ICLR 2021",
        source="xiangning-chen/DrNAS · DARTS-space/genotypes.py",
        cifar_error=2.46, cifar_error_std=0.03, cifar_params_m=4.1, search_gpu_days=0.6,
        notes="Searched without `none`.",
    ),
    ZooEntry(
        name="DrNAS_imagenet",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("dil_conv_3x3", 3),
                ("skip_connect", 0), ("sep_conv_3x3", 1),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 0), ("skip_connect", 2),
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 2),
                ("sep_conv_3x3", 3), ("sep_conv_3x3", 1),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=_DRNAS_PRIMITIVES,
        ),
        paper="Chen et al., DrNAS, ICLR 2021 (searched directly on ImageNet, progressive learning)",
        source="xiangning-chen/DrNAS · DARTS-space/genotypes.py",
        search_gpu_days=4.6,
        imagenet_top1_error=23.7, imagenet_params_m=5.7,
        notes="Searched without `none`. Figures from the repository README (top-5 and multiply-adds left out).",
    ),
    ZooEntry(
        name="SDARTS_RS",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                ("sep_conv_5x5", 1), ("skip_connect", 0),
                ("sep_conv_3x3", 3), ("skip_connect", 1),
                ("sep_conv_3x3", 1), ("dil_conv_3x3", 2),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("sep_conv_3x3", 1),
                ("skip_connect", 2), ("max_pool_3x3", 0),
                ("dil_conv_5x5", 3), ("max_pool_3x3", 0),
                ("sep_conv_3x3", 2), ("sep_conv_5x5", 3),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Chen & Hsieh, Stabilizing Differentiable Architecture Search via Perturbation-based "
        "Regularization, ICML 2020 (random smoothing)",
        source="xiangning-chen/SmoothDARTS · sota/cnn/genotypes.py",
        cifar_error=2.67, cifar_error_std=0.03, cifar_params_m=3.4, search_gpu_days=0.4,
        notes="`c10_s5_random`: space S5 is the DARTS space (the file's PRIMITIVES also lists `noise`, used "
        "only by space S4).",
    ),
    ZooEntry(
        name="SDARTS_ADV",
        genotype=Genotype(
            normal=[
                ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
                ("sep_conv_3x3", 1), ("skip_connect", 0),
                ("sep_conv_5x5", 0), ("dil_conv_3x3", 3),
                ("dil_conv_3x3", 4), ("skip_connect", 0),
            ],
            normal_concat=_CONCAT_2_5,
            reduce=[
                ("max_pool_3x3", 0), ("sep_conv_5x5", 1),
                ("skip_connect", 2), ("max_pool_3x3", 0),
                ("skip_connect", 3), ("skip_connect", 2),
                ("skip_connect", 2), ("sep_conv_5x5", 4),
            ],
            reduce_concat=_CONCAT_2_5,
            primitives=DARTS_PRIMITIVES,
        ),
        paper="Chen & Hsieh, Stabilizing Differentiable Architecture Search via Perturbation-based "
        "Regularization, ICML 2020 (adversarial)",
        source="xiangning-chen/SmoothDARTS · sota/cnn/genotypes.py",
        cifar_error=2.61, cifar_error_std=0.02, cifar_params_m=3.3, search_gpu_days=1.3,
        notes="`c10_s5_pgd`: space S5 is the DARTS space.",
    ),
]

#: Every published cell, by canonical name, in a fixed order (hand-designed baselines first).
ZOO: Registry[ZooEntry] = Registry("published cell", flag="--arch", unknown_error=UnknownCellError)
_BY_KEY: dict[str, str] = {}


def _key(name: str) -> str:
    # Case and -/_ do not distinguish names: users type darts_v2, DARTS-V2, ...
    return name.strip().lower().replace("-", "_")


def register_cell(entry: ZooEntry) -> ZooEntry:
    """Add a published cell to the zoo (a duplicate name, in any spelling, is an error); returns it."""
    if _key(entry.name) in _BY_KEY:
        ZOO.register(_BY_KEY[_key(entry.name)], entry)  # raises the registry's duplicate error
    entry.genotype.validate()
    ZOO.register(entry.name, entry)
    _BY_KEY[_key(entry.name)] = entry.name
    return entry


for _entry in _ENTRIES:
    register_cell(_entry)


def list_names() -> list[str]:
    """Canonical names of the published cells, in :data:`ZOO` order."""
    return list(ZOO)


def get_entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` called ``name`` (case-insensitive; ``-`` and ``_`` are the same).

    Raises :class:`UnknownCellError` (a :class:`DartsError`) naming close matches and every known cell.
    """
    canonical = _BY_KEY.get(_key(name)) if isinstance(name, str) else None
    if canonical is None:
        close = difflib.get_close_matches(_key(str(name)), list(_BY_KEY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(_BY_KEY[c] for c in close)}?" if close else ""
        raise UnknownCellError(f"unknown published cell {name!r}{hint} Known cells: {', '.join(ZOO)}.", name=name)
    return ZOO[canonical]


def get_genotype(name: str) -> Genotype:
    """The genotype of the published cell ``name`` (see :func:`get_entry`)."""
    return get_entry(name).genotype
