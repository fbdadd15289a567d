"""Write the example table of README's table session: card transactions, and new ones to score.

    python scripts/example_table.py examples/                      # transactions.csv, new.csv
    python scripts/example_table.py examples/ --true-nll RUN       # the true law's test NLL

``--true-nll RUN`` prints the NLL in nats of the run's test rows under the law that made them
(given the channel, as a class-conditional model is), the floor a model of the table can reach.

transactions.csv: an ``id``, the ``channel`` (online or store: the label), the ``merchant`` type
(text), the ``hour`` of day (an integer), the number of ``items`` (an integer) and the ``amount``
(a real number, log-normal around a merchant's typical spend, larger for more items). new.csv:
rows of the same law, with every 50th row replaced by an anomaly (a purchase whose amount,
hour and items do not go together), marked in a ``planted`` column that the model never reads.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import torch

MERCHANTS = {  # typical amount for one item (log-normal median), busiest hour, share online
    "grocery": (18.0, 17, 0.15),
    "fuel": (45.0, 8, 0.02),
    "restaurant": (32.0, 20, 0.25),
    "electronics": (120.0, 14, 0.7),
    "travel": (260.0, 11, 0.9),
}


def transactions(n: int, rng: np.random.Generator, first_id: int = 0) -> dict[str, np.ndarray]:
    names = list(MERCHANTS)
    merchant = rng.choice(len(names), n, p=[0.35, 0.2, 0.25, 0.12, 0.08])
    median, busy, online = (np.array([MERCHANTS[m][i] for m in names])[merchant] for i in range(3))
    channel = np.where(rng.random(n) < online, "online", "store")
    # online shops are open all night: their hours spread wider around the busiest hour
    spread = np.where(channel == "online", 5.0, 2.5)
    hour = np.clip(np.round(busy + spread * rng.standard_normal(n)), 0, 23).astype(np.int64)
    items = np.minimum(1 + rng.poisson(np.where(merchant == 0, 6.0, 0.6)), 20).astype(np.int64)
    amount = np.round(median * items**0.8 * np.exp(0.35 * rng.standard_normal(n)), 2)
    return {
        "id": np.arange(first_id, first_id + n),
        "channel": channel,
        "merchant": np.array(names)[merchant],
        "hour": hour,
        "items": items,
        "amount": amount,
    }


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    return torch.special.ndtr(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()


def true_log_prob(data: dict[str, np.ndarray]) -> np.ndarray:
    """log p(merchant, hour, items, amount | channel) per row under the law of ``transactions``
    (the amount's rounding to cents is ignored: a bin of 0.01 against spreads of dollars)."""
    names = list(MERCHANTS)
    weights = np.array([0.35, 0.2, 0.25, 0.12, 0.08])
    merchant = np.array([names.index(m) for m in data["merchant"]])
    median, busy, online = (np.array([MERCHANTS[m][i] for m in names]) for i in range(3))
    is_online = data["channel"] == "online"
    joint = weights[None] * np.where(is_online[:, None], online[None], 1 - online[None])  # (N, M)
    log_p = np.log(joint[np.arange(len(merchant)), merchant] / joint.sum(1))
    spread = np.where(is_online, 5.0, 2.5)
    hour = data["hour"].astype(float)
    upper = np.where(hour == 23, np.inf, (hour + 0.5 - busy[merchant]) / spread)
    lower = np.where(hour == 0, -np.inf, (hour - 0.5 - busy[merchant]) / spread)
    log_p += np.log(_normal_cdf(upper) - _normal_cdf(lower))
    rate = np.where(merchant == 0, 6.0, 0.6)
    k = data["items"] - 1
    pmf = np.exp(k * np.log(rate) - rate - torch.lgamma(torch.from_numpy(k + 1.0)).numpy())
    poisson = lambda j, r: math.exp(j * math.log(r) - r - math.lgamma(j + 1))  # noqa: E731
    below = {r: sum(poisson(j, r) for j in range(19)) for r in (6.0, 0.6)}  # P(items < 20)
    below = np.where(merchant == 0, below[6.0], below[0.6])
    log_p += np.log(np.where(data["items"] == 20, 1 - below, pmf))
    mu = np.log(median[merchant] * data["items"] ** 0.8)
    z = (np.log(data["amount"]) - mu) / 0.35
    log_p += -0.5 * z**2 - math.log(0.35 * math.sqrt(2 * math.pi)) - np.log(data["amount"])
    return log_p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where transactions.csv and new.csv go")
    parser.add_argument("--rows", type=int, default=20000, help="rows of transactions.csv")
    parser.add_argument("--true-nll", type=Path, metavar="RUN", help="the true law's NLL of RUN's test rows")
    args = parser.parse_args()
    if args.true_nll is not None:
        table = pcsv.read_csv(args.folder / "transactions.csv")
        test = np.load(args.true_nll / "split.npy") == 2
        data = {name: np.asarray(table[name])[test] for name in table.column_names}
        nll = -true_log_prob(data).mean()
        print(f"true law: test NLL {nll:.3f} nats on {test.sum()} rows, given the channel")
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pcsv.write_csv(pa.table(transactions(args.rows, rng)), args.folder / "transactions.csv")
    new = transactions(1000, rng, first_id=args.rows)
    planted = np.zeros(1000, dtype=bool)
    planted[::50] = True  # a fuel stop of 9 items at 3 am for 2400, and the like
    new["merchant"][planted] = "fuel"
    new["hour"][planted] = 3
    new["items"][planted] = 9
    new["amount"][planted] = np.round(rng.uniform(2000, 3000, planted.sum()), 2)
    new["planted"] = planted
    pcsv.write_csv(pa.table(new), args.folder / "new.csv")
    print(
        f"wrote {args.folder / 'transactions.csv'} ({args.rows} rows) and {args.folder / 'new.csv'} "
        f"(1000 rows, {planted.sum()} planted anomalies)"
    )


if __name__ == "__main__":
    main()
