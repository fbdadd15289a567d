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
    """Where the data comes from and how its values are read (``data.*``)."""

    name: DatasetName = "binarized_mnist"
    """The data set: an MNIST, an npz file, a table file, synthetic, a toy or a MAF benchmark."""
    root: str | None = None
    """The data root for downloads and benchmarks; else $MADE_DATA_DIR, else ~/.cache/made."""
    path: str | None = None
    """npz and table: the file (.npz; .csv, .tsv or .parquet), kept as an absolute path."""
    binarize: Binarize = "static"
    """mnist and fashion_mnist with values binary: how grey becomes bits."""
    values: Values = "binary"
    """binary: 0/1; levels: integers 0..levels-1; logit: grey dequantised, in logit space; real; mixed."""
    levels: int = 4
    """values levels: the number of grey levels."""
    features: int = 12
    """synthetic: its dimensions."""
    size: int = 5000
    """synthetic and toy: training rows (validation and test get a fifth each)."""
    shape: ToyShape = "moons"
    """toy: the 2-D density (moons, circles, eight_gaussians, checkerboard, pinwheel, spirals)."""
    columns: tuple[str, ...] = ()
    """table: the modelled columns (default: every column with no other role that can be modelled)."""
    label_column: str | None = None
    """table: the column of class labels (for model.condition_on: label)."""
    context_columns: tuple[str, ...] = ()
    """table: continuous columns the model is conditioned on, not modelled (p(x | c))."""
    split_column: str | None = None
    """table: a column of train/valid/test per row (default: a seeded 80/10/10 split)."""
    exclude: tuple[str, ...] = ()
    """table: columns not to model (when data.columns does not name them)."""
    missing: Literal["model", "drop", "refuse"] = "model"
    """table: rows with missing cells are modelled (trained on their observed cells), dropped or refused."""
    max_levels: int = 256
    """table: the most distinct values a text column may have to be modelled (a categorical)."""
    seed: int = 0
    """table: seeds the 80/10/10 split when there is no split column; toy: seeds its rows."""


@dataclass(frozen=True)
class ModelConfig:
    """The model (``model.*``); for iaf_vae, maf and nsf the MADE of each step or layer."""

    kind: str = "made"
    """A registered kind: made, iaf_vae, maf or nsf."""
    hidden: tuple[int, ...] = (500,)
    """Hidden layer sizes; [] gives a purely linear autoregressive model."""
    ordering: Ordering = "natural"
    """The input ordering: natural, reverse or random."""
    hidden_degrees: HiddenDegrees = "random"
    """Hidden units' degrees: random (as in the MADE paper) or even (spread over 1..D-1)."""
    num_masks: int = 1
    """Masks of an ensemble (> 1): cycled in training, a mixture at test time."""
    direct: bool = True
    """Direct input-output connections."""
    head: HeadName = "bernoulli"
    """Each dimension's law: bernoulli, categorical, gaussian, mog; a table: auto, gaussian or mog."""
    components: int = 5
    """Gaussians per dimension of a mog head, or of a flow's mog base."""
    condition_on: Literal["none", "label"] = "none"
    """label: a class-conditional model p(x | label), the label at degree 0."""


@dataclass(frozen=True)
class TrainConfig:
    """Training (``train.*``): Adam, early stopping on the validation NLL."""

    epochs: int = 100
    """The most epochs to train."""
    batch_size: int = 100
    """Rows per training step."""
    lr: float = 1.0e-3
    """Adam's learning rate."""
    weight_decay: float = 0.0
    """Adam's L2 weight decay."""
    patience: int = 30
    """Epochs without a better validation NLL before stopping."""
    eval_batch_size: int = 1000
    """Rows per pass when evaluating."""
    tensorboard: bool = False
    """Also write metrics.jsonl's numbers as TensorBoard scalars in RUN/tensorboard."""


class ConfigView(Protocol):
    """A whole config as a kind's checks read it: the shared sections, and its own by name."""

    name: str
    seed: int
    data: DataConfig
    model: ModelConfig
    train: TrainConfig

    def __getattr__(self, section: str) -> Any: ...
