"""The sections of a config that every model kind shares (data, model, train), torch-free.

A kind's own section (a flow's ``flow``, a VAE's ``iaf``) lives in the kind's package
(``made_cli.kinds``); config.py assembles ``Config`` from these and the registered kinds'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

__all__ = ["ConfigView", "DataConfig", "ModelConfig", "TrainConfig"]

# The spellings a config may use; degrees.py and heads.py take them from here, so reading a config
# needs no torch.
Ordering = Literal["natural", "reverse", "random"]
HiddenDegrees = Literal["random", "even"]  # random as in the paper; even: spread evenly
HeadName = Literal["bernoulli", "gaussian", "mog", "categorical", "auto"]
DatasetName = Literal[
    "binarized_mnist", "mnist", "fashion_mnist", "npz", "synthetic", "toy", "table",
    "power", "gas", "hepmass", "miniboone", "bsds300",
]  # fmt: skip
ToyShape = Literal["moons", "circles", "eight_gaussians", "checkerboard", "pinwheel", "spirals"]
Binarize = Literal["dynamic", "static", "threshold"]
Values = Literal["binary", "levels", "logit", "real", "mixed"]  # mixed: a table's, column by column


@dataclass(frozen=True)
class DataConfig:
    name: DatasetName = "binarized_mnist"
    root: str | None = None  # else $MADE_DATA_DIR, else ~/.cache/made
    path: str | None = None  # npz, table: the file (.npz; .csv, .tsv or .parquet)
    binarize: Binarize = "static"  # mnist, fashion_mnist with values binary: how grey becomes bits
    # binary: 0/1; levels: integers 0..levels-1 (grey quantised); logit: grey dequantised and
    # mapped to logit space (real); real: an npz's values as they are
    values: Values = "binary"
    levels: int = 4  # values: levels only
    features: int = 12  # synthetic only: dimensions
    size: int = 5000  # synthetic, toy: training rows (validation and test get a fifth each)
    shape: ToyShape = "moons"  # toy: moons | circles | eight_gaussians | checkerboard | pinwheel | spirals
    # table only: the modelled columns (default: every column with no role below that can be
    # modelled, see tables.infer_schema), the label column (classes for condition_on: label),
    # continuous context columns (the model is p(x | c)), a column of train/valid/test per row
    # (default: a seeded 80/10/10 split), and the most distinct values a text column may have
    # to be modelled (a categorical)
    columns: tuple[str, ...] = ()
    label_column: str | None = None
    context_columns: tuple[str, ...] = ()
    split_column: str | None = None
    exclude: tuple[str, ...] = ()  # columns not to model (when data.columns does not name them)
    # rows with missing cells: model (train on the observed cells), drop, or refuse the file
    missing: Literal["model", "drop", "refuse"] = "model"
    max_levels: int = 256
    seed: int = 0  # table: seeds the 80/10/10 split when there is no split column; toy: its rows


@dataclass(frozen=True)
class ModelConfig:
    # a registered kind (kinds.KINDS); iaf_vae, maf, nsf: the keys below describe each step's or layer's MADE
    kind: str = "made"
    hidden: tuple[int, ...] = (500,)
    ordering: Ordering = "natural"
    hidden_degrees: HiddenDegrees = "random"
    num_masks: int = 1
    direct: bool = True  # direct input-output connections
    # bernoulli | categorical | gaussian | mog (mixture of Gaussians); a table: auto, gaussian or mog
    head: HeadName = "bernoulli"
    components: int = 5  # head: mog, or a flow's base: mog
    condition_on: Literal["none", "label"] = "none"  # label: class-conditional, labels at degree 0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    patience: int = 30  # epochs without a better validation NLL before stopping
    eval_batch_size: int = 1000
    tensorboard: bool = False  # also write metrics.jsonl's numbers as TensorBoard scalars in RUN/tensorboard


class ConfigView(Protocol):
    """A whole config as a kind's checks read it: the shared sections, and its own by name."""

    name: str
    seed: int
    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def __getattr__(self, section: str) -> Any: ...
