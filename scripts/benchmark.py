"""Speed of made on this machine, as ratios against baselines measured in the same run.

Absolute times on shared machines are noise; ratios measured side by side are not. Prints:
- training steps/s of a MADE, of the same MADE with its weights stored whole and multiplied by
  the masks (as before degree blocks, and as ensembles run), and of an unmasked MLP of the same
  shape (batch 100, same loss, same fused Adam): 1x500 to the paper's 2x8000, with and without
  direct connections, then ensembles up to the paper's best (32 masks of 2x8000), which train
  on their whole weights times the masks;
- evaluation rows/s of a 1x500 MADE, degree blocks against whole matrices;
- time for 64 MNIST-sized samples, degree-scheduled against naive ancestral sampling;
- the mixture log p(x) of ensembles in each member's degree blocks against the whole weights
  times the masks;
- made against the masked networks of zuko and nflows, when those are installed, twice: all
  with the same optimiser and loss in one loop, and each as its users run it;
- made's flows (MAF, and the neural spline flow) against zuko's and nflows' of the same shape,
  when installed, with no direct connections on either side: training steps in one loop with
  the same fused Adam (and with the peer's default Adam, as its users run it), sampling (made
  inverts each layer degree-scheduled, the peers run each layer's network once per dimension)
  and log p(x) throughput.

    python scripts/benchmark.py            # the numbers quoted in README
    python scripts/benchmark.py --quick    # tiny sizes: checks that it runs
    python scripts/benchmark.py --flows-only   # only the flows against zuko's and nflows'
    python scripts/benchmark.py --ensembles-only   # only the ensembles' training and mixture
    python scripts/benchmark.py --block-counts     # single-mask plans against fixed block counts
    python scripts/benchmark.py --paper-model      # the paper's 32-mask 2x8000: step, mixture, epoch
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from made_cli.config import load_config
from made_cli.heads import Bernoulli
from made_cli.interface import DensityModel
from made_cli.kinds import build_model
from made_cli.train import make_optimizer, train_step


def best_rates_of(
    step_functions: list[Callable[[int], None]], steps: int, repeats: int, warmup: int
) -> list[float]:
    """Calls per second of each step function, timed in alternation so all see the same
    machine; the best of ``repeats`` runs each, after a warm-up."""
    for i in range(warmup):
        for step in step_functions:
            step(i)
    best = [0.0] * len(step_functions)
    for _ in range(repeats):
        for which, step in enumerate(step_functions):
            start = time.perf_counter()
            for i in range(steps):
                step(i)
            best[which] = max(best[which], steps / (time.perf_counter() - start))
    return best


def best_rates(
    steps_a: Callable[[int], None], steps_b: Callable[[int], None], steps: int, repeats: int, warmup: int
) -> tuple[float, float]:
    """``best_rates_of`` for two step functions."""
    a, b = best_rates_of([steps_a, steps_b], steps, repeats, warmup)
    return a, b


def best_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


class MLP(nn.Module):
    """The unmasked network of the same shape: D-H..-D with ReLU, and a dense skip if asked."""

    def __init__(self, features: int, hidden: list[int], skip: bool) -> None:
        super().__init__()
        sizes = [features, *hidden, features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.skip = nn.Linear(features, features, bias=False) if skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for layer in self.layers[:-1]:
            h = F.relu(layer(h))
        out = self.layers[-1](h)
        return out + self.skip(x) if self.skip is not None else out


def made(features: int, overrides: list[str]) -> Any:
    """made's model of a config given by overrides (a MADEModel, or a MAF with model.kind=maf)."""
    return build_model(load_config(None, overrides), features)


def binary_data(features: int, batch: int) -> torch.Tensor:
    """50 batches of MNIST-like bits (13% ones), cycled through by every step function."""
    return (torch.rand(50 * batch, features, generator=torch.Generator().manual_seed(0)) < 0.13).float()


def schedule(quick: bool) -> tuple[int, int, int]:
    """(steps per timed run, timed runs, warm-up steps)."""
    return (3, 1, 1) if quick else (100, 5, 30)


def made_stepper(model: DensityModel, data: torch.Tensor, batch: int) -> Callable[[int], None]:
    """made's own training step, optimiser set-up included."""
    opt = make_optimizer(model, 1e-3, 0.0)

    def step(i: int) -> None:
        train_step(model, opt, data[(i % 50) * batch : (i % 50 + 1) * batch], i, 50)

    return step


Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def made_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The NLL made trains on: its Bernoulli head's log-likelihood of logits (B, D)."""
    return -Bernoulli().log_prob(logits[:, None], x).sum(1).mean()


def torch_loss(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same NLL as a peer's user writes it, with torch's fused binary cross-entropy."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1).mean()


def net_stepper(
    net: nn.Module, opt: torch.optim.Optimizer, data: torch.Tensor, batch: int, loss_fn: Loss = made_loss
) -> Callable[[int], None]:
    """A step of any network whose output is the D Bernoulli logits."""

    def step(i: int) -> None:
        x = data[(i % 50) * batch : (i % 50 + 1) * batch]
        loss = loss_fn(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


WIDE = [  # (name, hidden, direct): the table, 1x500 up to the paper's best MNIST shape
    ("1x500", [500], False), ("1x500 + direct", [500], True),
    ("1x2000", [2000], False), ("1x2000 + direct", [2000], True),
    ("2x8000", [8000, 8000], False), ("2x8000 + direct", [8000, 8000], True),
]  # fmt: skip


def training_rows(
    features: int, batch: int, quick: bool, ensembles_only: bool = False
) -> list[tuple[str, float, float, float]]:
    """(network, made, made with whole masked matrices, unmasked MLP) in steps/s: made's own
    train_step with degree blocks, the same model stored whole, and the MLP of the same shape
    with the same loss and fused Adam, timed in alternation. Runs are shorter for wider nets."""
    data = binary_data(features, batch)
    cases = [
        (name, [16 * h // 500 for h in hidden] if quick else hidden, direct, [])
        for name, hidden, direct in ([] if ensembles_only else WIDE)
    ]
    for name, hidden, masks in ENSEMBLES:
        extra = ["model.ordering=random", f"model.num_masks={4 if quick else masks}"]
        cases.append((name, [16 * h // 500 for h in hidden] if quick else hidden, True, extra))
    rows = []
    for name, hidden, direct, extra in cases:
        overrides = [f"model.hidden={hidden}", f"model.direct={str(direct).lower()}", *extra]
        model = made(features, overrides)
        mlp = MLP(features, hidden, direct)
        steps_fns = [
            made_stepper(model, data, batch),
            net_stepper(mlp, make_optimizer(mlp, 1e-3, 0.0), data, batch),
        ]
        if model.num_masks == 1:  # an ensemble trains on its whole weights times the masks
            whole = made(features, overrides)
            whole.net.use_blocks(False)
            steps_fns.insert(1, made_stepper(whole, data, batch))
        width = sum(hidden)
        timing = (
            schedule(quick)
            if width <= 1000
            else (3, 1, 1)
            if quick
            else (20, 5, 5)
            if width <= 4000
            else (3, 3, 1)
        )
        rates = best_rates_of(steps_fns, *timing)
        blocks_rate, mlp_rate = rates[0], rates[-1]
        rows.append((name, blocks_rate, rates[1] if len(rates) == 3 else blocks_rate, mlp_rate))
        del model, mlp, steps_fns
    return rows


ENSEMBLES = [  # (name, hidden, masks): the ensembles' table, random orderings, direct connections
    ("8 masks 1x500 + d", [500], 8), ("8 masks 1x2000 + d", [2000], 8),
    ("32 masks 2x8000 + d", [8000, 8000], 32),
]  # fmt: skip


def ensemble_evaluation_rows(features: int, quick: bool) -> list[tuple[str, float, float]]:
    """(ensemble, rows/s in degree blocks, rows/s whole) of the mixture log p(x) of 1000 rows,
    the same weights computed by each member's blocks copied out of the whole weights and by
    the whole weights times the masks (today's K masked passes), timed in alternation. The
    2x8000 runs 4 of its 32 members: each member's pass is the same work."""
    x = binary_data(features, 20)
    rows = []
    for name, hidden, masks in ENSEMBLES:
        k = 4 if quick or len(hidden) > 1 else masks
        overrides = [
            f"model.hidden={[16] if quick else hidden}",
            "model.ordering=random",
            f"model.num_masks={k}",
        ]
        fast, whole = made(features, overrides).eval(), made(features, overrides).eval()
        whole.net.use_blocks(False)
        with torch.no_grad():
            fast.log_prob(x)  # each member's plans, made once
            rates = best_rates_of(
                [lambda _i, m=m: m.log_prob(x) for m in (fast, whole)], 1, 1 if quick else 3, 1
            )
        label = name if len(hidden) == 1 else name.replace("32 masks", f"{k} of 32 masks")
        rows.append((label, rates[0] * len(x), rates[1] * len(x)))
    return rows


def evaluation_rows(features: int, quick: bool) -> tuple[float, float]:
    """Rows/s of log p(x) over 1000 rows for a 1x500 MADE with direct connections: degree blocks,
    and the same weights stored whole."""
    overrides = ["model.hidden=[16]" if quick else "model.hidden=[500]"]
    model, whole = made(features, overrides).eval(), made(features, overrides).eval()
    whole.net.use_blocks(False)
    x = binary_data(features, 20)
    with torch.no_grad():
        fast = best_seconds(lambda: model.log_prob(x), 1 if quick else 10)
        slow = best_seconds(lambda: whole.log_prob(x), 1 if quick else 10)
    return len(x) / fast, len(x) / slow


def peer_networks(features: int, hidden: int) -> dict[str, nn.Module]:
    """784-500-784 masked networks of the peer libraries that are installed (none are required)."""
    peers: dict[str, nn.Module] = {}
    if importlib.util.find_spec("zuko"):
        import zuko

        adjacency = torch.ones(features, features, dtype=torch.bool).tril(-1)  # natural order
        peers[f"zuko {zuko.__version__}"] = zuko.nn.MaskedMLP(adjacency, [hidden])
    if importlib.util.find_spec("nflows"):
        from nflows.transforms.made import MADE as NflowsMADE

        peers["nflows MADE"] = NflowsMADE(features, hidden, num_blocks=0, use_residual_blocks=False)
    return peers


PEER_SETTINGS = {
    "same": "same optimiser and loss: fused Adam and made's log-likelihood for every network",
    "users": "each as its users run it: made fused Adam, peer default Adam and torch's BCE loss",
}


def peer_rows(features: int, batch: int, quick: bool) -> dict[str, list[tuple[str, float, float]]]:
    """made against each installed peer, timed in alternation, in both ``PEER_SETTINGS``.

    The same network (1 hidden layer, natural order, no direct connections) and NLL; made
    always takes its own ``train_step``. "same": a peer's loop differs only in its network.
    "users": a peer trains with the default torch Adam and ``torch_loss``.
    """
    data = binary_data(features, batch)
    hidden = 16 if quick else 500
    rows: dict[str, list[tuple[str, float, float]]] = {setting: [] for setting in PEER_SETTINGS}
    for setting, out in rows.items():
        for name, net in peer_networks(features, hidden).items():
            model = made(features, [f"model.hidden=[{hidden}]", "model.direct=false"])
            if setting == "same":
                peer_step = net_stepper(net, make_optimizer(net, 1e-3, 0.0), data, batch)
            else:
                adam = torch.optim.Adam(net.parameters(), lr=1e-3)
                peer_step = net_stepper(net, adam, data, batch, torch_loss)
            made_rate, peer_rate = best_rates(made_stepper(model, data, batch), peer_step, *schedule(quick))
            out.append((name, made_rate * batch, peer_rate * batch))
    return rows


FLOW_KINDS = {"maf": "masked autoregressive flows (affine layers)", "nsf": "neural spline flows"}


def flow_peers(
    kind: str, features: int, hidden: list[int], layers: int
) -> dict[str, tuple[nn.Module, list[str]]]:
    """The installed peers' flows of one kind and shape, each with the made settings that match
    it: no direct connections on either side; nflows' MAF puts batch norm between layers, zuko's
    flows have none; zuko's splines have 8 bins on [-5, 5] with linear tails."""
    shape = [f"model.kind={kind}", f"model.hidden={hidden}", "model.direct=false", f"flow.layers={layers}"]
    peers: dict[str, tuple[nn.Module, list[str]]] = {}
    if kind == "maf" and importlib.util.find_spec("nflows") and len(set(hidden)) == 1:
        from nflows.flows.autoregressive import MaskedAutoregressiveFlow

        flow = MaskedAutoregressiveFlow(
            features,
            hidden[0],
            layers,
            len(hidden) - 1,
            use_residual_blocks=False,
            batch_norm_between_layers=True,
        )  # 1 + num_blocks hidden layers of equal width
        peers["nflows MAF, batch norm"] = (flow, [*shape, "flow.batch_norm=true"])
    if importlib.util.find_spec("zuko"):
        import zuko

        if kind == "maf":
            flow = zuko.flows.MAF(features, transforms=layers, hidden_features=hidden)
            peers[f"zuko {zuko.__version__} MAF"] = (flow, [*shape, "flow.batch_norm=false"])
        else:
            flow = zuko.flows.NSF(features, bins=8, transforms=layers, hidden_features=hidden)
            spline = ["spline.bins=8", "spline.bound=5.0"]
            peers[f"zuko {zuko.__version__} NSF"] = (flow, [*shape, "flow.batch_norm=false", *spline])
    return peers


def peer_log_prob(flow: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of a peer's flow: nflows' is a method, zuko's a distribution made on call."""
    return flow.log_prob(x) if hasattr(flow, "_transform") else flow().log_prob(x)


def peer_sample(flow: nn.Module, n: int) -> torch.Tensor:
    return flow.sample(n) if hasattr(flow, "_transform") else flow().sample((n,))


def flow_stepper(
    peer: nn.Module, adam: torch.optim.Optimizer, data: torch.Tensor, batch: int
) -> Callable[[int], None]:
    """A peer flow's training step on -log p(x) of the batch."""

    def step(i: int) -> None:
        loss = -peer_log_prob(peer, data[(i % 50) * batch : (i % 50 + 1) * batch]).mean()
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()

    return step


FLOW_SETTINGS = {
    "same": "same loop, same fused Adam",
    "users": "peer's default Adam, as its users run it",
}


def flow_rows(kind: str, features: int, quick: bool) -> list[tuple[str, str, float, float]]:
    """(what, peer, made, peer) for each installed peer of a flow kind, all timed in alternation:
    training steps/s (5 layers of 1x512, batch 100, no direct connections on either side; made's
    own train_step and fused Adam against the peer with the same fused Adam, then with its
    default Adam), rows/s of log p(x), and rows/s sampled by the same flows (a peer's inverse
    runs each layer's network once per dimension, made's computes each hidden unit once)."""
    hidden, layers = ([16], 2) if quick else ([512], 5)
    batch, rows = 100, []
    data = torch.randn(50 * batch, features, generator=torch.Generator().manual_seed(0))
    steps, repeats, warmup = (2, 1, 1) if quick else (20, 3, 5)
    for name, (peer, overrides) in flow_peers(kind, features, hidden, layers).items():
        ours = made(features, ["data.name=toy", *overrides])
        ours.fit_inputs(data)
        for setting, adam in (
            ("same", make_optimizer(peer, 1e-4, 0.0)),
            ("users", torch.optim.Adam(peer.parameters(), lr=1e-4)),
        ):
            peer_step = flow_stepper(peer, adam, data, batch)
            made_rate, peer_rate = best_rates(
                made_stepper(ours, data, batch), peer_step, steps, repeats, warmup
            )
            rows.append((f"training, {FLOW_SETTINGS[setting]} (steps/s)", name, made_rate, peer_rate))
        ours.eval(), peer.eval()
        x = data[:1000]
        with torch.no_grad():
            made_lp = best_seconds(lambda ours=ours, x=x: ours.log_prob(x), repeats)
            peer_lp = best_seconds(lambda peer=peer, x=x: peer_log_prob(peer, x), repeats)
        rows.append(("log p(x), 1000 rows (rows/s)", name, 1000 / made_lp, 1000 / peer_lp))
        n = 20 if quick else 100
        with torch.no_grad():
            made_s = best_seconds(lambda ours=ours, n=n: ours.sample(n), 1 if quick else 3)
            peer_s = best_seconds(lambda peer=peer, n=n: peer_sample(peer, n), 1)
        rows.append((f"sampling {n} rows (rows/s)", name, n / made_s, n / peer_s))
    return rows


def print_flows(features: int, quick: bool) -> None:
    """The flows' rows (``flow_rows``) for each flow kind, when a peer is installed."""
    for kind, title in FLOW_KINDS.items():
        rows = flow_rows(kind, features, quick)
        if not rows:
            continue
        print(
            f"\n{title} against peers of the same shape, D={features}, no direct connections on either side:"
        )
        print(f"  {'measure':<62}{'peer':<16}{'made':>10}{'peer':>10}{'ratio':>7}")
        for what, name, made_rate, peer_rate in rows:
            print(f"  {what:<62}{name:<16}{made_rate:>10.1f}{peer_rate:>10.1f}{made_rate / peer_rate:>7.2f}")


BLOCK_COUNT_CASES = [("1x500", [500], False), ("1x500 + direct", [500], True),
                     ("1x2000", [2000], False), ("1x2000 + direct", [2000], True)]  # fmt: skip


def block_count_rows(features: int, quick: bool) -> list[tuple[str, str, list[float]]]:
    """(network, the cost model's blocks per layer, steps/s ratios to the MLP of: the cost
    model's plans, then every layer cut into 1, 4 and 16 blocks), all timed in alternation:
    how near the shipped constants' plans are to the best fixed count on this machine."""
    data = binary_data(features, 100)
    rows = []
    for name, hidden, direct in BLOCK_COUNT_CASES:
        shape = [
            f"model.hidden={[16 * h // 500 for h in hidden] if quick else hidden}",
            f"model.direct={str(direct).lower()}",
        ]
        models = [made(features, shape) for _ in range(4)]
        for model, count in zip(models[1:], (1, 4, 16), strict=True):
            model.net.use_blocks(True, count)
        mlp = MLP(features, [16 * h // 500 for h in hidden] if quick else hidden, direct)
        steps = [made_stepper(m, data, 100) for m in models]
        steps.append(net_stepper(mlp, make_optimizer(mlp, 1e-3, 0.0), data, 100))
        rates = best_rates_of(steps, *(schedule(quick) if hidden[0] <= 500 or quick else (10, 5, 5)))
        chosen = ", ".join("whole" if layer.plan is None else str(len(layer.plan.blocks))
                           for layer in models[0].net.masked_layers().values())  # fmt: skip
        rows.append((name, chosen, [r / rates[-1] for r in rates[:-1]]))
    return rows


PAPER_MODEL = Path(__file__).resolve().parents[1] / "configs" / "paper" / "2x8000-32masks.yaml"


def paper_model_times(quick: bool) -> tuple[float, float]:
    """(median seconds of a training step of 5, seconds of the mixture log p of 1000 rows) of
    the MADE paper's best model, configs/paper/2x8000-32masks.yaml, on this machine."""
    overrides = ["model.hidden=[16, 16]", "model.num_masks=4"] if quick else []
    model = build_model(load_config(str(PAPER_MODEL), overrides), 784)
    opt = make_optimizer(model, 1e-3, 0.0)
    x = binary_data(784, 100)[:1100]
    train_step(model, opt, x[:100], 0, 500)
    times = []
    for i in range(1, 6):
        start = time.perf_counter()
        train_step(model, opt, x[100 * i : 100 * i + 100], i, 500)
        times.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        model.log_prob(x[:1000])  # plans each member's blocks, once
        mixture = best_seconds(lambda: model.log_prob(x[:1000]), 1)
    return sorted(times)[2], mixture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check that it runs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--flows-only", action="store_true", help="only the flows against their peers")
    parser.add_argument(
        "--ensembles-only", action="store_true", help="only the ensembles' training and mixture"
    )
    parser.add_argument(
        "--block-counts", action="store_true", help="only single-mask plans against fixed block counts"
    )
    parser.add_argument(
        "--paper-model", action="store_true", help="only the paper's 32-mask 2x8000: step, mixture, epoch"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    features = 16 if args.quick else 784
    print(f"made benchmark: torch {torch.__version__}, {torch.get_num_threads()} threads, D={features}")
    if args.flows_only:
        print_flows(features, args.quick)
        return
    if args.block_counts:
        print("\nsingle-mask training against the MLP (ratios of steps/s, alternating): the cost model's")
        print("plans, then every layer in 1, 4 and 16 blocks; last, the plans' blocks per layer")
        print(f"  {'network':<18}{'plans':>7}{'1':>7}{'4':>7}{'16':>7}   blocks")
        for name, chosen, ratios in block_count_rows(features, args.quick):
            print(f"  {name:<18}" + "".join(f"{r:>7.2f}" for r in ratios) + f"   {chosen}")
        return
    if args.paper_model:
        step, mixture = paper_model_times(args.quick)
        epoch = 500 * step + 10 * mixture  # 50,000 training rows in batches of 100, 10,000 validation rows
        print(f"\nthe paper's 2x8000 with 32 masks{' (quick: 2x16, 4 masks)' if args.quick else ''}:")
        print(f"  training step {step:.3f} s (median of 5), mixture of 1000 rows {mixture:.1f} s,")
        hours = 100 * epoch / 3600
        print(
            f"  an epoch {epoch / 60:.1f} min (500 steps, 10,000 validation rows), 100 epochs {hours:.1f} h"
        )
        return

    print("\ntraining, batch 100, fused Adam for all (steps/s; best of alternating runs; ratios to the MLP):")
    header = (
        ("network", 21),
        ("made", 9),
        ("whole, masked", 15),
        ("unmasked MLP", 14),
        ("made/MLP", 10),
        ("whole/MLP", 11),
    )
    print(
        "  "
        + "".join(
            f"{title:<{width}}" if i == 0 else f"{title:>{width}}" for i, (title, width) in enumerate(header)
        )
    )
    for name, blocks_rate, whole_rate, mlp_rate in training_rows(
        features, 100, args.quick, args.ensembles_only
    ):
        print(f"  {name:<21}{blocks_rate:>9.2f}{whole_rate:>15.2f}{mlp_rate:>14.2f}"
              f"{blocks_rate / mlp_rate:>10.2f}{whole_rate / mlp_rate:>11.2f}")  # fmt: skip
    if args.ensembles_only:
        print_ensemble_evaluation(features, args.quick)
        return
    fast_eval, whole_eval = evaluation_rows(features, args.quick)
    print(
        f"\nlog p(x) of 1000 rows, 1x{16 if args.quick else 500} + direct (rows/s): degree blocks "
        f"{fast_eval:.0f}   whole, masked {whole_eval:.0f}   ratio {fast_eval / whole_eval:.2f}"
    )

    peers = peer_rows(features, 100, args.quick)
    if any(peers.values()):
        print(f"\ntraining against peers, 1x{16 if args.quick else 500}, no direct connections "
              "(images/s; made runs its own train_step in both):")  # fmt: skip
        print(f"  {'peer':<22}{'made':>10}{'peer':>12}{'ratio':>8}")
        for setting, rows in peers.items():
            print(f"  {PEER_SETTINGS[setting]}:")
            for name, made_rate, peer_rate in rows:
                print(f"  {name:<22}{made_rate:>10.0f}{peer_rate:>12.0f}{made_rate / peer_rate:>8.2f}")

    model = made(features, ["model.hidden=[16]" if args.quick else "model.hidden=[500]"])
    gen = torch.Generator().manual_seed(0)
    fast = best_seconds(lambda: model.sample(64, generator=gen, fast=True), 1 if args.quick else 5)
    naive = best_seconds(lambda: model.sample(64, generator=gen, fast=False), 1 if args.quick else 2)
    print(f"\nsampling 64 x {features}, 1 hidden layer + direct (seconds, best of runs):")
    print(f"  degree-scheduled {fast:.4f}   naive {naive:.4f}   speed-up {naive / fast:.1f}x")

    print_flows(features, args.quick)

    print_ensemble_evaluation(features, args.quick)


def print_ensemble_evaluation(features: int, quick: bool) -> None:
    print("\nmixture log p(x) of 1000 rows, random orderings (rows/s; alternating runs):")
    print(f"  {'ensemble':<24}{'degree blocks':>15}{'whole, masked':>15}{'ratio':>8}")
    for name, fast_rate, whole_rate in ensemble_evaluation_rows(features, quick):
        print(f"  {name:<24}{fast_rate:>15.0f}{whole_rate:>15.0f}{fast_rate / whole_rate:>8.2f}")


if __name__ == "__main__":
    main()
