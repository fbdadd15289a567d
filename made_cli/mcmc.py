"""Markov chain diagnostics for completion: the effective sample size of several chains' traces."""

from __future__ import annotations

import math

import torch

__all__ = ["effective_sample_size"]


def effective_sample_size(traces: torch.Tensor) -> float:
    """The effective sample size of M chains' traces (M, N) of one quantity (Stan's estimator:
    Geyer's initial monotone sequence over the chains' combined autocorrelations, capped at
    M N log10(M N); Vehtari et al. 2021, eq. 10, without rank normalisation). NaN for chains
    shorter than 4 states, too short to estimate an autocorrelation.

    About M N for independent draws, fewer the more each chain repeats itself, down to about M/2
    when no chain ever moves (the chains' different starts are then all they say).
    """
    traces = traces.double()
    m, n = traces.shape
    if n < 4:
        return math.nan
    centred = traces - traces.mean(1, keepdim=True)
    # autocovariance of each chain at every lag, by FFT (zero-padded to avoid wrap-around)
    spectrum = torch.fft.rfft(centred, n=2 * n)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=2 * n)[:, :n] / n  # (M, N)
    within = acov[:, 0].mean() * n / (n - 1)
    between = traces.mean(1).var() if m > 1 else torch.zeros((), dtype=traces.dtype)
    var_plus = within * (n - 1) / n + between
    if var_plus <= 0:  # no chain ever changes: as many values as chains
        return float(m)
    rho = 1 - (within - acov.mean(0)) / var_plus  # (N,) combined autocorrelation
    rho[0] = 1.0
    pairs = rho[: n - n % 2].view(-1, 2).sum(1)  # Gamma_k = rho_2k + rho_2k+1
    positive = torch.nonzero(pairs <= 0)
    pairs = pairs[: int(positive[0]) if len(positive) else len(pairs)]
    pairs = torch.cummin(pairs, 0).values  # monotone
    tau = max(-1 + 2 * float(pairs.sum()), 1 / math.log10(m * n))
    return float(m * n / tau)
